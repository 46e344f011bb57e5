"""What the benchmark scripts share: a stack of their own, generated prose, load, reporting."""

import ast
import asyncio
import functools
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SUBJECTS = ["The harbour authority", "Our maintenance team", "The survey vessel", "The finance committee",
            "Each terminal operator", "The pilot station", "The port engineer", "The customs office",
            "The dredging contractor", "A visiting inspector", "The night shift", "The board"]  # fmt: skip
VERBS = ["reviewed", "approved", "postponed", "measured", "reported", "inspected", "estimated", "rejected",
         "scheduled", "documented", "questioned", "recommended"]  # fmt: skip
OBJECTS = ["the berth dredging budget", "the crane inspection backlog", "tidal currents near the north pier",
           "the container dwell times", "the ferry timetable for winter", "fuel costs for the tug fleet",
           "the seabed survey of the outer basin", "storm damage to the breakwater", "the cargo manifest errors",
           "salinity readings in the estuary", "the lighthouse automation plan", "berth allocation rules"]  # fmt: skip
CLAUSES = ["after the spring storms", "before the audit in March", "because the sonar data were incomplete",
           "while the east quay was closed", "despite objections from the crews", "in line with the 2019 plan",
           "at a cost of {n} thousand euros", "for the {n} vessels expected", "within {n} working days",
           "on {n} separate occasions"]  # fmt: skip


def sentence(rng: random.Random) -> str:
    clause = rng.choice(CLAUSES).format(n=rng.randint(2, 400))
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {clause}."


def paragraph(rng: random.Random, sentences: int = 6) -> str:
    return " ".join(sentence(rng) for _ in range(sentences))


@functools.cache
def docstring_sentences() -> tuple[str, ...]:
    """Real English sentences from the docstrings of Python's own standard library (read
    with `ast`, nothing imported or downloaded): about 14,000 sentences, 12,000 distinct words.

    The generated prose above has about 100 distinct words: it is fine for embedding, but any
    all-words keyword query matches thousands of its chunks, which no real corpus does.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idlelib"}
    out: dict[str, None] = {}
    for path in sorted(root.rglob("*.py")):
        if skip & set(path.parts):
            continue
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                for text in re.split(r"(?<=[.!?])\s+", " ".join((ast.get_docstring(node) or "").split())):
                    words = text.split()
                    if 6 <= len(words) <= 40 and sum(c.isalpha() or c.isspace() for c in text) > 0.85 * len(text):
                        out[text] = None
    return tuple(out)


def pdf_document(rng: random.Random, pages: int) -> bytes:
    """A PDF of `pages` pages of prose with a text layer (fpdf2)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=10)
    for p in range(pages):
        pdf.add_page()
        pdf.set_font("Helvetica", style="B", size=13)
        pdf.multi_cell(0, 7, f"Section {p + 1}: {rng.choice(OBJECTS)}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        for _ in range(4):
            pdf.multi_cell(0, 5, paragraph(rng), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
    return bytes(pdf.output())


# --- measuring ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class Load:
    requests: int
    seconds: float
    latencies: list[float]
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def row(self) -> dict[str, str]:
        return {
            "requests": f"{self.requests}",
            "req/s": f"{self.rps:,.0f}",
            "p50 ms": f"{percentile(self.latencies, 50) * 1000:.1f}",
            "p99 ms": f"{percentile(self.latencies, 99) * 1000:.1f}",
            "errors": f"{self.errors}",
        }


async def load(call: Callable[[int], Awaitable[bool]], requests: int, concurrency: int) -> Load:
    """Run `call(i)` for i in range(requests) with `concurrency` in flight; call returns success."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))

    async def client() -> None:
        nonlocal errors
        for i in counter:
            t0 = time.perf_counter()
            ok = await call(i)
            latencies.append(time.perf_counter() - t0)
            errors += 0 if ok else 1

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Load(requests, time.perf_counter() - start, latencies, errors)


def median(values: list[float]) -> float:
    return statistics.median(values)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far."""
    out = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def cpu_per_request(pids: dict[str, int], run: Callable[[], Load]) -> tuple[Load, dict[str, float]]:
    """Run the load; with it, each process's CPU milliseconds per request."""
    before = cpu_seconds(pids)
    result = run()
    after = cpu_seconds(pids)
    return result, {k: (after[k] - before[k]) * 1000 / result.requests for k in pids}


def rss_mb(pid: int) -> tuple[int, int]:
    """(current, peak) resident memory of a process, MB."""
    status = Path(f"/proc/{pid}/status").read_text()

    def field(name: str) -> int:
        return int(status.split(f"{name}:")[1].split()[0]) // 1024

    return field("VmRSS"), field("VmHWM")


# --- reporting ---------------------------------------------------------------------------


def table(rows: list[dict[str, str]]) -> str:
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r[h] for h in headers) + " |" for r in rows]
    return "\n".join(lines)


def machine_line() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT).stdout
    except OSError:
        commit, dirty = "unknown", ""
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{stamp}, commit {commit}{' (uncommitted changes)' if dirty.strip() else ''}, "
            f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}")  # fmt: skip


def record(title: str, body: str, write: bool) -> None:
    section = f"\n## {title} — {machine_line()}\n\n{body.strip()}\n"
    print(section)
    if write:
        with open(ROOT / "BENCHMARKS.md", "a") as f:
            f.write(section)


# --- profiling ---------------------------------------------------------------------------


@contextmanager
def profiled(pids: dict[str, int], out_dir: Path | None) -> Iterator[None]:
    """Sample each process with py-spy while the block runs (no-op without `out_dir`).

    Only threads holding the GIL are sampled (`--gil`): the shares are of CPU time, not waits.

    Writes `{name}.txt` (collapsed stacks) into `out_dir`; `hot_spots` summarises them.
    """
    if out_dir is None:
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    procs = [
        subprocess.Popen([spy, "record", "--gil", "--nonblocking", "--format", "raw", "--rate", "200",
                          "-o", str(out_dir / f"{name}.txt"), "-p", str(pid)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name, pid in pids.items()
    ]  # fmt: skip
    try:
        yield
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for p in procs:
            p.wait(30)


def hot_spots(collapsed: Path, top: int = 15, inclusive: bool = True) -> list[tuple[str, float]]:
    """The functions where a process spent its samples: (function, share), largest first.

    Inclusive shares count a function once per stack it appears in (time in it and below);
    exclusive ones only the innermost frame.
    """
    totals: dict[str, int] = {}
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  for f in stack.split(";")]  # fmt: skip
        for frame in set(frames) if inclusive else frames[-1:]:
            totals[frame] = totals.get(frame, 0) + n
    return [(f, n / samples) for f, n in sorted(totals.items(), key=lambda kv: -kv[1])[:top]] if samples else []
