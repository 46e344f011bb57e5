"""`docproc mcp`: the API's MCP server for a desktop assistant that starts MCP servers as local
processes speaking stdio. Every message read on stdin is sent to `<url>/mcp` over streamable HTTP
with the API key, and every answer written to stdout: the tools, resources, scopes and tenant are
the server's own (app/mcp/server.py); nothing is served from here."""

from __future__ import annotations

import anyio
import httpx
from mcp.client.streamable_http import streamable_http_client
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp.types import JSONRPCError, JSONRPCRequest, JSONRPCResponse

from app.cli.docproc.client import Config


async def bridge(config: Config, drain_s: float = 60.0) -> None:
    """Relay MCP messages between stdin/stdout and the API until stdin closes and the requests
    sent by then are answered (for at most `drain_s`)."""
    timeout = httpx.Timeout(config.timeout, read=max(config.timeout, 300.0))
    pending: set[str | int] = set()  # ids of requests not answered yet
    answered = anyio.Event()
    async with (
        httpx.AsyncClient(headers=config.headers(), timeout=timeout) as http,
        streamable_http_client(config.endpoint("/mcp"), http_client=http) as (remote_in, remote_out, _),
        stdio_server() as (local_in, local_out),
        anyio.create_task_group() as tg,
    ):

        async def upstream() -> None:
            async for message in local_in:
                if isinstance(message, Exception):
                    continue  # a line that is not JSON-RPC: the assistant's problem, not the server's
                if isinstance(message.message.root, JSONRPCRequest):
                    pending.add(message.message.root.id)
                await remote_out.send(message)
            with anyio.move_on_after(drain_s):  # stdin closed: the assistant is done, or gone
                if pending:
                    await answered.wait()
            remote_out.close()  # the transports' own tasks end with their streams
            local_out.close()
            tg.cancel_scope.cancel()

        async def downstream() -> None:
            async for message in remote_in:
                if isinstance(message, Exception):
                    raise message  # the server refused (e.g. 401): fail loudly, on stderr
                await local_out.send(SessionMessage(message.message))
                if isinstance(message.message.root, JSONRPCResponse | JSONRPCError):
                    pending.discard(message.message.root.id)
                    if not pending:
                        answered.set()

        tg.start_soon(upstream)
        tg.start_soon(downstream)
