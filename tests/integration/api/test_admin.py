"""Key creation and revocation through /admin/keys, in the tenant's audit and the API's log."""

import uuid

from app.api.auth import parse_key
from tests.fixtures.api import audit_entries, audit_log_lines
from tests.fixtures.stack import Stack


def test_key_creation_and_revocation_are_audited(api_url: str, stack: Stack) -> None:
    a_name, b_name = f"aa-{uuid.uuid4().hex[:6]}", f"ab-{uuid.uuid4().hex[:6]}"
    with stack.client(api_url, tenant=a_name) as a, stack.client(api_url, tenant=b_name) as b:
        admin_id = parse_key(stack.key(a_name))[0]  # made as the CLI makes keys: audited as `cli`
        r = a.post("/admin/keys", json={"name": "audited", "scopes": ["read"]}, headers={"X-Request-ID": "kc-1"})
        key_id = r.json()["key_id"]
        assert a.delete(f"/admin/keys/{key_id}", headers={"X-Request-ID": "kr-1"}).status_code == 204
        assert a.delete(f"/admin/keys/{key_id}").status_code == 204  # revoked already: no second entry
        b_key = b.post("/admin/keys", json={"name": "b's"}).json()["key_id"]

        assert audit_entries(a) == [  # newest first
            ("key.revoked", key_id, admin_id, "kr-1", a_name),
            ("key.created", key_id, admin_id, "kc-1", a_name),
            ("key.created", admin_id, "cli", None, a_name),
        ]
        assert a.get("/admin/audit").json()["total"] == 3
        assert audit_entries(a, limit=1, offset=1) == [("key.created", key_id, admin_id, "kc-1", a_name)]
        b_entries = audit_entries(b)  # B sees its own entries only
        assert {e[1] for e in b_entries} == {b_key, parse_key(stack.key(b_name))[0]}
        assert {e[4] for e in b_entries} == {b_name}
        assert a.get("/admin/audit", params={"limit": 0}).status_code == 422
    log = (stack.root / "logs" / "api.log").read_text(errors="replace")
    lines = audit_log_lines(log, key_id)  # one structured line per event
    assert [(d["action"], d["tenant"], d["actor"], d["request_id"]) for d in lines] == [
        ("key.created", a_name, admin_id, "kc-1"),
        ("key.revoked", a_name, admin_id, "kr-1"),
    ]
