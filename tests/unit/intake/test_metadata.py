"""Upload metadata: the request's and each file's, merged and validated."""

import pytest

from app.intake import metadata as upload_metadata


def test_upload_metadata_rules() -> None:
    parts = {"metadata": b'{"team": "a", "tags": ["x", 1, null]}', "file_metadata": b'{"b.txt": {"team": "b"}}'}
    assert upload_metadata.per_file(parts, ["a.txt", "b.txt"]) == {
        "a.txt": {"team": "a", "tags": ["x", 1, None]},
        "b.txt": {"team": "b", "tags": ["x", 1, None]},
    }
    assert upload_metadata.per_file({}, ["a.txt"]) == {"a.txt": {}}
    for bad in [b"NaN", b'{"x": NaN}', b'{"": 1}', b'{"x": [[1]]}', b"\xff"]:
        with pytest.raises(upload_metadata.InvalidMetadata):
            upload_metadata.per_file({"metadata": bad}, ["a.txt"])
