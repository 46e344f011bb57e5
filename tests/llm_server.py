"""A small OpenAI-compatible chat-completions server for the tests (`POST /v1/chat/completions`).

What it does is chosen by a marker in the last user message:
    (none)             answer at once; with passages in the prompt, cite [1] (and [2] if there is one)
    [[error]]          HTTP 500 with an OpenAI-style error body
    [[slow]]           answer after SLOW_S seconds (longer than the API's LLM_TIMEOUT_S in the tests)
    [[slow-stream]]    streamed: the first piece at once, then silence for SLOW_S seconds
    [[garbage]]        HTTP 200 whose body is not JSON
    [[drop]]           close the connection without answering
`stream: true` answers as server-sent events, one word per event, then `data: [DONE]`.
Every request body and its Authorization header are kept in `requests`.
"""

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SLOW_S = 3.0


def answer_for(messages: list[dict[str, str]]) -> str:
    user = messages[-1]["content"] if messages else ""
    if "Passages:" not in user:
        return f"Plain answer to: {user.strip()}"
    numbers = re.findall(r"^\[(\d+)\] ", user, flags=re.MULTILINE)
    first = user.split("\n", 4)[3] if len(user.split("\n", 4)) > 3 else ""
    answer = f"From the documents: {first.strip()[:120]} [1]."
    if len(numbers) > 1:
        answer += " This is confirmed elsewhere [2]."
    return answer


class _Handler(BaseHTTPRequestHandler):
    server: "FakeLLM._Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.owner.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if not self.path.endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        messages = body.get("messages") or []
        user = messages[-1]["content"] if messages else ""
        model = body.get("model") or "fake"
        if "[[error]]" in user:
            self._json(500, {"error": {"message": "the model is overloaded", "type": "server_error"}})
            return
        if "[[drop]]" in user:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if "[[garbage]]" in user:
            data = b"<html>not json</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if "[[slow]]" in user:
            time.sleep(SLOW_S)
        text = answer_for(messages)
        if not body.get("stream"):
            self._json(
                200,
                {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        words = re.findall(r"\S+\s*", text)
        try:
            self._event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}, model)
            for i, word in enumerate(words):
                self._event({"choices": [{"index": 0, "delta": {"content": word}}]}, model)
                if i == 0 and "[[slow-stream]]" in user:
                    time.sleep(SLOW_S)
            self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, model)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _event(self, payload: dict[str, Any], model: str) -> None:
        event = {"id": "cmpl-1", "object": "chat.completion.chunk", "model": model, **payload}
        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.flush()


class FakeLLM:
    """`with FakeLLM() as llm:` serves on `llm.base_url` (ending in /v1) until the block ends."""

    class _Server(ThreadingHTTPServer):
        daemon_threads = True
        owner: "FakeLLM"

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.httpd = self._Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "FakeLLM":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":  # python -m tests.llm_server: serve until Ctrl-C (for trying the API by hand)
    with FakeLLM() as llm:
        print(f"LLM_BASE_URL={llm.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
