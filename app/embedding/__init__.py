"""Sentence embeddings (all-MiniLM-L6-v2): the `Embedder` interface and its loader (embedder.py), the
ONNX int8 runtime (onnx.py) and the plain-torch one (minilm.py)."""
