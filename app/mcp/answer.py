"""`ask`: an answer with citations from the tenant's documents, as POST /generate-text-with-context
gives it without streaming, through the same answer flow (app/answering/answer.py)."""

import time
from typing import Any

from app.answering import answer as flow
from app.api.schemas import ContextAnswer, context_answer
from app.retrieval.filters import Filters
from app.retrieval.params import Mode, search_params
from app.retrieval.search import retrieve


async def answer(state: Any, tenant: str, question: str, k: int, mode: Mode, filters: Filters | None) -> ContextAnswer:
    """`state` is the API's app.state (settings, stores, query embedder, LLM). LLMError when the LLM fails."""
    params = search_params(state.settings, question, mode, k, filters)
    started = time.perf_counter()
    retrieval = await retrieve(state.stores.chunks, state.query_embedder, tenant, params)
    plan = flow.context_plan(tenant, params, retrieval, state.llm, state.settings.llm_context_max_chars, started)
    if state.llm is None:
        result = await flow.extract(plan, state.query_embedder.embed)
    else:
        result = await flow.complete(plan, state.llm)
    return context_answer(plan, result)
