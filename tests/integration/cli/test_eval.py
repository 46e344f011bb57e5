"""The retrieval evaluation (python -m app.cli.eval) through the real stack, on the shipped set.

tests/data/eval/corpus.json describes the documents (generated here: PDFs with fpdf2,
the rest as text, plus seeded distractor manuals); tests/data/eval/questions.jsonl the
questions. They are uploaded with the corpus's metadata and every query is filtered
by it, so documents other tests upload do not change the numbers.

The floor: hybrid recall@5 >= 0.95 (at most one of the 38 questions missed).
Measured on this set (README, "Search and answers"): hybrid 1.000, vector 0.842,
keyword 0.947. The floor sits above both single modes, so a fusion that silently
degrades to either leg (a lost leg, a zero weight, a filter applied to one side only)
fails; vector search misses the exact codes, keyword search the paraphrases, and only
both together find all. Below it by one question, and every relevant chunk hybrid
finds is at rank 3 or better, so the small differences between the worker's embedders
(torch bf16 where the CPU has it, else ONNX int8; cosine >= 0.999) cannot make it flaky.
"""

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.cli.eval import load_questions
from tests.fixtures import ROOT
from tests.fixtures.api import delete_files, wait_final
from tests.fixtures.documents import make_pdf
from tests.fixtures.worker import run_worker

EVAL_DIR = ROOT / "tests" / "data" / "eval"


HYBRID_RECALL_AT_5_FLOOR = 0.95


KINDS = [
    "Circulation Pump", "Booster Pump", "Dosing Pump", "Vacuum Pump", "Exhaust Fan", "Roof Fan", "Screw Compressor",
    "Piston Compressor", "Chiller", "Boiler", "Cooling Tower", "Air Handler", "Gearbox", "Conveyor", "Generator",
    "Hydraulic Press", "Mixer", "Blower", "Dehumidifier", "Heat Pump", "Water Softener", "Sump Pump",
    "Scroll Compressor", "Axial Fan",
]  # fmt: skip


COMPONENTS = ["seal kit", "bearing kit", "filter element", "drive belt", "impeller", "valve plate", "gasket set"]


PROBLEMS = [
    ("the unit is running dry", "Stop it, vent the casing and refill it before restarting"),
    ("the motor is overheating", "Check the ventilation grille and the supply voltage"),
    ("vibration on the housing is too high", "Clean and balance the rotating parts"),
    ("the discharge temperature is too high", "Clean the cooler and check the oil level"),
    ("the outlet pressure is too low", "Check the inlet strainer for blockage"),
    ("the belt is slipping", "Re-tension the belt and check the pulleys for wear"),
]


RESERVED = {"217", "342", "508", "119"}  # the fault codes the questions ask about


def distractors(count: int, seed: int) -> list[dict]:
    """Service manuals of other machines: the vocabulary of the real ones, other models and codes."""
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        model = f"{rng.choice('BCDGKLMNPRTWZ')}{rng.choice('ABDEFGKLMNRSTW')}-{rng.randint(10, 990)}"
        part = f"{rng.choice('ABCDGKMPRTW')}{rng.choice('ABCEFGKLNRT')}-{rng.randint(1000, 9999)}-{rng.choice('ABCDE')}"
        codes = [c for c in (str(rng.randint(100, 999)) for _ in range(4)) if c not in RESERVED][:2]
        (p1, a1), (p2, a2) = rng.sample(PROBLEMS, 2)
        component, hours, torque = rng.choice(COMPONENTS), rng.choice([500, 1000, 2000, 3000, 6000, 8000]), 10 + i
        docs.append(
            {
                "filename": f"eval-distractor-{i:02d}.pdf",
                "pages": [
                    f"{model} {kind} - Service Manual. Maintenance: the {component}, part number {part}, must be "
                    f"replaced every {hours:,} operating hours. Before starting, isolate the motor and drain or vent "
                    f"the unit. Tighten the fixing bolts to {torque} Nm in a cross pattern. Lubricate moving parts "
                    f"with the grease named on the rating plate and check the oil level weekly.",
                    f"{model} Troubleshooting. Fault code E-{codes[0]} means {p1}. {a1}. Fault code E-{codes[1]} "
                    f"indicates {p2}; {a2.lower()}. If the {kind.lower()} hums but does not start, call service.",
                ],
            }
        )
    return docs


def eval_documents() -> tuple[list[tuple[str, bytes]], dict]:
    corpus = json.loads((EVAL_DIR / "corpus.json").read_text())
    docs = corpus["documents"] + distractors(**corpus["distractors"])
    files = [(d["filename"], make_pdf(d["pages"]) if "pages" in d else d["text"].encode()) for d in docs]
    return files, corpus["metadata"]


@pytest.fixture(scope="module")
def eval_corpus(api_url: str, stack) -> Iterator[dict]:
    with stack.client(api_url, timeout=60) as client:
        metadata, ids = _upload_corpus(client)
        yield metadata
        delete_files(client, ids)


def _upload_corpus(client: httpx.Client) -> tuple[dict, list[str]]:
    files, metadata = eval_documents()
    ids = []
    for start in range(0, len(files), 8):  # MAX_FILES_PER_REQUEST is 8 in the tests
        batch = files[start : start + 8]
        r = client.post(
            "/upload",
            files=[("files", (name, data, "application/octet-stream")) for name, data in batch],
            data={"metadata": json.dumps(metadata)},
        )
        assert r.status_code == 202, r.text
        ids += [f["file_id"] for f in r.json()["files"]]
    run_worker()
    docs = wait_final(client, ids)
    assert {d["status"] for d in docs.values()} == {"embedded"}, docs
    return metadata, ids


def test_eval_command_reports_every_mode_and_hybrid_holds_its_floor(
    eval_corpus: dict, api_url: str, tmp_path: Path, stack
) -> None:
    out = tmp_path / "eval.json"
    cmd = [
        sys.executable, "-m", "app.cli.eval", str(EVAL_DIR / "questions.jsonl"), "--url", api_url,
        "--filters", json.dumps({"metadata": eval_corpus}), "--json", str(out),
    ]  # fmt: skip
    env = {**os.environ, "DOCPROC_API_KEY": stack.key(scopes="read")}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    header = result.stdout.splitlines()[0]
    assert header.split()[:6] == ["mode", "questions", "recall@1", "recall@5", "recall@10", "MRR"]
    report = json.loads(out.read_text())
    modes = report["modes"]
    assert set(modes) == {"vector", "keyword", "hybrid"}
    n = len(load_questions(EVAL_DIR / "questions.jsonl"))
    for m in modes.values():
        assert m["questions"] == n and m["errors"] == 0
        assert 0 <= m["recall@1"] <= m["recall@5"] <= m["recall@10"] <= 1 and 0 <= m["mrr"] <= 1
        assert 0 < m["latency_ms"]["p50"] <= m["latency_ms"]["p95"]
    hybrid = modes["hybrid"]
    assert hybrid["recall@5"] >= HYBRID_RECALL_AT_5_FLOOR, modes
    # fusion earns its keep: at least as good as either mode alone
    assert hybrid["recall@5"] >= max(modes["vector"]["recall@5"], modes["keyword"]["recall@5"]), modes


def test_eval_json_to_stdout_and_bad_input(eval_corpus: dict, api_url: str, tmp_path: Path, stack) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "SK-4471-B", "expected": {"filename": "eval-pump-manual.pdf"}}) + "\n")
    cmd = [sys.executable, "-m", "app.cli.eval", str(questions), "--url", api_url, "--modes", "keyword", "--json", "-"]
    env = {**os.environ, "DOCPROC_API_KEY": stack.key(scopes="read")}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert list(report["modes"]) == ["keyword"] and report["modes"]["keyword"]["recall@1"] == 1.0

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\n')
    base = [sys.executable, "-m", "app.cli.eval", "--url", api_url]
    result = subprocess.run([*base, str(bad)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2 and "bad.jsonl:1" in result.stderr and "expected" in result.stderr
    result = subprocess.run([*base, str(questions), "--modes", "fuzzy"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "--modes" in result.stderr
