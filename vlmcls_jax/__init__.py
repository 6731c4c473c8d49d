"""vlmcls_jax: a JAX/Flax reimplementation of "Why are Visually-Grounded Language Models Bad at Image
Classification?" (Zhang et al., NeurIPS 2024)."""

__version__ = "0.1.0"
