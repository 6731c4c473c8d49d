"""A linear classification head on a backbone's pooled hidden states (the probing / classification
objective), kept apart from the backbone so converters and `save_hf` see the backbone unchanged."""

from __future__ import annotations

from flax import nnx

from vlmcls_jax.models.layers import Linear


class WithHead(nnx.Module):
    """`backbone` (a LLaVA, Llama or CLIP model) + `head`: Linear(width -> num_classes)."""

    def __init__(self, backbone: nnx.Module, width: int, num_classes: int, *, rngs: nnx.Rngs, dtype=None,
                 param_dtype=None):
        import jax.numpy as jnp
        self.backbone = backbone
        self.head = Linear(width, num_classes, axes=("embed", None), use_bias=True, dtype=dtype or jnp.float32,
                           param_dtype=param_dtype or jnp.float32, rngs=rngs)
        self.config = backbone.config
