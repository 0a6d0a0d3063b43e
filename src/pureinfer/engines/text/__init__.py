"""The text engine: continuous batching over a transformers causal LM (see engine.py)."""
