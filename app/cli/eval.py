"""Retrieval evaluation: `python -m app.cli.eval QUESTIONS.jsonl [--url URL] [--json OUT]`.

Each line of the JSONL file is one question:

    {"question": "How often is the seal replaced?",
     "expected": {"filename": "pump-manual.pdf", "page": 2, "answer_substring": "4,000"},
     "filters": {"metadata": {"corpus": "eval-v1"}}}                       (optional)

`expected` names the file by `file` (its id) or `filename`; `page` (within the chunk's
page range) and `answer_substring` (case-insensitive, in the chunk's text) narrow it
down. A result is relevant when every given condition holds.

Every question is asked in every mode (`POST /query`, k = 10) of a running API; the
report gives, per mode, recall@1/@5/@10 (the share of questions with a relevant
result in the top 1/5/10), MRR (mean of 1/rank of the first relevant result, 0 past
10) and the latency seen by the client (p50, p95), as a table and as JSON.

The API key (`read` scope) comes from the environment, `DOCPROC_API_KEY`, so that it
stays out of the process list and shell history.
"""

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

MODES = ("vector", "keyword", "hybrid")
K = 10
CUTOFFS = (1, 5, 10)


class EvalSetError(ValueError):
    pass


@dataclass
class Question:
    question: str
    expected: dict[str, Any]
    filters: dict[str, Any] | None = None
    line: int = 0


@dataclass
class Outcome:
    question: str
    mode: str
    rank: int | None  # 1-based place of the first relevant result within K, None if absent
    latency_ms: float
    error: str | None = None


@dataclass
class ModeReport:
    mode: str
    outcomes: list[Outcome] = field(default_factory=list)

    def recall(self, n: int) -> float:
        return _mean([1.0 if o.rank is not None and o.rank <= n else 0.0 for o in self.outcomes])

    def mrr(self) -> float:
        return _mean([1.0 / o.rank if o.rank else 0.0 for o in self.outcomes])

    def latency(self, q: float) -> float:
        return percentile([o.latency_ms for o in self.outcomes if o.error is None], q)

    def as_dict(self) -> dict[str, Any]:
        return {
            "questions": len(self.outcomes),
            **{f"recall@{n}": round(self.recall(n), 4) for n in CUTOFFS},
            "mrr": round(self.mrr(), 4),
            "latency_ms": {"p50": round(self.latency(0.5), 1), "p95": round(self.latency(0.95), 1)},
            "errors": sum(1 for o in self.outcomes if o.error),
            "missed": [o.question for o in self.outcomes if o.rank is None],
            "ranks": [o.rank for o in self.outcomes],
        }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def load_questions(path: Path) -> list[Question]:
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise EvalSetError(f"{path}:{number}: not JSON: {exc}") from exc
        question, expected = (item.get("question"), item.get("expected")) if isinstance(item, dict) else (None, None)
        if not isinstance(question, str) or not question.strip():
            raise EvalSetError(f"{path}:{number}: `question` must be a non-empty string")
        if not isinstance(expected, dict) or not ({"file", "filename"} & set(expected)):
            raise EvalSetError(f"{path}:{number}: `expected` must be an object with `file` or `filename`")
        filters = item.get("filters")
        if filters is not None and not isinstance(filters, dict):
            raise EvalSetError(f"{path}:{number}: `filters` must be an object")
        out.append(Question(question, expected, filters, number))
    if not out:
        raise EvalSetError(f"{path}: no questions")
    return out


def relevant(hit: dict[str, Any], expected: dict[str, Any]) -> bool:
    if "file" in expected and hit.get("file_id") != expected["file"]:
        return False
    if "filename" in expected and hit.get("filename") != expected["filename"]:
        return False
    if expected.get("page") is not None:
        start, end = hit.get("page_start"), hit.get("page_end")
        if start is None or not start <= int(expected["page"]) <= (end if end is not None else start):
            return False
    if expected.get("answer_substring"):
        text = " ".join(str(hit.get("text", "")).split()).lower()
        if " ".join(str(expected["answer_substring"]).split()).lower() not in text:
            return False
    return True


def first_relevant(results: Sequence[dict[str, Any]], expected: dict[str, Any]) -> int | None:
    return next((rank for rank, hit in enumerate(results, start=1) if relevant(hit, expected)), None)


def evaluate(
    client: httpx.Client,
    questions: Sequence[Question],
    modes: Sequence[str] = MODES,
    filters: dict[str, Any] | None = None,
) -> dict[str, ModeReport]:
    reports = {mode: ModeReport(mode) for mode in modes}
    # one warm-up request so that no mode pays for the first connection or a cold cache
    client.post("/query", json={"query": questions[0].question, "k": 1, "mode": modes[0]})
    for mode in modes:
        for q in questions:
            body: dict[str, Any] = {"query": q.question, "k": K, "mode": mode}
            if q.filters or filters:
                body["filters"] = {**(filters or {}), **(q.filters or {})}
            t0 = time.perf_counter()
            response = client.post("/query", json=body)
            latency = (time.perf_counter() - t0) * 1000
            if response.status_code != 200:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                reports[mode].outcomes.append(Outcome(q.question, mode, None, latency, error))
                continue
            rank = first_relevant(response.json()["results"], q.expected)
            reports[mode].outcomes.append(Outcome(q.question, mode, rank, latency))
    return reports


def report_json(reports: dict[str, ModeReport], url: str, source: str) -> dict[str, Any]:
    return {
        "source": source,
        "url": url,
        "k": K,
        "modes": {mode: r.as_dict() for mode, r in reports.items()},
    }


def _cells(row: list[str], widths: list[int]) -> list[str]:
    """The first column left-aligned, the numbers right-aligned."""
    return [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))]


def table(reports: dict[str, ModeReport]) -> str:
    header = ["mode", "questions", "recall@1", "recall@5", "recall@10", "MRR", "p50 ms", "p95 ms", "errors"]
    rows = [header]
    for mode, r in reports.items():
        d = r.as_dict()
        rows.append(
            [
                mode,
                str(d["questions"]),
                *(f"{d[f'recall@{n}']:.3f}" for n in CUTOFFS),
                f"{d['mrr']:.3f}",
                f"{d['latency_ms']['p50']:.1f}",
                f"{d['latency_ms']['p95']:.1f}",
                str(d["errors"]),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(_cells(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.cli.eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("questions", type=Path, help="JSONL: {question, expected: {file|filename, page?, ...}}")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the API (default: %(default)s)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated (default: %(default)s)")
    parser.add_argument("--filters", type=json.loads, default=None, help="JSON filters added to every query")
    parser.add_argument("--json", dest="json_out", help="write the report as JSON to this file (- for stdout)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    try:
        questions = load_questions(args.questions)
    except (OSError, EvalSetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        key = os.environ.get("DOCPROC_API_KEY", "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with httpx.Client(base_url=args.url, timeout=args.timeout, headers=headers) as client:
            reports = evaluate(client, questions, modes, args.filters)
    except httpx.HTTPError as exc:
        print(f"error: the API at {args.url} did not answer: {exc}", file=sys.stderr)
        return 2
    report = report_json(reports, args.url, str(args.questions))
    if args.json_out == "-":
        print(json.dumps(report, indent=2))
    else:
        print(table(reports))
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 1 if any(o.error for r in reports.values() for o in r.outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
