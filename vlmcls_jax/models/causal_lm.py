"""The part every decoder-only language model shares: the output head and the entry points the inference and
training code call (`embed`, `decode`, `logits`, `__call__`, `init_cache`).

A subclass sets `self.model` (called as `model(inputs_embeds, attention_mask=, positions=, cache=, prefix=,
output_hidden_states=) -> DecoderOutput`), `self.lm_head` (a `Linear`, or None when the head is tied to the
token embeddings), `self.config`, and the property `embed_tokens` (its `Embed` table).  Axis letters: layers.py.
"""

from __future__ import annotations

import jax
from flax import nnx

from vlmcls_jax.models.kv_cache import KVCache
from vlmcls_jax.models.layers import Embed, Linear, matmul


def output_head(cfg, rngs) -> Linear | None:
    """`lm_head` [hidden, vocab] without bias, or None when the config ties it to the token embeddings."""
    return None if cfg.tie_word_embeddings else Linear(
        cfg.hidden_size, cfg.vocab_size, axes=("embed", "vocab"), use_bias=False, dtype=cfg.dtype,
        param_dtype=cfg.param_dtype, rngs=rngs)


class CausalLM(nnx.Module):
    @property
    def embed_tokens(self) -> Embed:
        raise NotImplementedError

    def embed(self, input_ids: jax.Array) -> jax.Array:
        """int[B, T] -> [B, T, D] (token embeddings; a model with learned positions adds them in `model`)."""
        return self.embed_tokens(input_ids)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """[..., D] -> float32[..., V]."""
        if self.lm_head is None:
            return self.embed_tokens.attend(hidden)
        return matmul(hidden, self.lm_head.kernel[...], "...d,dv->...v", self.config.dtype)

    def decode(self, input_ids: jax.Array | None = None, *, inputs_embeds: jax.Array | None = None,
               attention_mask=None, positions=None, cache: KVCache | None = None, prefix: KVCache | None = None,
               output_hidden_states: bool = False):
        """Final hidden states (and optionally every layer's) as a `DecoderOutput`; see the subclass's model."""
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids)
        return self.model(inputs_embeds, attention_mask=attention_mask, positions=positions, cache=cache,
                          prefix=prefix, output_hidden_states=output_hidden_states)

    def __call__(self, input_ids: jax.Array | None = None, *, inputs_embeds: jax.Array | None = None,
                 attention_mask=None, positions=None, cache: KVCache | None = None):
        """Returns (logits float32[B, T, V], extended cache or None)."""
        out = self.decode(input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                          positions=positions, cache=cache)
        return self.logits(out.hidden), out.cache

    def init_cache(self, batch: int, max_length: int) -> KVCache:
        cfg = self.config
        return KVCache.init(num_layers=cfg.num_hidden_layers, batch=batch, max_length=max_length,
                            num_kv_heads=getattr(cfg, "num_key_value_heads", cfg.num_attention_heads),
                            head_dim=cfg.head_size, dtype=cfg.dtype, stacked=getattr(cfg, "scan_layers", False))
