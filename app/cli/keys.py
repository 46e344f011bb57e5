"""Admin CLI for API keys, straight against MongoDB (MONGO_URL, MONGO_DB): any tenant. `docproc keys`
runs this when it has no API key (or with --mongo); without MONGO_URL it is ./run.sh's local MongoDB.

    .venv/bin/docproc keys create --tenant acme --name ci --scopes read,write   # prints the key once
    .venv/bin/docproc keys list [--tenant acme] [--json]
    .venv/bin/docproc keys revoke KEY_ID
    .venv/bin/python -m app.cli.keys ...   # the same, as before

`create` prints the key alone on stdout (and what it is on stderr): store it now, it is
not kept. A tenant exists as soon as one of its keys does; its name is 1-63 of `a-z0-9_-`.
The first admin key of a tenant comes from here; with it, `POST /admin/keys` makes more.
The cap holds here too: a tenant with MAX_KEYS_PER_TENANT active keys gets none (exit 1).
Creations and revocations go to the audit log as by `cli` (and to stderr, as a log line).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

from pymongo import MongoClient

from app.api.auth import KEY_ID, parse_scopes
from app.observability.logs import setup_logging
from app.settings import LOCAL_MONGO_PORT, TENANT_PATTERN, get_settings
from app.stores.audit import CLI
from app.stores.keys import KeyLimitReached, SyncKeyStore


def mongo_url() -> str:
    """MONGO_URL (environment or .env) when set, else the MongoDB of ./run.sh's stack on this machine."""
    s = get_settings()
    if "mongo_url" in s.model_fields_set:
        return s.mongo_url.get_secret_value()
    # ./run.sh's stack (devstack/) runs its MongoDB on LOCAL_MONGO_PORT, beside any mongod on 27017
    port = int(os.environ.get("LOCAL_MONGO_PORT", LOCAL_MONGO_PORT))
    return f"mongodb://127.0.0.1:{port}/?replicaSet=secantus&retryWrites=false"


def _store() -> tuple[MongoClient, SyncKeyStore]:
    client = MongoClient(mongo_url(), serverSelectionTimeoutMS=10_000, tz_aware=True)
    return client, SyncKeyStore(client, get_settings().mongo_db)


def _row(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in doc.items() if k != "hash"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.cli.keys", description="API keys: create, list, revoke.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create", help="create a key and print it (once)")
    c.add_argument("--tenant", required=True)
    c.add_argument("--name", required=True, help="what the key is for (shown in lists)")
    c.add_argument("--scopes", default="read,write", help="comma-separated: read, write, admin (default read,write)")
    ls = sub.add_parser("list", help="list keys (never their secrets)")
    ls.add_argument("--tenant")
    ls.add_argument("--json", action="store_true")
    r = sub.add_parser("revoke", help="revoke a key by id (the <id> of dp_<id>_<secret>)")
    r.add_argument("key_id")
    args = parser.parse_args(argv)

    setup_logging(get_settings(), "keys-cli")  # the audit's log lines, on stderr
    client, store = _store()
    try:
        if args.cmd == "create":
            if not re.match(TENANT_PATTERN, args.tenant):
                parser.error(f"--tenant must match {TENANT_PATTERN}")
            if not 0 < len(args.name.strip()) <= 100:
                parser.error("--name must be 1 to 100 characters")
            try:
                scopes = parse_scopes(args.scopes)
            except ValueError as exc:
                parser.error(str(exc))
            store.ensure_indexes()
            try:
                doc, key = store.create(
                    args.tenant, args.name.strip(), scopes, cap=get_settings().max_keys_per_tenant, actor=CLI
                )
            except KeyLimitReached as exc:
                print(f"refused: {exc}", file=sys.stderr)
                return 1
            print(
                f"created key {doc['_id']} for tenant {doc['tenant']!r} ({doc['name']}, scopes {','.join(scopes)});"
                " it is shown only now:",
                file=sys.stderr,
            )
            print(key)
        elif args.cmd == "list":
            docs = [_row(d) for d in store.list(args.tenant)]
            if args.json:
                print(json.dumps(docs, indent=2))
            else:
                print(
                    f"{'id':12}  {'tenant':16}  {'scopes':16}  {'created':20}  {'last used':20}  {'revoked':20}  name"
                )
                for d in docs:
                    print(
                        f"{d['_id']:12}  {d['tenant']:16}  {','.join(d['scopes']):16}  {str(d['created_at'])[:19]:20}  "
                        f"{str(d.get('last_used_at') or '-')[:19]:20}  {str(d.get('revoked_at') or '-')[:19]:20}  "
                        f"{d['name']}"
                    )
        else:
            if not KEY_ID.match(args.key_id):
                parser.error("KEY_ID is the 12 hex digits after dp_")
            doc = store.revoke(args.key_id, actor=CLI)
            if doc is None:
                print(f"no key {args.key_id}", file=sys.stderr)
                return 1
            print(f"revoked key {doc['_id']} of tenant {doc['tenant']!r} ({doc['name']})", file=sys.stderr)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
