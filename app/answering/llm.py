"""An OpenAI-compatible chat-completions client (vLLM, Ollama, TGI, llama.cpp server, OpenAI).

`LLM_BASE_URL` is the API root that `/chat/completions` hangs off (`http://host:8000/v1`).
Failures surface as `LLMError` (the server could not be reached, answered with an
error or with something unreadable: 502) or `LLMTimeout` (504).

Timeouts: a whole answer must arrive within `LLM_TIMEOUT_S`; a streamed answer must
start within it, and each piece must follow the previous one within it.
"""

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from app.settings import Settings

log = logging.getLogger("app.llm")

Message = dict[str, str]


class LLMError(Exception):
    code = "llm_error"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class LLMTimeout(LLMError):
    code = "llm_timeout"


@dataclass
class Completion:
    text: str
    model: str
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None


def _upstream_message(response: httpx.Response, body: bytes) -> str:
    """What the server said went wrong, short: its `error.message` if it sent one."""
    detail = body[:2000].decode("utf-8", "replace").strip()
    try:
        data = json.loads(body)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict) and err.get("message"):
            detail = str(err["message"])
        elif isinstance(err, str):
            detail = err
        elif isinstance(data, dict) and isinstance(data.get("detail"), str):
            detail = data["detail"]
    except ValueError:
        pass
    detail = " ".join(detail.split())[:300]
    return f"The LLM server answered HTTP {response.status_code}" + (f": {detail}" if detail else ".")


NOT_A_COMPLETION = "The LLM server's answer is not a chat completion (no choices[0].message.content)."


def _completion_text(data: Any) -> str:
    text = data["choices"][0]["message"]["content"]
    if not isinstance(text, str):
        raise TypeError("content is not a string")
    return text


class TokenStream:
    """A streamed answer whose response has started (status checked): iterate for text pieces."""

    def __init__(self, response: httpx.Response, model: str) -> None:
        self.response = response
        self.model = model
        self.finish_reason: str | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        try:
            if self.response.headers.get("content-type", "").startswith("application/json"):
                # a server that ignored stream=true: the whole answer at once
                text = _completion_text(json.loads(await self.response.aread()))
                if text:
                    yield text
                return
            async for line in self.response.aiter_lines():
                line = line.strip()
                if not line.startswith("data:"):
                    continue  # blank lines, `event:`, `: keep-alive` comments
                payload = line[len("data:") :].strip()
                if payload == "[DONE]":
                    return
                try:
                    event = json.loads(payload)
                except ValueError as exc:
                    raise LLMError("The LLM server sent a stream event that is not JSON.") from exc
                if not isinstance(event, dict):
                    raise LLMError("The LLM server sent a stream event that is not a JSON object.")
                if event.get("error"):
                    err = event["error"]
                    text = err.get("message") if isinstance(err, dict) else str(err)
                    raise LLMError(f"The LLM server reported an error while streaming: {str(text)[:300]}")
                self.model = event.get("model") or self.model
                for choice in event.get("choices") or []:
                    self.finish_reason = choice.get("finish_reason") or self.finish_reason
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield piece
            if self.finish_reason is None:  # neither [DONE] nor a finish_reason: cut off
                raise LLMError("The LLM server's stream ended before the answer was finished.")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError(NOT_A_COMPLETION) from exc
        except httpx.TimeoutException as exc:
            raise LLMTimeout("The LLM server stopped sending the answer (timed out).") from exc
        except httpx.HTTPError as exc:
            raise LLMError(f"The LLM server's stream broke off: {type(exc).__name__}.") from exc

    async def aclose(self) -> None:
        await self.response.aclose()


class ChatClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60,
        max_tokens: int = 512,
        temperature: float = 0.1,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> "ChatClient | None":
        """None when no LLM is configured (`LLM_BASE_URL` unset)."""
        if not settings.llm_base_url:
            return None
        return cls(
            settings.llm_base_url,
            settings.llm_model,
            settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
            settings.llm_timeout_s,
            settings.llm_max_tokens,
            settings.llm_temperature,
        )

    def _body(self, messages: list[Message], stream: bool) -> dict[str, Any]:
        return {
            "model": self.model or "default",
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": stream,
        }

    async def complete(self, messages: list[Message]) -> Completion:
        try:
            with anyio.fail_after(self.timeout_s):
                response = await self.http.post("chat/completions", json=self._body(messages, False))
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise LLMTimeout(f"The LLM server did not answer within {self.timeout_s:g} s.") from exc
        except httpx.HTTPError as exc:
            raise LLMError(f"The LLM server could not be reached: {type(exc).__name__}.") from exc
        if response.status_code >= 400:
            raise LLMError(_upstream_message(response, response.content))
        try:
            data = response.json()
            text = _completion_text(data)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError(NOT_A_COMPLETION) from exc
        return Completion(
            text=text,
            model=data.get("model") or self.model,
            finish_reason=data["choices"][0].get("finish_reason"),
            usage=data.get("usage"),
        )

    async def open_stream(self, messages: list[Message]) -> TokenStream:
        """Start a streamed answer; errors before the first byte of the answer raise here."""
        request = self.http.build_request("POST", "chat/completions", json=self._body(messages, True))
        try:
            with anyio.fail_after(self.timeout_s):
                response = await self.http.send(request, stream=True)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise LLMTimeout(f"The LLM server did not start answering within {self.timeout_s:g} s.") from exc
        except httpx.HTTPError as exc:
            raise LLMError(f"The LLM server could not be reached: {type(exc).__name__}.") from exc
        if response.status_code >= 400:
            try:
                body = await response.aread()
            except httpx.HTTPError:
                body = b""
            finally:
                await response.aclose()
            raise LLMError(_upstream_message(response, body))
        content_type = response.headers.get("content-type", "")
        if content_type and not content_type.startswith(("text/event-stream", "application/json")):
            await response.aclose()
            raise LLMError(f"The LLM server's answer is not an event stream (content type {content_type}).")
        return TokenStream(response, self.model)

    async def aclose(self) -> None:
        await self.http.aclose()
