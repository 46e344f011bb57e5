"""What a search asks for: `SearchParams`, built from a request and the settings by `search_params`
(which refuses a `k` above QUERY_MAX_K), for every endpoint that searches."""

from dataclasses import dataclass
from typing import Literal

from app.retrieval.filters import Filters
from app.settings import Settings

Mode = Literal["vector", "keyword", "hybrid"]
MODES: tuple[Mode, ...] = ("vector", "keyword", "hybrid")


@dataclass(frozen=True)
class SearchParams:
    query: str
    mode: Mode = "hybrid"
    k: int = 5
    filters: Filters | None = None
    highlight: bool = False
    vector_weight: float = 1.0
    keyword_weight: float = 1.0
    rrf_k: int = 60
    candidates: int = 50
    ef_search: int = 200
    common_word_chunks: int = 5000


class KTooLarge(ValueError):
    """More results asked for than QUERY_MAX_K allows."""

    def __init__(self, max_k: int) -> None:
        self.max_k = max_k
        super().__init__(f"k may be at most {max_k}.")


def search_params(
    settings: Settings,
    query: str,
    mode: Mode,
    k: int,
    filters: Filters | None,
    highlight: bool = False,
    vector_weight: float | None = None,
    keyword_weight: float | None = None,
) -> SearchParams:
    """The search a request asks for, with the settings' defaults; KTooLarge above QUERY_MAX_K."""
    if k > settings.query_max_k:
        raise KTooLarge(settings.query_max_k)
    return SearchParams(
        query=query,
        mode=mode,
        k=k,
        filters=filters,
        highlight=highlight,
        vector_weight=settings.hybrid_vector_weight if vector_weight is None else vector_weight,
        keyword_weight=settings.hybrid_keyword_weight if keyword_weight is None else keyword_weight,
        rrf_k=settings.rrf_k,
        candidates=settings.hybrid_candidates,
        ef_search=settings.hnsw_ef_search,
        common_word_chunks=settings.keyword_common_word_chunks,
    )
