"""Elements in, chunks out: packed up to the embedding model's token limit.

Token counts come from the model's own tokenizer (WordPiece counts add up over
whitespace-joined pieces, so a chunk's count is the sum of its pieces'). A
heading starts a new chunk; an element too long for one chunk is cut into
windows that overlap; consecutive chunks of one section overlap by the tail of
the previous one. Headings are text to find too: one that cannot lead a chunk
(at the end, before an element too long to join it, one heading too many) is a
chunk of its own, so a document of headings alone is indexed.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

from worker.parsing import Element

HEADING_KINDS = frozenset({"title", "heading"})


@dataclass(frozen=True)
class Chunk:
    text: str
    page_start: int | None
    page_end: int | None
    heading_path: tuple[str, ...]
    kinds: tuple[str, ...]
    tokens: int


@dataclass
class _Piece:
    text: str
    tokens: int
    kind: str
    page: int | None


@dataclass
class _Builder:
    heading_path: tuple[str, ...] = ()
    pieces: list[_Piece] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(p.tokens for p in self.pieces)

    def has_body(self) -> bool:
        return any(p.kind not in HEADING_KINDS for p in self.pieces)

    def build(self) -> Chunk:
        pages = [p.page for p in self.pieces if p.page is not None]
        kinds = tuple(dict.fromkeys(p.kind for p in self.pieces))
        return Chunk(
            text="\n".join(p.text for p in self.pieces),
            page_start=min(pages) if pages else None,
            page_end=max(pages) if pages else None,
            heading_path=self.heading_path,
            kinds=kinds,
            tokens=self.tokens,
        )


class Chunker:
    def __init__(self, tokenizer, max_tokens: int = 256, overlap_tokens: int = 32) -> None:  # noqa: ANN001
        self.tokenizer = tokenizer
        self.budget = max_tokens - 2  # [CLS] and [SEP]
        self.overlap = min(overlap_tokens, self.budget // 4)

    def _offsets(self, text: str) -> list[tuple[int, int]]:
        return self.tokenizer.encode(text, add_special_tokens=False).offsets

    def _windows(self, text: str, offsets: list[tuple[int, int]]) -> Iterable[tuple[str, int]]:
        step = self.budget - self.overlap
        for start in range(0, len(offsets), step):
            window = offsets[start : start + self.budget]
            yield text[window[0][0] : window[-1][1]], len(window)
            if start + self.budget >= len(offsets):
                break

    def _tail(self, piece: _Piece) -> _Piece | None:
        if self.overlap == 0 or piece.kind in HEADING_KINDS:
            return None
        offsets = self._offsets(piece.text)
        if not offsets:
            return None
        tail = offsets[-self.overlap :]
        return _Piece(piece.text[tail[0][0] :], len(tail), piece.kind, piece.page)

    def chunk(self, elements: Iterable[Element]) -> list[Chunk]:
        chunks: list[Chunk] = []
        cur = _Builder()

        def flush(carry_overlap: bool, headings_alone: bool = False) -> None:
            """Emit the chunk being built. Headings alone wait to lead the next chunk, unless
            `headings_alone` says none will follow that they fit into."""
            nonlocal cur
            if not cur.pieces or not (headings_alone or cur.has_body()):
                return
            chunks.append(cur.build())
            tail = self._tail(cur.pieces[-1]) if carry_overlap else None
            cur = _Builder(heading_path=cur.heading_path, pieces=[tail] if tail else [])

        for el in elements:
            offsets = self._offsets(el.text)
            n = len(offsets)
            if n == 0:
                continue
            if el.kind in HEADING_KINDS:
                flush(carry_overlap=False)  # a heading-only start is kept: it leads the next chunk
                cur.heading_path = el.heading_path
            elif el.heading_path != cur.heading_path:
                flush(carry_overlap=False)  # no overlap across sections; waiting headings still lead
                cur.heading_path = el.heading_path
            if n > self.budget:
                flush(carry_overlap=False, headings_alone=True)
                for text, count in self._windows(el.text, offsets):
                    cur.pieces = [_Piece(text, count, el.kind, el.page)]
                    chunks.append(cur.build())
                cur.pieces = []
                continue
            if cur.tokens + n > self.budget:
                flush(carry_overlap=True, headings_alone=True)
                if cur.tokens + n > self.budget:  # the overlap itself does not fit
                    cur.pieces.clear()
            cur.pieces.append(_Piece(el.text, n, el.kind, el.page))
        flush(carry_overlap=False, headings_alone=True)
        return chunks
