"""The vision-to-language projector of LLaVA.

`mlp2x_gelu` (LLaVA-1.5, transformers' `LlavaMultiModalProjector`): linear_1 -> exact erf GELU -> linear_2.
`linear` (LLaVA-1.0): linear_1 only.
"""

from __future__ import annotations

import jax
from flax import nnx

from vlmcls_jax.models.layers import Linear, activation

PROJECTOR_TYPES = ("mlp2x_gelu", "linear")


class MultiModalProjector(nnx.Module):
    """[..., vision_width] -> [..., text_width]."""

    def __init__(self, in_features: int, out_features: int, *, projector_type: str = "mlp2x_gelu",
                 hidden_act: str = "gelu", use_bias: bool = True, dtype, param_dtype, rngs):
        if projector_type not in PROJECTOR_TYPES:
            raise ValueError(f"projector_type {projector_type!r} is not one of {PROJECTOR_TYPES}")
        kw = dict(use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.linear_1 = Linear(in_features, out_features, axes=(None, "embed"), **kw)
        self.linear_2 = Linear(out_features, out_features, axes=("mlp", "embed"), **kw) \
            if projector_type == "mlp2x_gelu" else None
        self.act = activation(hidden_act)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.linear_1(x)
        return x if self.linear_2 is None else self.linear_2(self.act(x))
