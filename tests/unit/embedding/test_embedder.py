"""The API's query embedder and the worker's embedder agree."""

import numpy as np
import pytest

from app.embedding.embedder import load_embedder
from app.settings import Settings

TEXTS = [
    "When did the volcano last erupt?",
    "The sourdough starter is fed twice daily with rye flour.",
    "Satellites in geostationary orbit appear fixed in the sky. " * 20,
]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_torch_and_onnx_give_the_same_vectors(precision: str) -> None:
    settings = Settings(embedding_precision=precision)
    torch_vecs = load_embedder(settings, "torch").embed(TEXTS)
    onnx_vecs = load_embedder(settings, "onnx").embed(TEXTS)
    assert torch_vecs.shape == onnx_vecs.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(torch_vecs, axis=1), 1, atol=1e-3)
    cosines = (torch_vecs * onnx_vecs).sum(axis=1)
    assert cosines.min() >= 0.999, cosines


def test_batches_keep_input_order() -> None:
    emb = load_embedder(Settings(embedding_batch_size=2), "onnx")
    together = emb.embed(TEXTS)
    alone = np.vstack([emb.embed([t]) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_plain_torch_minilm_matches_sentence_transformers() -> None:
    """app/embedding/minilm.py is a hand-written forward pass: hold it to the reference implementation."""
    st = pytest.importorskip("sentence_transformers")
    from app.embedding.embedder import model_dir

    settings = Settings(embedding_precision="fp32")
    reference = st.SentenceTransformer(str(model_dir(settings)), device="cpu").encode(
        TEXTS, normalize_embeddings=True, convert_to_numpy=True
    )
    ours = load_embedder(settings, "torch").embed(TEXTS)
    assert (reference * ours).sum(axis=1).min() >= 0.9999
