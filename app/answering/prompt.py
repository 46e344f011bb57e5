"""Prompts for the LLM, and the citations read back from its answer.

Passages are numbered from 1 in the prompt; the model is asked to cite them as
`[n]`. A citation is a passage the answer refers to by its number.
"""

import re
from collections.abc import Sequence

from app.answering.llm import Message
from app.retrieval.search import Hit

SYSTEM_PLAIN = "You are a helpful assistant. Answer clearly and concisely."
SYSTEM_CONTEXT = (
    "You answer questions using only the numbered passages the user gives you. "
    "Cite every passage you use by its number in square brackets, like [1] or [2][3], "
    "right after the statement it supports. If the passages do not contain the answer, "
    "say that you cannot find it in the documents. Do not invent facts."
)


def where(hit: Hit) -> str:
    """`report.pdf, page 4` / `report.pdf, pages 4-5` / `notes.txt`."""
    if hit.page_start is None:
        return hit.filename
    if hit.page_end is None or hit.page_end == hit.page_start:
        return f"{hit.filename}, page {hit.page_start}"
    return f"{hit.filename}, pages {hit.page_start}-{hit.page_end}"


def fit_passages(hits: Sequence[Hit], max_chars: int) -> list[Hit]:
    """The leading passages that fit in `max_chars` of text (always at least the first, cut to fit)."""
    out: list[Hit] = []
    used = 0
    for hit in hits:
        if used + len(hit.text) > max_chars:
            if not out:
                out.append(hit)  # the best passage, even if long: the prompt cuts its text
            break
        out.append(hit)
        used += len(hit.text)
    return out


def plain_messages(query: str) -> list[Message]:
    return [{"role": "system", "content": SYSTEM_PLAIN}, {"role": "user", "content": query}]


def context_messages(query: str, passages: Sequence[Hit], max_chars: int) -> list[Message]:
    blocks = []
    for n, hit in enumerate(passages, start=1):
        heading = " > ".join(hit.heading_path)
        label = f"[{n}] ({where(hit)}" + (f"; {heading}" if heading else "") + ")"
        blocks.append(f"{label}\n{hit.text[:max_chars].strip()}")
    context = "\n\n".join(blocks) if blocks else "(no passages matched)"
    user = f"Passages:\n\n{context}\n\nQuestion: {query}\n\nAnswer, citing the passages by number:"
    return [{"role": "system", "content": SYSTEM_CONTEXT}, {"role": "user", "content": user}]


_CITE = re.compile(r"\[(\s*\d+(?:\s*[,;]\s*\d+)*\s*)\]")


def cited_numbers(answer: str, count: int) -> list[int]:
    """Passage numbers the answer cites (`[2]`, `[1, 3]`, `[1][2]`), in order of first use, within 1..count."""
    seen: list[int] = []
    for match in _CITE.finditer(answer):
        for part in re.split(r"[,;]", match.group(1)):
            n = int(part)
            if 1 <= n <= count and n not in seen:
                seen.append(n)
    return seen
