"""Llama-family decoder (Llama 1/2/3, Vicuna, Mistral without sliding window) with transformers' semantics.

RMSNorm, rotary embeddings in HF's rotate_half convention (so converted q/k weights need no permutation),
grouped-query attention, SwiGLU MLP, tied or untied output embeddings, left padding, explicit positions
and a functional KV cache (`KVCache`) that can be prefilled and then extended by one or more tokens.

Names mirror `LlamaForCausalLM` (`model.layers[i].self_attn.q_proj`, `model.norm`, `lm_head`).
Axis letters: see `layers.py`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vlmcls_jax.models.causal_lm import CausalLM, DecoderStack, StepMasks, output_head
from vlmcls_jax.models.layers import Embed, Linear, RMSNorm, activation, cached_attention, xla_cpu
from vlmcls_jax.models.scan import stack_layers


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    head_dim: int | None = None
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    # None, or {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
    # "original_max_position_embeddings"} (other HF rope types are refused by `inv_freq`).
    rope_scaling: dict | None = None
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    remat: bool = False   # recompute each decoder block in the backward pass (activation memory ~1 block)
    # store the decoder layers stacked ([L, ...] parameters) and run them with jax.lax.scan: compile time
    # nearly flat in depth (models/scan.py); checkpoints keep per-layer names either way
    scan_layers: bool = False

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads


def inv_freq(cfg: LlamaConfig) -> np.ndarray:
    """Rotary inverse frequencies float32[H/2], as transformers computes them (default and llama3 types)."""
    dim = cfg.head_size
    freq = 1.0 / (cfg.rope_theta ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim))
    freq = freq.astype(np.float32)
    scaling = cfg.rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return freq
    if kind != "llama3":
        raise ValueError(f"rope_scaling type {kind!r} is not supported (supported: default, llama3)")
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / freq
    scaled = np.where(wavelen > old_len / low, freq / factor, freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def rotary(positions: jax.Array, freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """positions int[B, T] -> (cos, sin) float32[B, T, 1, H] (frequencies repeated, HF layout)."""
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(freq)
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
    return _materialized(jnp.cos(angles)), _materialized(jnp.sin(angles))


def _materialized(x: jax.Array) -> jax.Array:
    """x, computed once.  XLA:CPU fuses an elementwise producer into every consumer, so each layer's q and k
    rotation would evaluate cos and sin again for every head (an optimization barrier does not stop it on
    XLA:CPU); the one op it does not fuse into them is a matrix product, here with the identity (exact at HIGHEST
    precision).  On other backends x unchanged."""
    if not xla_cpu():
        return x
    eye = jnp.eye(x.shape[-1], dtype=x.dtype)
    return jnp.einsum("...h,hg->...g", x, eye, precision=jax.lax.Precision.HIGHEST)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x: [B, T, N, H]; rotate_half convention: (x1, x2) -> (-x2, x1)."""
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (x.astype(jnp.float32) * cos + rotated * sin).astype(x.dtype)



class LlamaAttention(nnx.Module):
    def __init__(self, cfg: LlamaConfig, *, rngs):
        D, N, K, H = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_size
        kw = dict(use_bias=cfg.attention_bias, dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
        self.q_proj = Linear(D, N * H, axes=("embed", "heads"), **kw)
        self.k_proj = Linear(D, K * H, axes=("embed", "kv_heads"), **kw)
        self.v_proj = Linear(D, K * H, axes=("embed", "kv_heads"), **kw)
        self.o_proj = Linear(N * H, D, axes=("heads", "embed"), **kw)
        self.shape = (N, K, H)

    @jax.named_scope("attention")
    def __call__(self, x, mask, kv: tuple[jax.Array, jax.Array] | None, start, prefix, cos, sin):
        """x: [B, T, D]; mask: bool[B, 1, T, S]; kv: cached ([B, S, K, H] x 2) or None (then S = T); start: slot
        where the new keys are written; cos/sin: [B, T, 1, H].  Returns ([B, T, D], new kv or None).

        prefix: (keys [P, S, K, H], values, valid bool[P, S]) of P prompts that the B = P * C rows continue
        (C rows per prompt, prompt-major); then mask is bool[B, T, T] over the rows' own tokens."""
        B, T, _ = x.shape
        N, K, H = self.shape
        q = apply_rotary(self.q_proj(x).reshape(B, T, N, H), cos, sin)
        k = apply_rotary(self.k_proj(x).reshape(B, T, K, H), cos, sin)
        v = self.v_proj(x).reshape(B, T, K, H)
        out, kv = cached_attention(q, k, v, mask, kv, start, prefix)
        return self.o_proj(out.reshape(B, T, N * H)), kv


class LlamaMLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: LlamaConfig, *, rngs):
        kw = dict(use_bias=cfg.mlp_bias, dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
        self.gate_proj = Linear(cfg.hidden_size, cfg.intermediate_size, axes=("embed", "mlp"), **kw)
        self.up_proj = Linear(cfg.hidden_size, cfg.intermediate_size, axes=("embed", "mlp"), **kw)
        self.down_proj = Linear(cfg.intermediate_size, cfg.hidden_size, axes=("mlp", "embed"), **kw)

    @jax.named_scope("mlp")
    def __call__(self, x):
        return self.down_proj(activation("silu")(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nnx.Module):
    def __init__(self, cfg: LlamaConfig, *, rngs):
        kw = dict(eps=cfg.rms_norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        self.input_layernorm = RMSNorm(cfg.hidden_size, **kw)
        self.self_attn = LlamaAttention(cfg, rngs=rngs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, **kw)
        self.mlp = LlamaMLP(cfg, rngs=rngs)

    def __call__(self, x, mask, kv, start, prefix, cos, sin):
        """The layer protocol of `causal_lm.run_layers`; cos/sin: the rotary tables [B, T, 1, H]."""
        h, kv = self.self_attn(self.input_layernorm(x), mask, kv, start, prefix, cos, sin)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x)), kv


class LlamaModel(DecoderStack):
    """Embeddings + decoder layers + final norm (transformers' `LlamaModel`); the call: `DecoderStack.__call__`.
    Default positions count real tokens only (cumsum of the mask - 1, as transformers' `generate` does), so a
    left-padded row gets the same positions as the unpadded one; pass `positions` explicitly for anything else."""

    def __init__(self, cfg: LlamaConfig, *, rngs):
        self.embed_tokens = Embed(cfg.vocab_size, cfg.hidden_size, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                                  rngs=rngs)
        layers = [LlamaDecoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_hidden_layers)]
        self.layers = stack_layers(layers) if cfg.scan_layers else nnx.List(layers)
        self.norm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        self.config = cfg

    def default_positions(self, m: StepMasks) -> jax.Array:
        return jnp.maximum(m.counts, m.floor)     # a padding token takes its row's last real position (or 0)

    def layer_inputs(self, inputs_embeds, positions):
        return inputs_embeds.astype(self.config.dtype), rotary(positions, inv_freq(self.config))

    def final_norm(self, x):
        return self.norm(x)


class LlamaForCausalLM(CausalLM):
    """`LlamaModel` + output head (`lm_head`, or the embedding table when tied)."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        self.model = LlamaModel(cfg, rngs=rngs)
        self.lm_head = output_head(cfg, rngs)
        self.config = cfg

    @property
    def embed_tokens(self) -> Embed:
        return self.model.embed_tokens
