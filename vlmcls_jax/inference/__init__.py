"""Inference: greedy generation and class-name scoring on a KV cache."""

from vlmcls_jax.inference.generate import generate
from vlmcls_jax.inference.scoring import score_candidates
