"""The BLIP-2 / InstructBLIP vision encoder (EVA ViT-g in the released checkpoints), as transformers'
`Blip2VisionModel` / `InstructBlipVisionModel` (the two are identical).

Differences from CLIP's tower: the patch conv has a bias, there is no pre-LayerNorm, attention uses one fused
`qkv` projection (transformers stores its bias as one [3D] vector whose key part the checkpoints keep at zero:
the original q_bias / v_bias were fused into it when the weights were converted, so `qkv.bias` is what every
hub file holds) and an output `projection`, and `post_layernorm` is applied to the whole last hidden state.

Names mirror transformers (`embeddings.class_embedding`, `encoder.layers[i].self_attn.qkv`, ...) so the
converter stays a naming rule; `class_embedding` [1, 1, D] and `position_embedding` [1, 1 + P, D] keep
transformers' shapes.  Images are NHWC: float[B, H, W, 3].  Axis letters: see `layers.py` (P: patches).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from vlmcls_jax.models.clip import CLIPMLP
from vlmcls_jax.models.layers import LayerNorm, Linear, attention, constrain, default_init, param, patch_embed


@dataclasses.dataclass(frozen=True)
class Blip2VisionConfig:
    """transformers' `Blip2VisionConfig` (defaults: the EVA ViT-g of the released BLIP-2 / InstructBLIP)."""
    hidden_size: int = 1408
    intermediate_size: int = 6144
    num_hidden_layers: int = 39
    num_attention_heads: int = 16
    image_size: int = 224
    patch_size: int = 14
    num_channels: int = 3          # transformers hard-codes 3 input channels
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    # timm's / LAVIS' layout (EVA-CLIP): separate `q_bias` and `v_bias` parameters and no key bias at all;
    # transformers' BLIP-2 keeps one fused [3D] `qkv.bias` instead.  Same computation.
    separate_qv_bias: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class PatchEmbedding(nnx.Module):
    """A stride-p, p x p conv with bias, done as a reshape + matmul.  float[B, H, W, C] -> [B, P, D].

    kernel: [p, p, C, D] (JAX conv layout; the converter maps it to torch's [D, C, p, p]); bias: [D]."""

    def __init__(self, cfg: Blip2VisionConfig, *, rngs):
        p, c, d = cfg.patch_size, cfg.num_channels, cfg.hidden_size
        self.kernel = param(rngs, default_init, (p, p, c, d), (None, None, None, "embed"), cfg.param_dtype)
        self.bias = param(rngs, nnx.initializers.zeros, (d,), ("embed",), cfg.param_dtype)
        self.cfg = cfg

    def __call__(self, pixel_values: jax.Array) -> jax.Array:
        x = patch_embed(pixel_values, self.kernel[...], self.cfg)
        return x + self.bias[...].astype(jnp.float32)                    # float32[B, P, D]


class Blip2VisionEmbeddings(nnx.Module):
    """Patchify, prepend the class embedding, add position embeddings.  float[B, H, W, 3] -> [B, 1 + P, D]."""

    def __init__(self, cfg: Blip2VisionConfig, *, rngs):
        d = cfg.hidden_size
        self.class_embedding = param(rngs, default_init, (1, 1, d), (None, None, "embed"), cfg.param_dtype)
        self.patch_embedding = PatchEmbedding(cfg, rngs=rngs)
        self.position_embedding = param(rngs, default_init, (1, cfg.num_patches + 1, d), (None, None, "embed"),
                                        cfg.param_dtype)
        self.dtype = cfg.dtype

    def __call__(self, pixel_values: jax.Array) -> jax.Array:
        x = self.patch_embedding(pixel_values)
        cls = jnp.broadcast_to(self.class_embedding[...].astype(jnp.float32), (x.shape[0], 1, x.shape[2]))
        x = jnp.concatenate([cls, x], axis=1) + self.position_embedding[...].astype(jnp.float32)
        return x.astype(self.dtype)


class Blip2Attention(nnx.Module):
    """Self-attention with a fused qkv projection ([D, 3D], bias [3D] or none; or, with `separate_qv_bias`,
    biases q_bias [D] and v_bias [D] only) and an output `projection`.
    x: [B, T, D] -> [B, T, D] (no mask: every patch sees every patch)."""

    def __init__(self, cfg: Blip2VisionConfig, *, rngs):
        D = cfg.hidden_size
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
        separate = cfg.qkv_bias and cfg.separate_qv_bias
        self.qkv = Linear(D, 3 * D, axes=("embed", "heads"), use_bias=cfg.qkv_bias and not separate, **kw)
        bias = lambda: param(rngs, nnx.initializers.zeros, (D,), ("heads",), cfg.param_dtype) if separate else None
        self.q_bias, self.v_bias = bias(), bias()
        self.projection = Linear(D, D, axes=("heads", "embed"), use_bias=True, **kw)
        self.num_heads = cfg.num_attention_heads

    def __call__(self, x: jax.Array) -> jax.Array:
        B, T, D = x.shape
        N = self.num_heads
        qkv = self.qkv(x)
        if self.q_bias is not None:     # [q_bias, 0, v_bias], added in float32
            q, v = self.q_bias[...].astype(jnp.float32), self.v_bias[...].astype(jnp.float32)
            qkv = (qkv.astype(jnp.float32) + jnp.concatenate([q, jnp.zeros_like(q), v])).astype(qkv.dtype)
        qkv = qkv.reshape(B, T, 3, N, D // N)                             # transformers' (3, heads, dim) split
        out = attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], None)
        return self.projection(out.reshape(B, T, D))


class Blip2EncoderLayer(nnx.Module):
    """Pre-norm block: x + attn(ln1(x)), then + mlp(ln2(x)) (mlp: fc1 -> GELU -> fc2, biased)."""

    def __init__(self, cfg: Blip2VisionConfig, *, rngs):
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        self.self_attn = Blip2Attention(cfg, rngs=rngs)
        self.layer_norm1 = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)
        self.mlp = CLIPMLP(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act, rngs=rngs, **kw)
        self.layer_norm2 = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class Blip2Encoder(nnx.Module):
    def __init__(self, cfg: Blip2VisionConfig, *, rngs):
        self.layers = nnx.List([Blip2EncoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_hidden_layers)])

    def __call__(self, x: jax.Array, num_layers: int | None = None) -> list[jax.Array]:
        """Runs the first `num_layers` layers (all by default); returns [input, after layer 1, ...]."""
        hidden = [x]
        for layer in self.layers[: num_layers if num_layers is not None else len(self.layers)]:
            hidden.append(constrain(layer(hidden[-1]), ("batch", "length", "activation_embed")))
        return hidden


class Blip2VisionModel(nnx.Module):
    """transformers' `Blip2VisionModel`: embeddings -> encoder -> post_layernorm."""

    def __init__(self, cfg: Blip2VisionConfig, *, rngs: nnx.Rngs):
        self.embeddings = Blip2VisionEmbeddings(cfg, rngs=rngs)
        self.encoder = Blip2Encoder(cfg, rngs=rngs)
        self.post_layernorm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, dtype=cfg.dtype,
                                        param_dtype=cfg.param_dtype)
        self.config = cfg

    def hidden_states(self, pixel_values: jax.Array, num_layers: int | None = None) -> list[jax.Array]:
        """HF's `output_hidden_states`: index 0 the embeddings, index i layer i's output; each [B, 1 + P, D]
        (none of them post-normed).  `num_layers` stops early."""
        return self.encoder(self.embeddings(pixel_values), num_layers=num_layers)

    def __call__(self, pixel_values: jax.Array) -> tuple[jax.Array, jax.Array]:
        """float[B, H, W, 3] -> (last_hidden_state = post_layernorm(last layer) [B, 1 + P, D],
        pooled [B, D] = post_layernorm applied once more to the CLS row, as transformers does)."""
        last = self.post_layernorm(self.hidden_states(pixel_values)[-1])
        return last, self.post_layernorm(last[:, 0])
