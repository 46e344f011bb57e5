"""One entry of the interaction log (app/stores/interactions.py): what was asked, what was retrieved
with which scores, what was answered by whom, any error, and each stage's latency."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.retrieval.params import SearchParams
from app.retrieval.search import Hit


@dataclass
class Interaction:
    tenant: str
    endpoint: str  # query, search, generate, generate-text-with-context
    query: str
    params: SearchParams | None = None  # None: no retrieval (POST /generate)
    hits: Sequence[Hit] = ()
    latency_ms: dict[str, float] = field(default_factory=dict)
    answer: str | None = None
    generator: str | None = None  # llm, extractive
    model: str | None = None
    error: dict[str, str] | None = None  # {code, message}
    citations: list[int] | None = None  # the passage numbers the answer cites (answers with context)
    id: str | None = None  # set when the log is on

    def to_doc(self) -> dict[str, Any]:
        """The document stored in `interactions`."""
        filters = self.params.filters if self.params else None
        doc: dict[str, Any] = {
            "tenant": self.tenant,
            "endpoint": self.endpoint,
            "query": self.query,
            "mode": self.params.mode if self.params else None,
            "k": self.params.k if self.params else None,
            # as JSON text: filter keys are the caller's and need not be valid MongoDB field names
            "filters": filters.model_dump_json(exclude_none=True) if filters and not filters.is_empty() else None,
            "retrieved": [
                {
                    "chunk_id": h.chunk_id,
                    "file_id": h.file_id,
                    "chunk_index": h.chunk_index,
                    "score": h.score,
                    "vector_score": h.vector_score,
                    "keyword_score": h.keyword_score,
                }
                for h in self.hits
            ],
            "latency_ms": self.latency_ms,
            "answer": self.answer,
            "generator": self.generator,
            "model": self.model,
            "error": self.error,
        }
        if self.citations is not None:
            doc["citations"] = self.citations
        if self.id is not None:
            doc["_id"] = self.id
        return doc
