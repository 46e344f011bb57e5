"""The `docproc` commands (Typer): upload, ls, show, rm, search, ask, watch, keys, mcp.

Configuration: `--url` / `DOCPROC_URL` (default http://127.0.0.1:8000) and `--key` / `DOCPROC_API_KEY`.
Exit status: 0 done; 1 the API refused or a file failed (the summary says which, with its code);
2 a usage error.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from app.cli.docproc.client import Api, ApiError, Config, error_of, retry_after

app = typer.Typer(
    name="docproc",
    help="docproc from the shell: upload folders, list, search, ask, watch, manage API keys, serve MCP on stdio.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="API keys: the first key of a tenant straight in MongoDB, more over the admin API.")
app.add_typer(keys_app, name="keys")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)
FILTER_FIELDS = {"file_id", "content_type", "filename", "uploaded_after", "uploaded_before"}
PENDING = ("saving", "queued", "processing", "deleting")


class State:
    config = Config()


@app.callback()
def configure(
    url: Annotated[str, typer.Option(envvar="DOCPROC_URL", help="the API's base URL")] = "http://127.0.0.1:8000",
    key: Annotated[
        str | None, typer.Option(envvar="DOCPROC_API_KEY", help="an API key (dp_…)", show_default=False)
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for an answer")] = 60.0,
) -> None:
    State.config = Config(url=url, key=key or None, timeout=timeout)


def api() -> Api:
    return Api(State.config)


def scalar(raw: str) -> Any:
    """`k=v` values: JSON numbers, booleans and null as such, anything else as the string."""
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if value is None or isinstance(value, bool | int | float) else raw


def pairs(items: list[str] | None, what: str) -> list[tuple[str, str]]:
    out_: list[tuple[str, str]] = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint=what)
        out_.append((key, value))
    return out_


def print_json(value: Any) -> None:
    out.print_json(json.dumps(value), highlight=False)


# --- upload ------------------------------------------------------------------------------------


@app.command()
def upload(
    paths: Annotated[list[Path], typer.Argument(help="files and folders", show_default=False)],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="descend into subfolders")] = False,
    glob: Annotated[str | None, typer.Option(help="only file names matching this pattern, e.g. '*.pdf'")] = None,
    metadata: Annotated[list[str] | None, typer.Option("--metadata", "-m", help="KEY=VALUE, repeatable")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=64, help="files in flight")] = 4,
    wait: Annotated[bool, typer.Option(help="wait until each file is embedded or failed")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the outcome of each file as JSON")] = False,
) -> None:
    """Upload files and folder trees, one request per file, safe to run again (nothing is sent twice)."""
    from app.cli.docproc.upload import collect, upload_all

    try:
        files = collect(paths, recursive, glob)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="PATHS") from exc
    if not files:
        err.print("nothing to upload")
        raise typer.Exit(0)
    meta = {k: scalar(v) for k, v in pairs(metadata, "--metadata")} or None
    labels = {}
    for root in paths:
        for f in files:
            if root.is_dir() and f.is_relative_to(root):
                labels.setdefault(f, str(f.relative_to(root)))
    outcomes = asyncio.run(upload_all(State.config, files, labels, meta, concurrency, wait, err))
    if as_json:
        print_json([o.as_dict() for o in outcomes])
    else:
        summary(outcomes)
    raise typer.Exit(0 if all(o.ok for o in outcomes) else 1)


def summary(outcomes: list[Any]) -> None:
    table = Table(title="upload summary", title_justify="left")
    for col in ("file", "result", "document id", "code", "message"):
        table.add_column(col, overflow="fold")
    for o in outcomes:
        style = "red" if not o.ok else None
        table.add_row(o.path, o.result, o.file_id or "", o.code or "", (o.message or "")[:120], style=style)
    out.print(table)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.result] = counts.get(o.result, 0) + 1
    failed_codes: dict[str, int] = {}
    for o in outcomes:
        if not o.ok:
            failed_codes[o.code or "unknown"] = failed_codes.get(o.code or "unknown", 0) + 1
    parts = [f"{counts.get(r, 0)} {r}" for r in ("embedded", "queued", "processing") if counts.get(r)]
    parts.append(f"{counts.get('skipped', 0) + counts.get('duplicate', 0)} skipped as already uploaded or duplicates")
    bad = counts.get("failed", 0) + counts.get("refused", 0)
    parts.append(f"{bad} failed" + (f" ({', '.join(f'{c}: {n}' for c, n in failed_codes.items())})" if bad else ""))
    out.print(", ".join(parts))


# --- files ---------------------------------------------------------------------------------------


def files_table(items: list[dict[str, Any]]) -> Table:
    table = Table()
    for col in ("id", "name", "status", "chunks", "size", "created", "error"):
        table.add_column(col, overflow="fold")
    for d in items:
        error = (d.get("error") or {}).get("code", "")
        stage = f" ({d['stage']})" if d.get("stage") and d["status"] == "processing" else ""
        table.add_row(
            d["file_id"], d["filename"], d["status"] + stage, str(d.get("chunk_count") or ""),
            str(d.get("size") or ""), str(d.get("created_at", ""))[:19], error,
        )  # fmt: skip
    return table


@app.command("ls")
def list_files(
    status: Annotated[str | None, typer.Option(help="only files in this status (embedded, failed, ...)")] = None,
    name: Annotated[str | None, typer.Option(help="only filenames matching this glob, e.g. 'report-*'")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The tenant's files, newest first."""
    params = {
        k: v for k, v in {"status": status, "name": name, "limit": limit, "offset": offset}.items() if v is not None
    }
    with api() as a:
        page = a.json("GET", "/files", params=params)
    if as_json:
        print_json(page)
        return
    out.print(files_table(page["items"]))
    out.print(f"{len(page['items'])} of {page['total']}")


@app.command()
def show(file_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One file's status, error, counts and metadata."""
    with api() as a:
        doc = a.json("GET", f"/files/{file_id}")
    if as_json:
        print_json(doc)
        return
    table = Table(show_header=False)
    for k, v in doc.items():
        table.add_row(k, json.dumps(v) if isinstance(v, dict | list) else str(v))
    out.print(table)


@app.command("rm")
def remove(file_ids: Annotated[list[str], typer.Argument(help="file ids", show_default=False)]) -> None:
    """Delete files: their bytes, chunks and status."""
    failed = False
    with api() as a:
        for fid in file_ids:
            try:
                a.request("DELETE", f"/files/{fid}")
                out.print(f"deleted {fid}")
            except ApiError as exc:
                err.print(f"[red]{fid}: {exc.code}: {exc.message}[/red]")
                failed = True
    raise typer.Exit(1 if failed else 0)


@app.command()
def watch(
    file_ids: Annotated[list[str] | None, typer.Argument(help="file ids (default: the newest files)")] = None,
    interval: Annotated[float, typer.Option(min=0.1, help="seconds between refreshes")] = 1.0,
    limit: Annotated[int, typer.Option(min=1, max=500, help="how many of the newest files")] = 20,
) -> None:
    """Live states until every file watched is done (embedded or failed)."""
    with api() as a:

        def snapshot() -> list[dict[str, Any]]:
            if file_ids:
                return [a.json("GET", f"/files/{fid}") for fid in file_ids]
            return a.json("GET", "/files", params={"limit": limit})["items"]

        items = snapshot()
        with Live(files_table(items), console=out, auto_refresh=False, transient=False) as live:
            while any(d["status"] in PENDING for d in items):
                time.sleep(interval)
                items = snapshot()
                live.update(files_table(items), refresh=True)
    raise typer.Exit(1 if file_ids and any(d["status"] == "failed" for d in items) else 0)


# --- search and answers ---------------------------------------------------------------------------


def search_params(filters: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`--filter` as GET /search parameters: file_id, content_type, filename, uploaded_after,
    uploaded_before as such, any other KEY as the metadata filter `meta.KEY`."""
    return [(k if k in FILTER_FIELDS else f"meta.{k}", v) for k, v in filters]


def filters_body(filters: list[tuple[str, str]]) -> dict[str, Any] | None:
    """`--filter` as POST filters, matching as GET /search does (`year=2024` matches 2024 and "2024")."""
    body: dict[str, Any] = {}
    metadata: dict[str, list[Any]] = {}
    for k, v in filters:
        if k in ("file_id", "content_type"):
            body.setdefault(k + "s", []).append(v)
        elif k in FILTER_FIELDS:
            body[k] = v
        else:
            values = metadata.setdefault(k, [])
            for c in (v, scalar(v)):
                if (type(c), c) not in {(type(x), x) for x in values}:
                    values.append(c)
    if metadata:
        body["metadata"] = {k: v[0] if len(v) == 1 else {"$in": v} for k, v in metadata.items()}
    return body or None


Mode = Annotated[str, typer.Option(help="hybrid, vector or keyword")]
K = Annotated[int, typer.Option("--k", "-k", min=1, help="how many passages")]
Filter = Annotated[
    list[str] | None, typer.Option("--filter", "-f", help="KEY=VALUE, repeatable (metadata, filename, ...)")
]


@app.command()
def search(
    query: str,
    mode: Mode = "hybrid",
    k: K = 5,
    filter_: Filter = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The passages that best match QUERY."""
    params = [("q", query), ("k", str(k)), ("mode", mode), *search_params(pairs(filter_, "--filter"))]
    with api() as a:
        found = a.json("GET", "/search", params=params)
    if as_json:
        print_json(found)
        return
    table = Table()
    for col in ("#", "score", "file", "pages", "text"):
        table.add_column(col, overflow="fold")
    for n, hit in enumerate(found["results"], start=1):
        pages = "" if hit["page_start"] is None else f"{hit['page_start']}-{hit['page_end']}"
        text = " ".join(hit["text"].split())
        table.add_row(str(n), f"{hit['score']:.4f}", hit["filename"], pages, text[:300])
    out.print(table)
    if not found["results"]:
        out.print("no results")


def sse(lines: Any) -> Any:
    """(event, data) of server-sent events."""
    event, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


@app.command()
def ask(
    question: str,
    mode: Mode = "hybrid",
    k: K = 5,
    filter_: Filter = None,
    as_json: Annotated[bool, typer.Option("--json", help="the whole answer as JSON, once done")] = False,
) -> None:
    """An answer to QUESTION from the documents, streamed as it comes, then its citations."""
    body = {
        "query": question,
        "k": k,
        "mode": mode,
        "stream": True,
        "filters": filters_body(pairs(filter_, "--filter")),
    }
    config = State.config
    with httpx.Client(base_url=config.url.rstrip("/"), headers=config.headers(), timeout=config.timeout) as http:
        for _ in range(5):
            with http.stream("POST", "/generate-text-with-context", json=body) as response:
                if response.status_code in (429, 503):
                    time.sleep(retry_after(response))
                    continue
                if not response.is_success:
                    response.read()
                    raise error_of(response)
                done = None
                for event, data in sse(response.iter_lines()):
                    if event == "token" and not as_json:
                        out.out(data["text"], end="")
                    elif event == "error":
                        out.print()
                        raise ApiError(502, data.get("code", "llm_error"), data.get("message", ""))
                    elif event == "done":
                        done = data
                break
        else:
            raise ApiError(429, "rate_limited", "The API kept refusing; retry later.")
    if done is None:
        raise ApiError(502, "incomplete_answer", "The answer stream ended early.")
    if as_json:
        print_json(done)
        return
    out.print()
    table = Table(title="citations", title_justify="left")
    for col in ("n", "file", "pages", "document id"):
        table.add_column(col, overflow="fold")
    for c in done["citations"]:
        pages = "" if c["page_start"] is None else f"{c['page_start']}-{c['page_end']}"
        table.add_row(str(c["n"]), c["filename"], pages, c["file_id"])
    out.print(table if done["citations"] else "no citations")


# --- keys ------------------------------------------------------------------------------------------


Mongo = Annotated[
    bool, typer.Option("--mongo", help="straight against MongoDB (MONGO_URL, MONGO_DB), even with an API key set")
]


def direct(mongo: bool) -> bool:
    """Against MongoDB when asked, or with no API key to use the admin API with."""
    return mongo or not State.config.key


def keys_cli(argv: list[str]) -> None:
    from app.cli import keys

    raise typer.Exit(keys.main(argv))


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="what the key is for")],
    tenant: Annotated[str | None, typer.Option(help="the tenant (MongoDB mode; over the API, the key's own)")] = None,
    scopes: Annotated[str, typer.Option(help="comma-separated: read, write, admin")] = "read,write",
    mongo: Mongo = False,
) -> None:
    """Create a key and print it on stdout (once: it is not kept)."""
    if direct(mongo):
        if not tenant:
            raise typer.BadParameter("--tenant is needed to create a key straight in MongoDB", param_hint="--tenant")
        keys_cli(["create", "--tenant", tenant, "--name", name, "--scopes", scopes])
    if tenant:
        raise typer.BadParameter("over the admin API a key is created in the admin key's own tenant: drop --tenant "
                                 "(or use --mongo)", param_hint="--tenant")  # fmt: skip
    with api() as a:
        doc = a.json("POST", "/admin/keys", json={"name": name, "scopes": [s.strip() for s in scopes.split(",")]})
    err.print(f"created key {doc['key_id']} for tenant {doc['tenant']!r} ({doc['name']}, scopes "
              f"{','.join(doc['scopes'])}); it is shown only now:")  # fmt: skip
    print(doc["key"])


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="MongoDB mode: only this tenant")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    mongo: Mongo = False,
) -> None:
    """The keys (never their secrets): of every tenant or one (MongoDB), or of the admin key's tenant."""
    if direct(mongo):
        keys_cli(["list", *(["--tenant", tenant] if tenant else []), *(["--json"] if as_json else [])])
    with api() as a:
        items = a.json("GET", "/admin/keys")["items"]
    if as_json:
        print_json(items)
        return
    table = Table()
    for col in ("id", "tenant", "scopes", "created", "last used", "revoked", "name"):
        table.add_column(col)
    for d in items:
        used, revoked = str(d.get("last_used_at") or "-")[:19], str(d.get("revoked_at") or "-")[:19]
        table.add_row(
            d["key_id"], d["tenant"], ",".join(d["scopes"]), str(d["created_at"])[:19], used, revoked, d["name"]
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, mongo: Mongo = False) -> None:
    """Revoke a key by its id (the 12 hex digits after `dp_`), at once."""
    if direct(mongo):
        keys_cli(["revoke", key_id])
    with api() as a:
        a.request("DELETE", f"/admin/keys/{key_id}")
    err.print(f"revoked key {key_id}")


# --- MCP on stdio ------------------------------------------------------------------------------------


@app.command("mcp")
def mcp_stdio() -> None:
    """Serve the API's MCP server on stdin/stdout, for assistants that start MCP servers as processes."""
    from app.cli.docproc.bridge import bridge

    if not State.config.key:
        err.print("warning: no API key (--key or DOCPROC_API_KEY): only an API with AUTH=disabled will answer")
    try:
        asyncio.run(bridge(State.config))
    except* httpx.HTTPStatusError as group:
        response = group.exceptions[0].response  # type: ignore[attr-defined]
        why = f"{response.status_code} {response.reason_phrase.lower()}"  # a stream: its body was not read
        err.print(f"[red]error:[/red] the API refused MCP: {why}")
        raise typer.Exit(1) from None


def main() -> None:
    """The console script `docproc`."""
    try:
        app()
    except ApiError as exc:
        err.print(f"[red]error:[/red] {exc.code}: {exc.message}")
        sys.exit(1)
    except httpx.TransportError as exc:
        err.print(f"[red]error:[/red] cannot reach {State.config.url}: {type(exc).__name__}: {exc}")
        sys.exit(1)
