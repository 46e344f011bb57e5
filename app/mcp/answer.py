"""`ask`: an answer with citations from the tenant's documents, as POST /generate-text-with-context
gives it (without streaming): retrieve, then the LLM over numbered passages, or extractively without
one. Kept in this one function so it follows the answering service when that moves."""

from typing import Any

import anyio

from app.answering import extractive, prompt
from app.api.schemas import Citation, ContextAnswer, Passage
from app.retrieval.filters import Filters
from app.retrieval.params import Mode, search_params
from app.retrieval.search import Hit, retrieve


async def answer(state: Any, tenant: str, question: str, k: int, mode: Mode, filters: Filters | None) -> ContextAnswer:
    """`state` is the API's app.state (settings, stores, query embedder, LLM). LLMError when the LLM fails."""
    params = search_params(state.settings, question, mode, k, filters)
    retrieval = await retrieve(state.stores.chunks, state.query_embedder, tenant, params)
    llm = state.llm
    if llm is None:
        passages = _passages(retrieval.hits)
        text, numbers = await anyio.to_thread.run_sync(
            extractive.extract, question, retrieval.hits, state.query_embedder.embed
        )
        generator, model = "extractive", None
    else:
        in_prompt = prompt.fit_passages(retrieval.hits, state.settings.llm_context_max_chars)
        passages = _passages(in_prompt)
        messages = prompt.context_messages(question, in_prompt, state.settings.llm_context_max_chars)
        completion = await llm.complete(messages)
        text, model, generator = completion.text, completion.model, "llm"
        numbers = prompt.cited_numbers(text, len(passages))
    by_n = {p.n: p for p in passages}
    citations = [
        Citation(
            n=n,
            chunk_id=p.chunk_id,
            file_id=p.file_id,
            filename=p.filename,
            page_start=p.page_start,
            page_end=p.page_end,
        )
        for n in numbers
        if (p := by_n.get(n)) is not None
    ]
    return ContextAnswer(
        query=question,
        answer=text,
        generator=generator,
        model=model,
        citations=citations,
        passages=passages,
        latency_ms=retrieval.latency_ms,
    )


def _passages(hits: list[Hit]) -> list[Passage]:
    return [Passage.from_hit(h, n=n) for n, h in enumerate(hits, start=1)]
