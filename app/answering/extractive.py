"""An answer without an LLM: the sentences of the top passages that best match the question.

Each sentence is scored by how many of the question's words it has (crudely
stemmed, stop words dropped) and, when an embedder is given, by its cosine
similarity to the question; a sentence of a higher-ranked passage gets a small
bonus. The best few, each followed by its passage number (`[2]`), are the answer.
"""

import re
from collections.abc import Callable, Sequence

import numpy as np

from app.retrieval.search import Hit

MAX_PASSAGES = 5
MAX_SENTENCES = 3
MAX_CHARS = 700
NO_ANSWER = "No passage in the documents matches the question."

_STOP_WORDS = """a about above after again all also am an and any are as at be been before being below between
    both but by
    can could did do does doing down during each few for from further had has have having he her here hers him his
    how i if in into is it its itself just me more most my no nor not of off on once only or other our out over own
    same she should so some such than that the their them then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you your"""
STOP_WORDS = frozenset(_STOP_WORDS.split())

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'“(\[]?[A-Z0-9])|\n+")
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and len(s.strip()) >= 3]


def stem(word: str) -> str:
    """A crude stemmer: enough for `replaced` ~ `replace` ~ `replacing`, `pumps` ~ `pump`."""
    for suffix in ("ations", "ation", "ings", "ing", "edly", "ed", "ies", "es", "ly", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def terms(text: str) -> set[str]:
    return {stem(w) for w in _WORD.findall(text.lower()) if w not in STOP_WORDS}


def extract(
    query: str,
    passages: Sequence[Hit],
    embed: Callable[[list[str]], np.ndarray] | None = None,
    max_sentences: int = MAX_SENTENCES,
    max_chars: int = MAX_CHARS,
) -> tuple[str, list[int]]:
    """(answer, cited passage numbers); passages are numbered from 1 in the order given."""
    candidates: list[tuple[int, str]] = []  # (passage number, sentence)
    seen: set[str] = set()
    for n, hit in enumerate(passages[:MAX_PASSAGES], start=1):
        for sentence in sentences(hit.text):
            key = " ".join(sentence.lower().split())
            if key not in seen:  # consecutive chunks overlap: the same sentence twice
                seen.add(key)
                candidates.append((n, sentence))
    if not candidates:
        return NO_ANSWER, []
    query_terms = terms(query)
    lexical = np.array([len(query_terms & terms(s)) / len(query_terms) if query_terms else 0.0 for _, s in candidates])
    semantic = np.zeros(len(candidates))
    if embed is not None:
        vectors = embed([query] + [s for _, s in candidates])
        semantic = vectors[1:] @ vectors[0]
    prior = np.array([0.05 / n for n, _ in candidates])
    scores = 0.6 * semantic + 0.4 * lexical + prior if embed is not None else lexical + prior
    order = np.argsort(-scores, kind="stable")
    best = float(scores[order[0]])
    picked: list[tuple[int, str]] = []
    used = 0
    for i in order:
        if len(picked) >= max_sentences or (picked and float(scores[i]) < 0.75 * best):
            break
        n, sentence = candidates[i]
        if picked and used + len(sentence) > max_chars:
            continue
        if len(sentence) > max_chars:
            sentence = sentence[: max_chars - 1].rstrip() + "…"
        picked.append((n, sentence))
        used += len(sentence)
    answer = " ".join(f"{sentence} [{n}]" for n, sentence in picked)
    cited: list[int] = []
    for n, _ in picked:
        if n not in cited:
            cited.append(n)
    return answer, cited
