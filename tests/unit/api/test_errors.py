"""app/api/errors.py: the API's error vocabulary (ApiError for HTTP errors, app/status.py ErrorCode for a
file's status) held together with the README's "Error codes" table; the outside errors answered 503."""

import ast
import re

from app.api.errors import UPLOAD_REFUSALS, ApiError
from app.intake.receiver import Refusal
from app.status import ErrorCode
from tests.fixtures import ROOT


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
                mapped = (isinstance(code, ast.Name) and code.id == "code") or (  # a code chosen from a mapping
                    isinstance(code, ast.Attribute)
                    and code.attr == "code"
                    and getattr(code.value, "id", "") == "refused"
                )
                if not (member or mapped):
                    loose.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert loose == []


def test_every_s3_failure_maps_to_storage_unavailable() -> None:
    """botocore's connection errors and S3's error answers, as the API meets them, are all 503s."""
    from boto3.exceptions import S3UploadFailedError
    from botocore import exceptions as bc

    from app.api.errors import DEPENDENCY_ERRORS

    url = "http://s3.internal:9000/bucket"
    raised = [
        bc.EndpointConnectionError(endpoint_url=url),
        bc.ConnectTimeoutError(endpoint_url=url),
        bc.ReadTimeoutError(endpoint_url=url),
        bc.ConnectionClosedError(endpoint_url=url),
        bc.ConnectionError(error="refused"),
        bc.NoCredentialsError(),
        *(
            bc.ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")
            for code, status in [
                ("SlowDown", 503),
                ("InternalError", 500),
                ("NoSuchBucket", 404),
                ("AccessDenied", 403),
                ("InvalidAccessKeyId", 403),
            ]
        ),
        S3UploadFailedError("Failed to upload x to bucket/key: SlowDown"),
    ]
    for exc in raised:
        assert next((DEPENDENCY_ERRORS[t] for t in type(exc).__mro__ if t in DEPENDENCY_ERRORS), None) == (
            "Object storage"
        ), type(exc)
