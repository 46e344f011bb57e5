"""Reciprocal rank fusion of the vector and keyword legs."""

import pytest

from app.retrieval.search import rrf


def test_rrf_fuses_ranks_with_weights() -> None:
    fused = rrf([([1, 2, 3], 1.0), ([3, 4], 1.0)], 60)
    assert [i for i, _ in fused] == [3, 1, 2, 4]  # 3 is in both lists
    assert fused[0][1] == pytest.approx(1 / 63 + 1 / 61)
    assert [i for i, _ in rrf([([1, 2], 1.0), ([2, 1], 1.0)], 60)] == [1, 2]  # a tie: the better best rank, then id
    assert [i for i, _ in rrf([([1], 0.0), ([2], 1.0)], 60)] == [2, 1]
