"""Dify's External Knowledge API over docproc's search (`POST /retrieval`, app/api/routes/dify.py).

- A knowledge base is a set of the tenant's documents: those uploaded with the metadata field
  `knowledge_base` equal to the `knowledge_id` Dify sends (or an array holding it); `all` is every
  document of the tenant. A `knowledge_id` no document names is Dify's error 2001.
- `metadata_condition` becomes the search filters' metadata conditions, which are equality and
  any-of: `is` and `=` (equal: a string that reads as a number, boolean or null also matches that
  value, as `GET /search`'s `meta.KEY=VALUE` does), `in` (any of a list). Conditions on one field are
  intersected under `and` and united under `or`; `or` across fields, and the other operators
  (`contains`, `start with`, `is not`, `>`, `before`, `empty`, ...), are refused (error 3002) rather
  than answered with something else.
- Scores: the search is by meaning (vector mode) and each record's `score` is its cosine similarity
  to the query, clipped to 0..1, so `score_threshold` keeps what is at least that similar (MiniLM:
  unrelated text ~0.0-0.2, related 0.4 and up); Dify's "threshold off" (0.0) keeps all `top_k`.
"""

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from app.embedding.embedder import Embedder
from app.retrieval.filters import Filters, Scalar, from_query_params
from app.retrieval.params import search_params
from app.retrieval.search import Hit, retrieve
from app.settings import Settings
from app.stores.chunks.reader import ChunkSearch
from app.stores.files import FileStore
from app.stores.storable import storable

KNOWLEDGE_FIELD = "knowledge_base"
ALL = "all"
EQUAL = ("is", "=")
ANY_OF = ("in",)


# --- the request and the answer, as Dify documents them ------------------------------------------


class Condition(BaseModel):
    name: str | list[str] = Field(description="the metadata field (a list of one name is accepted too)")
    comparison_operator: str = Field(description="`is`, `=` or `in`; others are refused (3002)")
    value: str | int | float | bool | list[str | int | float | bool] | None = None


class MetadataCondition(BaseModel):
    logical_operator: Literal["and", "or"] = "and"
    conditions: list[Condition] = Field(default_factory=list, max_length=32)


class RetrievalSetting(BaseModel):
    top_k: int = Field(ge=1, description="records wanted (more than QUERY_MAX_K gives QUERY_MAX_K)")
    score_threshold: float = Field(0.0, ge=0, le=1, allow_inf_nan=False, description="minimum score, 0..1")


def _storable(text: str) -> str:
    if not storable(text):
        raise ValueError("NUL characters and invalid Unicode are not allowed")
    return text


KnowledgeId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000), AfterValidator(_storable)
]
Query = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000), AfterValidator(_storable)
]


class RetrievalRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # what Dify may add later is not an error

    knowledge_id: KnowledgeId = Field(description="a `knowledge_base` metadata value, or `all`")
    query: Query
    retrieval_setting: RetrievalSetting
    metadata_condition: MetadataCondition | None = None


class Record(BaseModel):
    content: str
    score: float = Field(description="cosine similarity to the query, 0..1")
    title: str = Field(description="the document's filename")
    metadata: dict[str, Any] = Field(
        description="the document's upload metadata, with file_id, chunk_id, page_start, page_end"
    )


class RetrievalResponse(BaseModel):
    records: list[Record]


# --- the mapping ----------------------------------------------------------------------------------


class KnowledgeNotFound(LookupError):
    """No document of the tenant names this knowledge base."""


class UnsupportedCondition(ValueError):
    """A metadata condition the search filters cannot express."""


@dataclass(frozen=True)
class Matching:
    """What metadata filters a retrieval needs; `impossible` when no document can match them."""

    filters: Filters | None
    impossible: bool = False


def _key(value: Scalar) -> tuple[type, Scalar]:
    return (type(value), value)  # True == 1, but not as metadata


def _values(cond: Condition) -> list[Scalar]:
    """The values a condition accepts (a string also as the JSON scalar it reads as)."""
    op = cond.comparison_operator.strip().lower()
    raw = cond.value
    if op in EQUAL:
        if isinstance(raw, list) or raw is None:
            raise UnsupportedCondition(f"{cond.comparison_operator!r} compares with one value")
        listed = [raw]
    elif op in ANY_OF:
        listed = raw if isinstance(raw, list) else [raw]
        if not listed or raw is None:
            raise UnsupportedCondition("'in' needs a list of values")
    else:
        raise UnsupportedCondition(
            f"the comparison operator {cond.comparison_operator!r} is not supported: use 'is', '=' or 'in'"
        )
    out: list[Scalar] = []
    for value in listed:
        expanded = from_query_params([("meta.v", value)]).get("v") if isinstance(value, str) else value
        candidates = expanded["$in"] if isinstance(expanded, dict) else [expanded]
        out += [c for c in candidates if _key(c) not in {_key(o) for o in out}]
    return out


def _name(cond: Condition) -> str:
    names = [cond.name] if isinstance(cond.name, str) else cond.name
    if len(names) != 1 or not names[0].strip():
        raise UnsupportedCondition("a condition names one metadata field")
    return names[0].strip()


def matching(knowledge_id: str, condition: MetadataCondition | None) -> Matching:
    """The search filters for a knowledge base and Dify's metadata condition (UnsupportedCondition)."""
    by_name: dict[str, list[Scalar]] = {}
    conditions = condition.conditions if condition else []
    if conditions:
        names = {_name(c) for c in conditions}
        if condition and condition.logical_operator == "or" and len(names) > 1:
            raise UnsupportedCondition("'or' is supported between conditions on the same metadata field only")
        for cond in conditions:
            name, values = _name(cond), _values(cond)
            if name not in by_name:
                by_name[name] = values
            elif condition and condition.logical_operator == "or":
                by_name[name] += [v for v in values if _key(v) not in {_key(o) for o in by_name[name]}]
            else:
                by_name[name] = [v for v in by_name[name] if _key(v) in {_key(o) for o in values}]
    if knowledge_id != ALL:
        within = by_name.get(KNOWLEDGE_FIELD)
        by_name[KNOWLEDGE_FIELD] = (
            [knowledge_id] if within is None else [v for v in within if _key(v) == _key(knowledge_id)]
        )
    if any(not values for values in by_name.values()):
        return Matching(None, impossible=True)
    if not by_name:
        return Matching(None)
    metadata = {k: (v[0] if len(v) == 1 else {"$in": v}) for k, v in by_name.items()}
    try:
        return Matching(Filters(metadata=metadata))
    except ValidationError as exc:
        raise UnsupportedCondition("; ".join(str(e.get("msg", "")) for e in exc.errors())) from exc


def score(hit: Hit) -> float:
    """The record's score: the chunk's cosine similarity to the query, within 0..1."""
    return min(1.0, max(0.0, hit.vector_score or 0.0))


def record(hit: Hit) -> Record:
    meta = {**hit.metadata, "file_id": hit.file_id, "chunk_id": hit.chunk_id, "page_start": hit.page_start,
            "page_end": hit.page_end}  # fmt: skip
    return Record(content=hit.text, score=round(score(hit), 6), title=hit.filename, metadata=meta)


async def knowledge_records(
    settings: Settings,
    files: FileStore,
    chunks: ChunkSearch,
    embedder: Embedder,
    tenant: str,
    req: RetrievalRequest,
) -> list[Record]:
    """The records Dify asked for: KnowledgeNotFound, UnsupportedCondition."""
    if req.knowledge_id != ALL and not await files.any_with_metadata(tenant, KNOWLEDGE_FIELD, req.knowledge_id):
        raise KnowledgeNotFound(req.knowledge_id)
    match = matching(req.knowledge_id, req.metadata_condition)
    if match.impossible:
        return []
    k = min(req.retrieval_setting.top_k, settings.query_max_k)
    params = search_params(settings, req.query, "vector", k, match.filters)
    retrieval = await retrieve(chunks, embedder, tenant, params)
    threshold = req.retrieval_setting.score_threshold
    return [record(h) for h in retrieval.hits if score(h) >= threshold]
