"""OPT decoder (`OPTForCausalLM`, the language model of BLIP-2 OPT) with transformers' semantics.

Learned absolute positions with fairseq's offset of 2 (the table has max_position_embeddings + 2 rows), biased
q/k/v/out projections, LayerNorm before (`do_layer_norm_before`, every released size but 350m) or after each
sub-block, a ReLU MLP `fc1` -> `fc2`, `final_layer_norm` (pre-LN models only) and an output head tied to the
token embeddings by default.  Only `word_embed_proj_dim == hidden_size` is supported (no project_in/out; the
config refuses others).

Positions follow transformers: a token's position is the number of real tokens before it (cumsum of the
attention mask - 1, over the cache too), so a left-padded row gets the same positions as the unpadded one;
padding slots get position -1 (embedding row 1), as in transformers.

Same interface as `LlamaForCausalLM` (`embed`, `decode(... cache=, prefix=) -> DecoderOutput`, `logits`,
`init_cache`), so generation and class scoring run unchanged.  Names mirror transformers
(`model.decoder.layers[i].self_attn.q_proj`, `model.decoder.embed_positions`, `lm_head`).
Axis letters: see `layers.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from vlmcls_jax.models.causal_lm import CausalLM, DecoderOutput, DecoderStack, StepMasks, output_head
from vlmcls_jax.models.layers import Embed, LayerNorm, Linear, activation, cached_attention
from vlmcls_jax.models.scan import stack_layers

POSITION_OFFSET = 2   # fairseq's padding_idx + 1: position p reads row p + 2 of `embed_positions`
LAYER_NORM_EPS = 1e-5  # OPT's LayerNorms use torch's default eps (not configurable in transformers)


@dataclasses.dataclass(frozen=True)
class OPTConfig:
    """transformers' `OPTConfig` (defaults: OPT-2.7B as used by BLIP-2, whose vocabulary is padded to 50304)."""
    vocab_size: int = 50304
    hidden_size: int = 2560
    ffn_dim: int = 10240
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    max_position_embeddings: int = 2048
    do_layer_norm_before: bool = True
    activation_function: str = "relu"
    enable_bias: bool = True
    tie_word_embeddings: bool = True
    bos_token_id: int | None = 2
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    remat: bool = False   # recompute each decoder block in the backward pass
    scan_layers: bool = False   # stacked layers run by jax.lax.scan (models/scan.py), as LlamaConfig's

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"OPT hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                             f"{self.num_attention_heads}")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads


class OPTAttention(nnx.Module):
    def __init__(self, cfg: OPTConfig, *, rngs):
        D = cfg.hidden_size
        kw = dict(use_bias=cfg.enable_bias, dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
        self.k_proj = Linear(D, D, axes=("embed", "kv_heads"), **kw)
        self.v_proj = Linear(D, D, axes=("embed", "kv_heads"), **kw)
        self.q_proj = Linear(D, D, axes=("embed", "heads"), **kw)
        self.out_proj = Linear(D, D, axes=("heads", "embed"), **kw)
        self.shape = (cfg.num_attention_heads, cfg.head_size)

    @jax.named_scope("attention")
    def __call__(self, x, mask, kv: tuple[jax.Array, jax.Array] | None, start, prefix=None):
        """x: [B, T, D]; mask: bool[B, 1, T, S]; kv: cached ([B, S, N, H] x 2) or None (then S = T); start: slot
        where the new keys are written.  prefix: (keys [P, S, N, H], values, valid bool[P, S]) of P prompts that
        the B = P * C rows continue; then mask is bool[B, T, T].  Returns ([B, T, D], new kv or None)."""
        B, T, _ = x.shape
        N, H = self.shape
        q = self.q_proj(x).reshape(B, T, N, H)
        k = self.k_proj(x).reshape(B, T, N, H)
        v = self.v_proj(x).reshape(B, T, N, H)
        out, kv = cached_attention(q, k, v, mask, kv, start, prefix)
        return self.out_proj(out.reshape(B, T, N * H)), kv


class OPTDecoderLayer(nnx.Module):
    def __init__(self, cfg: OPTConfig, *, rngs):
        kw = dict(eps=LAYER_NORM_EPS, dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        lin = dict(use_bias=cfg.enable_bias, dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
        self.self_attn = OPTAttention(cfg, rngs=rngs)
        self.self_attn_layer_norm = LayerNorm(cfg.hidden_size, **kw)
        self.fc1 = Linear(cfg.hidden_size, cfg.ffn_dim, axes=("embed", "mlp"), **lin)
        self.fc2 = Linear(cfg.ffn_dim, cfg.hidden_size, axes=("mlp", "embed"), **lin)
        self.final_layer_norm = LayerNorm(cfg.hidden_size, **kw)
        self.act = activation(cfg.activation_function)
        self.pre_norm = cfg.do_layer_norm_before

    def __call__(self, x, mask, kv, start, prefix=None):
        """The layer protocol of `causal_lm.run_layers` (no extra arguments)."""
        pre = self.pre_norm
        h, kv = self.self_attn(self.self_attn_layer_norm(x) if pre else x, mask, kv, start, prefix)
        x = x + h
        if not pre:
            x = self.self_attn_layer_norm(x)
        with jax.named_scope("mlp"):
            h = self.fc2(self.act(self.fc1(self.final_layer_norm(x) if pre else x)))
        x = x + h
        return (x if pre else self.final_layer_norm(x)), kv


class OPTDecoder(DecoderStack):
    """Token + learned position embeddings, decoder layers, `final_layer_norm` (transformers' `OPTDecoder`); the
    call: `DecoderStack.__call__` (positions: 0-based, the offset of 2 is added here; by default real tokens
    counted over the cache or prefix too, padding -1, transformers' rule)."""

    def __init__(self, cfg: OPTConfig, *, rngs):
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
        self.embed_tokens = Embed(cfg.vocab_size, cfg.hidden_size, **kw)
        self.embed_positions = Embed(cfg.max_position_embeddings + POSITION_OFFSET, cfg.hidden_size,
                                     axes=(None, "embed"), **kw)
        self.final_layer_norm = LayerNorm(cfg.hidden_size, eps=LAYER_NORM_EPS, dtype=cfg.dtype,
                                          param_dtype=cfg.param_dtype) if cfg.do_layer_norm_before else None
        layers = [OPTDecoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_hidden_layers)]
        self.layers = stack_layers(layers) if cfg.scan_layers else nnx.List(layers)
        self.config = cfg

    def default_positions(self, m: StepMasks) -> jax.Array:
        return jnp.where(m.new_valid, m.counts, -1)

    def layer_inputs(self, inputs_embeds, positions):
        x = inputs_embeds.astype(jnp.float32) + self.embed_positions(positions + POSITION_OFFSET).astype(jnp.float32)
        return x.astype(self.config.dtype), ()

    def final_norm(self, x):
        return x if self.final_layer_norm is None else self.final_layer_norm(x)


class OPTModel(nnx.Module):
    """transformers' `OPTModel`: a holder for `decoder`, kept for the names (`model.decoder.*`)."""

    def __init__(self, cfg: OPTConfig, *, rngs):
        self.decoder = OPTDecoder(cfg, rngs=rngs)

    def __call__(self, inputs_embeds: jax.Array, **kwargs) -> DecoderOutput:
        return self.decoder(inputs_embeds, **kwargs)


class OPTForCausalLM(CausalLM):
    """`OPTModel` + output head (`lm_head`, or the token embedding table when tied, the OPT default)."""

    def __init__(self, cfg: OPTConfig, *, rngs: nnx.Rngs):
        self.model = OPTModel(cfg, rngs=rngs)
        self.lm_head = output_head(cfg, rngs)
        self.config = cfg

    @property
    def embed_tokens(self) -> Embed:
        return self.model.decoder.embed_tokens
