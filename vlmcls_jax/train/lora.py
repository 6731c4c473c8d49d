"""LoRA: low-rank adapters added to chosen `Linear` layers, and merging them back.

    y = x @ W + b + (alpha / rank) * dropout(x) @ lora_a @ lora_b

`lora_b` starts at zero, so a freshly adapted model computes exactly what it did before.  The adapter
lives on the Linear as `.lora` (`.../q_proj/lora/lora_a`), so the base weights keep their paths and the
converters still find them.  `convert.save_hf` merges the adapters into the kernels it writes (the model
itself unchanged), so a LoRA model is exported as it is: `save_hf(model, out)`; `merge_lora` folds them into
the model's own kernels in place (to run or save it without adapters by other means).  On scanned layers (`models/scan.py`, a kernel stacked [L, in, out])
the adapter is stacked the same way (one per layer, `stack_layers`: lora_a [L, in, r], its dropout RNG
stream [L]), so the scan hands each layer its own slice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from vlmcls_jax.models.layers import Linear, matmul
from vlmcls_jax.models.scan import stack_layers

# The study's LoRA targets every linear layer of the LLM (LLaVA's `find_all_linear_names`); matches a
# LLaVA's language model and a bare Llama alike, never CLIP's `encoder/layers`.
# (`layers/(\d+/)?`: scanned layers have no index)
LLM_LINEARS = r"(^|/)model/layers/(\d+/)?(self_attn/(q|k|v|o)_proj|mlp/(gate|up|down)_proj)$"


class LoRA(nnx.Module):
    """The low-rank update of one Linear.  x: [..., in] -> float32[..., out]."""

    def __init__(self, in_features: int, out_features: int, *, rank: int, alpha: float, dropout: float,
                 dtype, param_dtype, rngs: nnx.Rngs):
        # kaiming-uniform A as in PEFT; B zero so the update starts at 0.
        self.lora_a = nnx.Param(nnx.initializers.he_uniform()(rngs.params(), (in_features, rank), param_dtype),
                                logical_axes=("embed", None))
        self.lora_b = nnx.Param(jnp.zeros((rank, out_features), param_dtype), logical_axes=(None, "mlp"))
        self.dropout = nnx.Dropout(dropout, deterministic=True, rngs=rngs)
        self.scale = alpha / rank
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        h = matmul(self.dropout(x), self.lora_a[...], "...i,ir->...r", self.dtype)
        return matmul(h, self.lora_b[...], "...r,ro->...o", self.dtype) * self.scale

    def delta(self) -> jax.Array:
        """The dense update float32[in, out] = scale * A @ B ([L, in, out] for a stacked adapter)."""
        return self.scale * (self.lora_a[...].astype(jnp.float32) @ self.lora_b[...].astype(jnp.float32))


def _linears(model: nnx.Module):
    for path, node in nnx.iter_graph(model):
        if isinstance(node, Linear):
            yield "/".join(str(p) for p in path), node


def apply_lora(model: nnx.Module, *, rank: int, alpha: float, dropout: float = 0.0,
               targets: str | Sequence[str] = LLM_LINEARS, seed: int = 0) -> list[str]:
    """Adds adapters, in place, to every Linear whose path matches `targets` (regexes).  Returns the paths.
    Raises if nothing matches."""
    patterns = [re.compile(t) for t in ([targets] if isinstance(targets, str) else targets)]
    rngs = nnx.Rngs(params=seed, dropout=seed + 1)
    chosen = []
    for path, linear in list(_linears(model)):
        if any(p.search(path) for p in patterns):
            *layers, fan_in, fan_out = linear.kernel.shape
            if len(layers) > 1:
                raise ValueError(f"LoRA on {path}: kernel of shape {linear.kernel.shape} is neither a matrix nor "
                                 "a stack of them (scanned layers)")
            make = lambda: LoRA(fan_in, fan_out, rank=rank, alpha=alpha, dropout=dropout, dtype=linear.dtype,
                                param_dtype=linear.kernel.dtype, rngs=rngs)
            linear.lora = stack_layers([make() for _ in range(layers[0])]) if layers else make()
            chosen.append(path)
    if not chosen:
        raise ValueError(f"LoRA targets {[p.pattern for p in patterns]} match no Linear layer")
    return chosen


def merge_lora(model: nnx.Module) -> nnx.Module:
    """Folds every adapter into its kernel and removes it, in place; returns the model."""
    for _, linear in list(_linears(model)):
        if linear.lora is not None:
            merged = linear.kernel[...].astype(jnp.float32) + linear.lora.delta()
            linear.kernel[...] = merged.astype(linear.kernel[...].dtype)
            linear.lora = None
    return model
