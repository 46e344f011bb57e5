"""Answers: POST /generate (the LLM alone) and POST /generate-text-with-context (retrieve, then answer
from numbered passages, with citations). Without an LLM the second answers extractively.

`stream: true` answers as server-sent events:
    event: passages  data: {"passages": [...]}                  (with context only, first)
    event: token     data: {"text": "..."}                      (one per piece of the answer)
    event: done      data: the whole answer object, as without streaming
    event: error     data: {"code": "llm_error" | "llm_timeout", "message": "..."}  (instead of done)
"""

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.answering import extractive, prompt
from app.answering.llm import ChatClient, LLMError, Message
from app.api.deps import QueryTenant, SettingsDep, StoresDep
from app.api.errors import AUTHED, http_error, responses
from app.api.routes.search import (
    CodedErrorsRoute,
    assign_id,
    interaction,
    log_after,
    run_retrieval,
)
from app.api.schemas import (
    Citation,
    ContextAnswer,
    ContextError,
    ContextRequest,
    GenerateRequest,
    GenerateResponse,
    Passage,
)
from app.retrieval.params import search_params
from app.retrieval.search import Hit, since_ms
from app.stores import Stores

log = logging.getLogger("app.answers")

router = APIRouter(tags=["answers"], route_class=CodedErrorsRoute)

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


def get_llm(request: Request) -> ChatClient | None:
    return getattr(request.app.state, "llm", None)


async def _record_now(stores: Stores, doc: dict[str, Any]) -> None:
    """For streams: the response is already under way, so log at its end (shielded from a disconnect)."""
    if stores.interactions is not None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await stores.interactions.record(doc)


# --- POST /generate -----------------------------------------------------------------


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
    body: GenerateRequest, request: Request, background: BackgroundTasks, tenant: QueryTenant, stores: StoresDep
) -> Any:
    """An answer from the LLM alone, no documents. 503 `llm_not_configured` without an LLM."""
    llm = get_llm(request)
    if llm is None:
        raise http_error(503, "llm_not_configured", NO_LLM)
    messages = prompt.plain_messages(body.query)
    doc = interaction(tenant, "generate", body.query, None, [], {}, generator="llm", model=llm.model or None)
    latency: dict[str, float] = doc["latency_ms"]
    assign_id(stores, doc)  # the id now; the document is written when the answer is done
    t0 = time.perf_counter()

    def done(text: str, model: str) -> dict[str, Any]:
        latency.update(generate_ms=since_ms(t0), total_ms=since_ms(t0))
        doc.update(answer=text, model=model)
        return GenerateResponse(
            query=body.query, answer=text, model=model, latency_ms=latency, interaction_id=doc.get("_id")
        ).model_dump(mode="json")

    def failed(exc: LLMError) -> JSONResponse:
        raise http_error(exc.status, exc.code, exc.message) from exc

    if body.stream:
        return await _stream_answer(llm, messages, stores, doc, t0, None, done, failed)
    return await _complete(llm, messages, background, stores, doc, t0, t0, done, failed)


# --- POST /generate-text-with-context -------------------------------------------------


def _passages(hits: list[Hit]) -> list[Passage]:
    return [Passage.from_hit(h, n=n) for n, h in enumerate(hits, start=1)]


def _citations(passages: list[Passage], numbers: list[int]) -> list[Citation]:
    by_n = {p.n: p for p in passages}
    return [
        Citation(
            n=n,
            chunk_id=by_n[n].chunk_id,
            file_id=by_n[n].file_id,
            filename=by_n[n].filename,
            page_start=by_n[n].page_start,
            page_end=by_n[n].page_end,
        )
        for n in numbers
        if n in by_n
    ]


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
    request: Request,
    background: BackgroundTasks,
    tenant: QueryTenant,
    stores: StoresDep,
    settings: SettingsDep,
) -> Any:
    """Retrieve the `k` best passages (as `POST /query`), number them in a prompt, and answer with the
    citations the answer used. With no LLM configured: the passages' best-matching sentences
    (`"generator": "extractive"`). An LLM error (502) or timeout (504) still returns the passages."""
    params = search_params(settings, body.query, body.mode, body.k, body.filters)
    t0 = time.perf_counter()
    retrieval = await run_retrieval(request, stores, tenant, params)
    latency = dict(retrieval.latency_ms)
    llm = get_llm(request)
    doc = interaction(tenant, "generate-text-with-context", body.query, params, retrieval.hits, latency)

    if llm is None:
        passages = _passages(retrieval.hits)
        embedder = request.app.state.query_embedder
        t1 = time.perf_counter()
        answer, numbers = await anyio.to_thread.run_sync(extractive.extract, body.query, retrieval.hits, embedder.embed)
        latency.update(generate_ms=since_ms(t1), total_ms=since_ms(t0))
        result = ContextAnswer(
            query=body.query,
            answer=answer,
            generator="extractive",
            citations=_citations(passages, numbers),
            passages=passages,
            latency_ms=latency,
        )
        doc.update(answer=answer, generator="extractive", citations=numbers, latency_ms=latency)
        result.interaction_id = assign_id(stores, doc) if body.stream else log_after(background, stores, doc)
        if not body.stream:
            return result

        async def extractive_events() -> AsyncIterator[str]:
            yield sse("passages", {"passages": [p.model_dump(mode="json") for p in passages]})
            yield sse("token", {"text": answer})
            yield sse("done", result.model_dump(mode="json"))
            await _record_now(stores, doc)

        return StreamingResponse(extractive_events(), media_type="text/event-stream", headers=SSE_HEADERS)

    in_prompt = prompt.fit_passages(retrieval.hits, settings.llm_context_max_chars)
    passages = _passages(in_prompt)
    passages_json = [p.model_dump(mode="json") for p in passages]
    messages = prompt.context_messages(body.query, in_prompt, settings.llm_context_max_chars)
    doc.update(generator="llm", model=llm.model or None)
    assign_id(stores, doc)  # the id now; the document is written when the answer is done
    t1 = time.perf_counter()

    def done(text: str, model: str) -> dict[str, Any]:
        latency.update(generate_ms=since_ms(t1), total_ms=since_ms(t0))
        numbers = prompt.cited_numbers(text, len(passages))
        doc.update(answer=text, model=model, citations=numbers)
        return ContextAnswer(
            query=body.query,
            answer=text,
            generator="llm",
            model=model,
            citations=_citations(passages, numbers),
            passages=passages,
            latency_ms=latency,
            interaction_id=doc.get("_id"),
        ).model_dump(mode="json")

    def failed(exc: LLMError) -> JSONResponse:
        return JSONResponse(
            {
                "detail": {"code": exc.code, "message": exc.message},
                "query": body.query,
                "generator": "llm",
                "passages": passages_json,
                "latency_ms": latency,
                "interaction_id": doc.get("_id"),
            },
            status_code=exc.status,
        )

    if body.stream:
        head = sse("passages", {"passages": passages_json})
        return await _stream_answer(llm, messages, stores, doc, t1, head, done, failed, t_total=t0)
    return await _complete(llm, messages, background, stores, doc, t1, t0, done, failed)


async def _complete(
    llm: Any,
    messages: list[dict[str, str]],
    background: BackgroundTasks,
    stores: Any,
    doc: dict[str, Any],
    t_generate: float,
    t_total: float,
    done: Any,
    failed: Any,
) -> Any:
    """One non-streamed completion: the answer via `done`, an LLM error via `failed`; logged either way."""
    try:
        completion = await llm.complete(messages)
    except LLMError as exc:
        log.warning("LLM failed (%s): %s", exc.code, exc.message)
        doc["latency_ms"].update(generate_ms=since_ms(t_generate), total_ms=since_ms(t_total))
        doc["error"] = {"code": exc.code, "message": exc.message}
        log_after(background, stores, doc)
        return failed(exc)
    body_out = done(completion.text, completion.model)
    log_after(background, stores, doc)
    return JSONResponse(body_out)


# --- streaming ----------------------------------------------------------------------


async def _stream_answer(
    llm: ChatClient,
    messages: list[Message],
    stores: Stores,
    doc: dict[str, Any],
    t_generate: float,
    head: str | None,
    done: Callable[[str, str], dict[str, Any]],
    failed: Callable[[LLMError], Response],
    t_total: float | None = None,
) -> Response:
    """Open the LLM's stream: an error before the answer starts is answered by `failed` (502/504),
    one after it is an `error` event. The interaction is logged when the stream ends."""
    latency: dict[str, float] = doc["latency_ms"]
    t0 = t_generate if t_total is None else t_total
    try:
        stream = await llm.open_stream(messages)
    except LLMError as exc:
        log.warning("LLM failed (%s): %s", exc.code, exc.message)
        latency.update(generate_ms=since_ms(t_generate), total_ms=since_ms(t0))
        doc["error"] = {"code": exc.code, "message": exc.message}
        await _record_now(stores, doc)
        return failed(exc)

    async def events() -> AsyncIterator[str]:
        pieces: list[str] = []
        try:
            if head is not None:
                yield head
            try:
                async for piece in stream:
                    if not pieces:
                        latency["first_token_ms"] = since_ms(t_generate)
                    pieces.append(piece)
                    yield sse("token", {"text": piece})
            except LLMError as exc:
                log.warning("LLM failed (%s): %s", exc.code, exc.message)
                latency.update(generate_ms=since_ms(t_generate), total_ms=since_ms(t0))
                doc.update(answer="".join(pieces) or None, error={"code": exc.code, "message": exc.message})
                yield sse("error", {"code": exc.code, "message": exc.message})
                return
            yield sse("done", done("".join(pieces), stream.model))
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
            if doc.get("answer") is None and doc.get("error") is None:
                doc["error"] = {"code": "client_disconnected", "message": "The client left before the answer ended."}
            await _record_now(stores, doc)

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)
