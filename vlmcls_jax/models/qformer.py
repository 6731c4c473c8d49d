"""The Q-Former of BLIP-2 (`Blip2QFormerModel`) and InstructBLIP's instruction-aware one
(`InstructBlipQFormerModel`), with transformers' semantics.

A BERT-style post-LayerNorm encoder over Q learned query tokens (and, for InstructBLIP, the L instruction
tokens appended after them).  Every layer runs self-attention over all Q + L tokens; the query rows then
cross-attend to the image features (layers whose index is a multiple of `cross_attention_frequency`) and go
through their own feed-forward (`intermediate_query` / `output_query`), while the instruction rows use the
text feed-forward (`intermediate` / `output`).  Only the query rows feed the language model.

The parameters differ between the two (checked against transformers 5.24):
  BLIP-2:       `layernorm` on the query embeddings; text feed-forward only if `use_qformer_text_input`
                (False in every released BLIP-2, and never used by `Blip2ForConditionalGeneration`).
  InstructBLIP: `embeddings.{word_embeddings, position_embeddings, layernorm}`; text feed-forward always.

Names mirror transformers (`encoder.layer[i].attention.attention.query`, `...output.LayerNorm`, ...).
Axis letters: see `layers.py`; Q query tokens, L instruction tokens, S image features (1 + patches).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from vlmcls_jax.models.layers import Embed, LayerNorm, Linear, activation, attention


@dataclasses.dataclass(frozen=True)
class QFormerConfig:
    """transformers' `Blip2QFormerConfig` / `InstructBlipQFormerConfig`; `instruction_input` picks the latter."""
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    cross_attention_frequency: int = 2
    encoder_hidden_size: int = 1408       # the vision tower's width
    use_qformer_text_input: bool = False  # BLIP-2 only: build the (unused) text feed-forward
    instruction_input: bool = False       # InstructBLIP: word/position embeddings, instruction tokens
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"Q-Former hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                             f"{self.num_attention_heads}")
        if self.cross_attention_frequency < 1:
            raise ValueError(f"cross_attention_frequency must be >= 1, got {self.cross_attention_frequency}")

    @property
    def has_text_feed_forward(self) -> bool:
        return self.instruction_input or self.use_qformer_text_input


def _kw(cfg: QFormerConfig, rngs) -> dict:
    return dict(use_bias=True, dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)


class QFormerMultiHeadAttention(nnx.Module):
    """query / key / value projections (biased) and attention; no output projection (that is `output.dense`).
    Cross-attention reads keys and values from the image features (width `encoder_hidden_size`)."""

    def __init__(self, cfg: QFormerConfig, is_cross_attention: bool, *, rngs):
        D = cfg.hidden_size
        kv_in = cfg.encoder_hidden_size if is_cross_attention else D
        self.query = Linear(D, D, axes=("embed", "heads"), **_kw(cfg, rngs))
        self.key = Linear(kv_in, D, axes=("embed", "heads"), **_kw(cfg, rngs))
        self.value = Linear(kv_in, D, axes=("embed", "heads"), **_kw(cfg, rngs))
        self.num_heads = cfg.num_attention_heads

    def __call__(self, x: jax.Array, mask: jax.Array | None, context: jax.Array | None = None) -> jax.Array:
        """x: [B, T, D]; context: [B, S, D_enc] (cross-attention) or None (self: S = T);
        mask: bool[B, 1, T, S] or None.  Returns [B, T, D]."""
        B, T, D = x.shape
        context = x if context is None else context
        N = self.num_heads
        split = lambda t: t.reshape(t.shape[0], t.shape[1], N, D // N)
        out = attention(split(self.query(x)), split(self.key(context)), split(self.value(context)), mask)
        return out.reshape(B, T, D)


class QFormerSelfOutput(nnx.Module):
    """Post-LN residual: LayerNorm(dense(h) + residual).  (`QFormerOutput` is the same with in-width F.)"""

    def __init__(self, cfg: QFormerConfig, in_features: int, in_axis: str, *, rngs):
        self.dense = Linear(in_features, cfg.hidden_size, axes=(in_axis, "embed"), **_kw(cfg, rngs))
        self.LayerNorm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, dtype=cfg.dtype,
                                   param_dtype=cfg.param_dtype)

    def __call__(self, h: jax.Array, residual: jax.Array) -> jax.Array:
        return self.LayerNorm(self.dense(h).astype(jnp.float32) + residual.astype(jnp.float32))


QFormerOutput = QFormerSelfOutput


class QFormerAttention(nnx.Module):
    """`attention` (multi-head) + `output` (dense, residual, LayerNorm).  [B, T, D] -> [B, T, D]."""

    def __init__(self, cfg: QFormerConfig, is_cross_attention: bool = False, *, rngs):
        self.attention = QFormerMultiHeadAttention(cfg, is_cross_attention, rngs=rngs)
        self.output = QFormerSelfOutput(cfg, cfg.hidden_size, "heads", rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array | None, context: jax.Array | None = None) -> jax.Array:
        return self.output(self.attention(x, mask, context), x)


class QFormerIntermediate(nnx.Module):
    """dense (D -> F) + activation."""

    def __init__(self, cfg: QFormerConfig, *, rngs):
        self.dense = Linear(cfg.hidden_size, cfg.intermediate_size, axes=("embed", "mlp"), **_kw(cfg, rngs))
        self.act = activation(cfg.hidden_act)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.act(self.dense(x))


class QFormerLayer(nnx.Module):
    def __init__(self, cfg: QFormerConfig, layer_idx: int, *, rngs):
        self.attention = QFormerAttention(cfg, rngs=rngs)
        self.crossattention = QFormerAttention(cfg, True, rngs=rngs) \
            if layer_idx % cfg.cross_attention_frequency == 0 else None
        text = cfg.has_text_feed_forward
        self.intermediate = QFormerIntermediate(cfg, rngs=rngs) if text else None
        self.output = QFormerOutput(cfg, cfg.intermediate_size, "mlp", rngs=rngs) if text else None
        self.intermediate_query = QFormerIntermediate(cfg, rngs=rngs)
        self.output_query = QFormerOutput(cfg, cfg.intermediate_size, "mlp", rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array | None, image: jax.Array, num_queries: int) -> jax.Array:
        """x: [B, Q + L, D] (queries first); mask: bool[B, 1, Q + L, Q + L] or None; image: [B, S, D_enc].
        Returns [B, Q + L, D]."""
        h = self.attention(x, mask)
        q = h[:, :num_queries]
        if self.crossattention is not None:
            q = self.crossattention(q, None, image)       # every image feature is real: no mask
        out = self.output_query(self.intermediate_query(q), q)
        if h.shape[1] > num_queries:
            if self.intermediate is None:
                raise ValueError("this Q-Former has no text feed-forward (BLIP-2): it takes query tokens only")
            t = h[:, num_queries:]
            out = jnp.concatenate([out, self.output(self.intermediate(t), t)], axis=1)
        return out


class QFormerEncoder(nnx.Module):
    def __init__(self, cfg: QFormerConfig, *, rngs):
        self.layer = nnx.List([QFormerLayer(cfg, i, rngs=rngs) for i in range(cfg.num_hidden_layers)])

    def __call__(self, x, mask, image, num_queries: int) -> jax.Array:
        for layer in self.layer:
            x = layer(x, mask, image, num_queries)
        return x


class QFormerEmbeddings(nnx.Module):
    """InstructBLIP: instruction word + position embeddings appended after the queries, then LayerNorm.
    Positions count from 0 at the first instruction token (padding included), as in transformers."""

    def __init__(self, cfg: QFormerConfig, *, rngs):
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
        self.word_embeddings = Embed(cfg.vocab_size, cfg.hidden_size, **kw)
        self.position_embeddings = Embed(cfg.max_position_embeddings, cfg.hidden_size, axes=(None, "embed"), **kw)
        self.layernorm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, dtype=cfg.dtype,
                                   param_dtype=cfg.param_dtype)
        self.max_positions = cfg.max_position_embeddings

    def __call__(self, query_embeds: jax.Array, input_ids: jax.Array | None) -> jax.Array:
        """query_embeds: [B, Q, D]; input_ids: int[B, L] or None.  Returns [B, Q + L, D]."""
        x = query_embeds.astype(jnp.float32)
        if input_ids is not None:
            L = input_ids.shape[1]
            if L > self.max_positions:
                raise ValueError(f"qformer_input_ids has {L} tokens; the Q-Former has {self.max_positions} "
                                 "position embeddings")
            text = self.word_embeddings(input_ids).astype(jnp.float32) + \
                self.position_embeddings.embedding[:L].astype(jnp.float32)
            x = jnp.concatenate([x, text], axis=1)
        return self.layernorm(x)


class QFormerModel(nnx.Module):
    """The Q-Former.  BLIP-2: `layernorm` + `encoder`; InstructBLIP: `embeddings` + `encoder`."""

    def __init__(self, cfg: QFormerConfig, *, rngs: nnx.Rngs):
        if cfg.instruction_input:
            self.embeddings = QFormerEmbeddings(cfg, rngs=rngs)
        else:
            self.layernorm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, dtype=cfg.dtype,
                                       param_dtype=cfg.param_dtype)
        self.encoder = QFormerEncoder(cfg, rngs=rngs)
        self.config = cfg

    def __call__(self, query_embeds: jax.Array, image_embeds: jax.Array, input_ids: jax.Array | None = None,
                 attention_mask: jax.Array | None = None) -> jax.Array:
        """query_embeds: [B, Q, D]; image_embeds: [B, S, D_enc] (the vision tower's last hidden state);
        input_ids: int[B, L] instruction tokens (InstructBLIP only) or None; attention_mask: int/bool[B, L]
        over the instruction tokens only (1 = real; the queries are always attended), or None (all real).
        Returns the last hidden state [B, Q + L, D]."""
        cfg = self.config
        Q = query_embeds.shape[1]
        if input_ids is not None and not cfg.instruction_input:
            raise ValueError("qformer_input_ids given, but this is BLIP-2's Q-Former, which reads no instruction "
                             "(InstructBLIP's does)")
        if input_ids is not None and attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(f"qformer_attention_mask shape {attention_mask.shape} != qformer_input_ids shape "
                             f"{input_ids.shape}")
        if cfg.instruction_input:
            x = self.embeddings(query_embeds, input_ids)
        else:
            x = self.layernorm(query_embeds)
        mask = None
        if input_ids is not None and attention_mask is not None:
            valid = jnp.concatenate([jnp.ones((x.shape[0], Q), bool), attention_mask.astype(bool)], axis=1)
            mask = jnp.broadcast_to(valid[:, None, None, :], (x.shape[0], 1, x.shape[1], x.shape[1]))
        return self.encoder(x, mask, image_embeds, Q)

