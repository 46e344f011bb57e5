"""The answer flow, a function per step, over plain data:

    plan (plain_plan | context_plan)  ->  extract | complete | open_stream (then AnswerStream)  ->  Answer

A `Plan` holds what the answer is built from: the question, the numbered passages (from 1, as in
the prompt and the citations), the LLM's messages (None: answered extractively) and the
interaction record, which every step keeps up to date (latencies, answer, model, citations, error)
so the caller logs it as it stands, whatever happened.
"""

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

import anyio
import numpy as np

from app.answering import extractive, prompt
from app.answering.llm import ChatClient, LLMError, Message, TokenStream
from app.retrieval.interaction import Interaction
from app.retrieval.params import SearchParams
from app.retrieval.search import Hit, Retrieval, since_ms

log = logging.getLogger("app.answers")

Generator = Literal["llm", "extractive"]


@dataclass
class Plan:
    query: str
    generator: Generator
    passages: list[Hit] | None  # numbered from 1; None: the LLM alone, no documents (POST /generate)
    messages: list[Message] | None  # for the LLM; None when answered extractively
    record: Interaction
    started: float  # perf_counter() when the request began: `total_ms`

    @property
    def with_context(self) -> bool:
        return self.passages is not None


@dataclass
class Answer:
    text: str
    generator: Generator
    model: str | None
    citations: list[int]  # the passage numbers the answer cites


def plain_plan(tenant: str, query: str, llm: ChatClient) -> Plan:
    """POST /generate: the LLM alone."""
    record = Interaction(tenant, "generate", query, generator="llm", model=llm.model or None)
    return Plan(query, "llm", None, prompt.plain_messages(query), record, time.perf_counter())


def context_plan(
    tenant: str, params: SearchParams, retrieval: Retrieval, llm: ChatClient | None, max_chars: int, started: float
) -> Plan:
    """POST /generate-text-with-context: the passages that fit the prompt (all of them without an LLM)."""
    record = Interaction(
        tenant, "generate-text-with-context", params.query, params, retrieval.hits, dict(retrieval.latency_ms)
    )
    if llm is None:
        return Plan(params.query, "extractive", list(retrieval.hits), None, record, started)
    passages = prompt.fit_passages(retrieval.hits, max_chars)
    record.generator, record.model = "llm", llm.model or None
    messages = prompt.context_messages(params.query, passages, max_chars)
    return Plan(params.query, "llm", passages, messages, record, started)


def _timed(plan: Plan, generating_since: float) -> None:
    plan.record.latency_ms.update(generate_ms=since_ms(generating_since), total_ms=since_ms(plan.started))


def _answered(plan: Plan, text: str, model: str | None, generating_since: float) -> Answer:
    _timed(plan, generating_since)
    citations = prompt.cited_numbers(text, len(plan.passages)) if plan.passages is not None else []
    plan.record.answer, plan.record.model = text, model
    if plan.with_context:
        plan.record.citations = citations
    return Answer(text, plan.generator, model, citations)


def _failed(plan: Plan, exc: LLMError, generating_since: float, partial: str | None = None) -> None:
    log.warning("LLM failed (%s): %s", exc.code, exc.message)
    _timed(plan, generating_since)
    plan.record.answer = partial
    plan.record.error = {"code": exc.code, "message": exc.message}


async def extract(plan: Plan, embed: Callable[[list[str]], np.ndarray]) -> Answer:
    """The passages' best-matching sentences, with their numbers (no LLM)."""
    t0 = time.perf_counter()
    text, numbers = await anyio.to_thread.run_sync(extractive.extract, plan.query, plan.passages or [], embed)
    _timed(plan, t0)
    plan.record.answer, plan.record.generator, plan.record.citations = text, "extractive", numbers
    return Answer(text, "extractive", None, numbers)


async def complete(plan: Plan, llm: ChatClient) -> Answer:
    """One completion. An LLMError is noted on the record, then raised."""
    t0 = time.perf_counter()
    try:
        completion = await llm.complete(plan.messages or [])
    except LLMError as exc:
        _failed(plan, exc, t0)
        raise
    return _answered(plan, completion.text, completion.model, t0)


class AnswerStream:
    """A streamed answer that has started: iterate for its pieces; `answer` once they ran out.

    An LLMError while streaming is noted on the record and raised from the iteration; a stream
    closed before its end (the client left) is noted as `client_disconnected`.
    """

    def __init__(self, plan: Plan, tokens: TokenStream, generating_since: float) -> None:
        self.plan, self.tokens, self.since = plan, tokens, generating_since
        self.pieces: list[str] = []
        self.answer: Answer | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        try:
            async for piece in self.tokens:
                if not self.pieces:
                    self.plan.record.latency_ms["first_token_ms"] = since_ms(self.since)
                self.pieces.append(piece)
                yield piece
        except LLMError as exc:
            _failed(self.plan, exc, self.since, "".join(self.pieces) or None)
            raise
        self.answer = _answered(self.plan, "".join(self.pieces), self.tokens.model, self.since)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.tokens.aclose()
        record = self.plan.record
        if record.answer is None and record.error is None:
            record.error = {"code": "client_disconnected", "message": "The client left before the answer ended."}


async def open_stream(plan: Plan, llm: ChatClient) -> AnswerStream:
    """Start a streamed answer. An LLMError before the answer starts is noted on the record, then raised."""
    t0 = time.perf_counter()
    try:
        tokens = await llm.open_stream(plan.messages or [])
    except LLMError as exc:
        _failed(plan, exc, t0)
        raise
    return AnswerStream(plan, tokens, t0)
