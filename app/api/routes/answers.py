"""Answers: POST /generate (the LLM alone) and POST /generate-text-with-context (retrieve, then answer
from numbered passages, with citations). Without an LLM the second answers extractively.

`stream: true` answers as server-sent events:
    event: passages  data: {"passages": [...]}                  (with context only, first)
    event: token     data: {"text": "..."}                      (one per piece of the answer)
    event: done      data: the whole answer object, as without streaming
    event: error     data: {"code": "llm_error" | "llm_timeout", "message": "..."}  (instead of done)
"""

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, BackgroundTasks
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.answering import answer
from app.answering.answer import Answer, AnswerStream, Plan
from app.answering.llm import LLMError
from app.api.deps import LLMDep, QueryEmbedder, QueryTenant, SettingsDep, StoresDep
from app.api.errors import AUTHED, ApiError, error_body, http_error, llm_error, responses
from app.api.interaction_log import log_after, log_now, open_entry
from app.api.schemas import (
    ContextAnswer,
    ContextError,
    ContextRequest,
    GenerateRequest,
    GenerateResponse,
    context_answer,
    numbered_passages,
)
from app.retrieval.params import search_params
from app.retrieval.search import retrieve
from app.stores import Stores

router = APIRouter(tags=["answers"])

# `stream: true` answers 200 with server-sent events instead of JSON
SSE_EVENT = {
    "type": "object",
    "description": "one server-sent event: `event` (passages, token, done, error) and its JSON `data`",
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"}},
}
STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}, "description": "the answer"}
}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
NO_LLM = (
    "No LLM is configured: set LLM_BASE_URL (and LLM_MODEL) to an OpenAI-compatible chat-completions server. "
    "POST /generate-text-with-context answers without one (extractive)."
)


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


# --- shaping ------------------------------------------------------------------------


def _shape(plan: Plan, result: Answer) -> dict[str, Any]:
    """The answer object, as JSON (the body without streaming, the `done` event with it)."""
    latency, interaction_id = plan.record.latency_ms, plan.record.id
    if not plan.with_context:
        return GenerateResponse(
            query=plan.query, answer=result.text, model=result.model or "", latency_ms=latency,
            interaction_id=interaction_id,
        ).model_dump(mode="json")  # fmt: skip
    return context_answer(plan, result).model_dump(mode="json")


def _refusal(plan: Plan, exc: LLMError) -> Response:
    """An LLM failure before any answer: 502/504; with context, the body still has the passages."""
    status, code = llm_error(exc)
    if not plan.with_context:
        raise http_error(status, code, exc.message) from exc
    body = ContextError(
        detail=error_body(code, exc.message)["detail"],
        query=plan.query,
        passages=numbered_passages(plan),
        latency_ms=plan.record.latency_ms,
        interaction_id=plan.record.id,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


# --- answering ----------------------------------------------------------------------


async def _answer(plan: Plan, llm: LLMDep, background: BackgroundTasks, stores: Stores) -> Response:
    """Without streaming: the answer as JSON; logged after the response either way."""
    open_entry(stores, plan.record)
    try:
        result = await answer.complete(plan, llm)
    except LLMError as exc:
        await log_now(stores, plan.record)  # an error raised as HTTPException runs no background task
        return _refusal(plan, exc)
    log_after(background, stores, plan.record)
    return JSONResponse(_shape(plan, result))


async def _stream(plan: Plan, llm: LLMDep, stores: Stores) -> Response:
    """Server-sent events: an LLM error before the answer starts is answered 502/504, one after it
    is an `error` event. The interaction is logged when the stream ends."""
    open_entry(stores, plan.record)
    try:
        stream = await answer.open_stream(plan, llm)
    except LLMError as exc:
        await log_now(stores, plan.record)
        return _refusal(plan, exc)
    return StreamingResponse(_events(plan, stream, stores), media_type="text/event-stream", headers=SSE_HEADERS)


async def _events(plan: Plan, stream: AnswerStream, stores: Stores) -> AsyncIterator[str]:
    try:
        if plan.with_context:
            yield sse("passages", {"passages": [p.model_dump(mode="json") for p in numbered_passages(plan)]})
        try:
            async for piece in stream:
                yield sse("token", {"text": piece})
        except LLMError as exc:
            yield sse("error", {"code": exc.code, "message": exc.message})
            return
        assert stream.answer is not None
        yield sse("done", _shape(plan, stream.answer))
    finally:
        await stream.aclose()
        await log_now(stores, plan.record)


async def _extractive_events(plan: Plan, body: dict[str, Any], stores: Stores) -> AsyncIterator[str]:
    yield sse("passages", {"passages": body["passages"]})
    yield sse("token", {"text": body["answer"]})
    yield sse("done", body)
    await log_now(stores, plan.record)


# --- routes -------------------------------------------------------------------------


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses=responses(
        *AUTHED,
        422,
        429,
        502,
        504,
        s422="invalid_query, invalid_request",
        s503="llm_not_configured, dependency_unavailable",
    )
    | STREAM,
)
async def generate(
    body: GenerateRequest, background: BackgroundTasks, tenant: QueryTenant, stores: StoresDep, llm: LLMDep
) -> Response:
    """An answer from the LLM alone, no documents. 503 `llm_not_configured` without an LLM."""
    if llm is None:
        raise http_error(503, ApiError.LLM_NOT_CONFIGURED, NO_LLM)
    plan = answer.plain_plan(tenant, body.query, llm)
    return await (_stream(plan, llm, stores) if body.stream else _answer(plan, llm, background, stores))


@router.post(
    "/generate-text-with-context",
    response_model=ContextAnswer,
    responses=STREAM
    | {
        **responses(*AUTHED, 422, 429, s422="invalid_query, invalid_k, k_too_large, invalid_mode, invalid_filters"),
        502: {"model": ContextError, "description": "llm_error; the body still has the retrieved `passages`"},
        504: {"model": ContextError, "description": "llm_timeout; the body still has the retrieved `passages`"},
    },
)
async def generate_with_context(
    body: ContextRequest,
    background: BackgroundTasks,
    tenant: QueryTenant,
    stores: StoresDep,
    settings: SettingsDep,
    embedder: QueryEmbedder,
    llm: LLMDep,
) -> Response:
    """Retrieve the `k` best passages (as `POST /query`), number them in a prompt, and answer with the
    citations the answer used. With no LLM configured: the passages' best-matching sentences
    (`"generator": "extractive"`). An LLM error (502) or timeout (504) still returns the passages."""
    params = search_params(settings, body.query, body.mode, body.k, body.filters)
    started = time.perf_counter()
    retrieval = await retrieve(stores.chunks, embedder, tenant, params)
    plan = answer.context_plan(tenant, params, retrieval, llm, settings.llm_context_max_chars, started)
    if llm is not None:
        return await (_stream(plan, llm, stores) if body.stream else _answer(plan, llm, background, stores))
    result = await answer.extract(plan, embedder.embed)
    if not body.stream:
        log_after(background, stores, plan.record)
        return JSONResponse(_shape(plan, result))
    open_entry(stores, plan.record)
    events = _extractive_events(plan, _shape(plan, result), stores)
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
