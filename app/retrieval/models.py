"""Request and response bodies of the search and answer endpoints."""

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.retrieval.filters import Filters, storable
from app.retrieval.search import Hit, Mode


def _no_nul(text: str) -> str:
    if not storable(text):
        raise ValueError("the query may not contain NUL characters or invalid Unicode")
    return text


QueryText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000), AfterValidator(_no_nul)
]


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: QueryText
    k: int = Field(5, ge=1, strict=True, description="results wanted, at most QUERY_MAX_K")
    mode: Mode = Field("hybrid", description="vector (meaning), keyword (words), hybrid (both, fused)")
    filters: Filters | None = None
    highlight: bool = Field(False, strict=True, description="add `highlights`: matched words in <mark>, HTML-escaped")
    vector_weight: float | None = Field(
        None, ge=0, le=100, strict=True, allow_inf_nan=False, description="hybrid: default HYBRID_VECTOR_WEIGHT"
    )
    keyword_weight: float | None = Field(
        None, ge=0, le=100, strict=True, allow_inf_nan=False, description="hybrid: default HYBRID_KEYWORD_WEIGHT"
    )


class SearchHit(BaseModel):
    text: str
    score: float = Field(description="vector: cosine similarity; keyword: ts_rank; hybrid: fused RRF score")
    chunk_id: int
    file_id: str
    filename: str
    content_type: str
    chunk_index: int
    page_start: int | None
    page_end: int | None
    heading_path: list[str]
    metadata: dict[str, Any] = Field(default_factory=dict)
    vector_score: float | None = None
    keyword_score: float | None = None
    vector_rank: int | None = None
    keyword_rank: int | None = None
    highlights: list[str] | None = None

    @classmethod
    def from_hit(cls, hit: Hit, **extra: Any) -> "SearchHit":
        return cls(**{name: getattr(hit, name) for name in SearchHit.model_fields}, **extra)


class SearchResponse(BaseModel):
    query: str
    mode: Mode
    results: list[SearchHit]
    latency_ms: dict[str, float] = Field(default_factory=dict)
    interaction_id: str | None = None


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=8000), AfterValidator(_no_nul)
    ]
    stream: bool = Field(False, strict=True, description="stream the answer as server-sent events")


class GenerateResponse(BaseModel):
    query: str
    answer: str
    generator: Literal["llm"] = "llm"
    model: str
    latency_ms: dict[str, float] = Field(default_factory=dict)
    interaction_id: str | None = None


class ContextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: QueryText
    k: int = Field(5, ge=1, strict=True, description="passages retrieved, at most QUERY_MAX_K")
    mode: Mode = "hybrid"
    filters: Filters | None = None
    stream: bool = Field(False, strict=True, description="stream the answer as server-sent events")


class Passage(SearchHit):
    n: int = Field(description="the passage's number in the prompt and in citations, from 1")


class Citation(BaseModel):
    n: int
    chunk_id: int
    file_id: str
    filename: str
    page_start: int | None
    page_end: int | None


class ContextAnswer(BaseModel):
    query: str
    answer: str
    generator: Literal["llm", "extractive"]
    model: str | None = None
    citations: list[Citation]
    passages: list[Passage]
    latency_ms: dict[str, float] = Field(default_factory=dict)
    interaction_id: str | None = None


class ContextError(BaseModel):
    """An LLM failure of POST /generate-text-with-context (502, 504): the error, and what was retrieved."""

    detail: dict[str, str]
    query: str
    generator: Literal["llm"] = "llm"
    passages: list[Passage]
    latency_ms: dict[str, float] = Field(default_factory=dict)
    interaction_id: str | None = None
