"""The API's error vocabulary: one enum (app/api/errors.py ApiError) for HTTP errors, one
(app/status.py ErrorCode) for a file's status, and the README's "Error codes" table, held together."""

import ast
import re
from pathlib import Path

from app.api.errors import UPLOAD_REFUSALS, ApiError
from app.intake.receiver import Refusal
from app.status import ErrorCode

ROOT = Path(__file__).resolve().parents[2]


def readme_codes() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Error codes", 1)[1].split("\n## ", 1)[0]
    codes: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            codes.update(re.findall(r"`([a-z_]+)`", first_cell))
    return codes


def test_the_readme_table_lists_every_code_and_no_other():
    documented = readme_codes()
    assert len(documented) > 50
    assert {str(c) for c in ApiError} - documented == set(), "HTTP error codes missing from the README table"
    assert {str(c) for c in ErrorCode} - documented == set(), "file status codes missing from the README table"
    assert documented - {str(c) for c in ApiError} - {str(c) for c in ErrorCode} == set(), "codes nobody answers"


def test_every_upload_refusal_has_its_status_and_code():
    assert set(UPLOAD_REFUSALS) == set(Refusal)
    for refusal, (status, code) in UPLOAD_REFUSALS.items():
        assert 400 <= status < 500 and str(code) == str(refusal)


def test_errors_are_raised_with_a_member_of_the_enum_not_a_string():
    """`http_error(status, ApiError.X, ...)` everywhere: a loose string would escape the table above."""
    loose = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("http_error", "error_response"):
                code = node.args[1] if len(node.args) > 1 else None
                member = isinstance(code, ast.Attribute) and getattr(code.value, "id", None) == "ApiError"
                mapped = isinstance(code, ast.Name) and code.id == "code"  # a code chosen from a mapping
                if not (member or mapped):
                    loose.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert loose == []
