"""What every decoder-only language model here shares (Llama, OPT): the decoder stack's control flow and the
entry points the inference and training code call.

  DecoderStack   embeddings in, final hidden states out: the masks of a cache or prefix call, default
                 positions, the layer loop (a Python list or one `jax.lax.scan` over stacked layers; remat;
                 every layer's input kept when asked), the extended `KVCache`.  A family supplies its layers and
                 three small hooks (`default_positions`, `layer_inputs`, `final_norm`).
  CausalLM       a `DecoderStack` (`self.model`) + output head: `embed`, `decode`, `logits`, `__call__`,
                 `init_cache`.
  DecoderOutput  what `decode` returns.

A decoder layer is called as `layer(x, mask, kv, start, prefix, *extra) -> (x, kv)`: x [B, T, D]; mask
bool[B, 1, T, S] (bool[B, T, T] with a prefix); kv its cache slots ((keys, values), layout in kv_cache.py) or
None; start the slot the new keys go to; prefix (keys, values, valid) of a shared prompt cache or None;
extra what the family computes once per call (Llama: the rotary cos / sin).  Axis letters: layers.py.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from vlmcls_jax.models.kv_cache import KVCache
from vlmcls_jax.models.layers import Embed, Linear, causal_cache_mask, constrain, continuation_mask, matmul
from vlmcls_jax.models.scan import scan_layers, unstack_layers

ACTIVATION_AXES = ("batch", "length", "activation_embed")


class DecoderOutput(NamedTuple):
    hidden: jax.Array                        # [B, T, D] after the final norm
    cache: KVCache | None                    # the extended cache, when one was passed in
    hidden_states: tuple[jax.Array, ...]     # () unless requested: (embeddings, layer 1, ..., final normed)


class StepMasks(NamedTuple):
    """Masks and counts of one decoder call over T new tokens (`step_masks`)."""
    mask: jax.Array             # bool[B, 1, T, S] (causal over the cache), or bool[B, T, T] with a prefix
    start: jax.Array | int      # cache slot of the first new token (0 without a cache or with a prefix)
    valid: jax.Array | None     # bool[B, S]: the cache's slots holding real tokens after this call (cache only)
    new_valid: jax.Array        # bool[B, T]: the new tokens that are real
    counts: jax.Array           # int[B, T]: real tokens before each new one (cache or prefix included), minus 1
    floor: jax.Array | int      # int[B, 1] real tokens of each row's prompt (prefix), else 0


def step_masks(attention_mask, cache: KVCache | None, prefix: KVCache | None, B: int, T: int) -> StepMasks:
    """attention_mask: int/bool[B, T] (1 = real token), a token-tree bool[B, T, T] (prefix only), or None.
    With `prefix` (P prompts' filled cache), the B = P * C rows continue it: read, neither copied nor extended."""
    if prefix is None:
        start, valid, new_valid, mask, counts = causal_cache_mask(attention_mask, cache, B, T)
        return StepMasks(mask, start, valid if cache is not None else None, new_valid, counts, 0)
    if cache is not None:
        raise ValueError("pass either cache= (to extend it) or prefix= (to read it), not both")
    P = prefix.valid.shape[0]
    if B % P:
        raise ValueError(f"{B} rows do not split evenly over the prefix's {P} prompts")
    mask, new_valid = continuation_mask(attention_mask, B, T)                                   # [B, T, T]
    before = jnp.repeat(prefix.valid.sum(1, dtype=jnp.int32), B // P)[:, None]                  # [B, 1]
    counts = before + jnp.cumsum(new_valid, axis=1, dtype=jnp.int32) - 1
    return StepMasks(mask, 0, None, new_valid, counts, before)


def run_layers(layers, x: jax.Array, mask, kv, start, prefix: KVCache | None, extra: tuple = (), *,
               remat: bool, output_hidden_states: bool):
    """Runs the decoder layers: a Python loop over an `nnx.List`, or one `jax.lax.scan` over layers stacked by
    `scan.stack_layers` (anything else).  kv: (keys, values) of the cache (per-layer tuples, or [L, ...] arrays when
    stacked) or None.  remat: recompute each layer in the backward pass.  Returns (x [B, T, D], the new (keys,
    values) or None, [embeddings, layer 1, ..., layer L-1] when `output_hidden_states`, else None)."""
    if not isinstance(layers, nnx.List):
        valid = None if prefix is None else prefix.valid

        def body(layer, x, xs):
            layer_kv, layer_prefix = xs
            if layer_prefix is not None:
                layer_prefix = (*layer_prefix, valid)
            with jax.named_scope("decoder_layer"):
                y, layer_kv = layer(x, mask, layer_kv, start, layer_prefix, *extra)
            return constrain(y, ACTIVATION_AXES), (layer_kv, x if output_hidden_states else None)

        stack = lambda pair: None if pair is None else tuple(jnp.stack(a) if isinstance(a, tuple) else a
                                                             for a in pair)
        prefix_kv = None if prefix is None else (prefix.keys, prefix.values)
        y, (kv, inputs) = scan_layers(layers, body, x, (stack(kv), stack(prefix_kv)), remat=remat)
        return y, kv, (list(inputs) if output_hidden_states else None)

    def call(layer, *args):
        with jax.named_scope("decoder_layer"):
            return layer(*args)

    call = nnx.remat(call) if remat else call
    hidden_states = [] if output_hidden_states else None
    new_k, new_v = [], []
    for i, layer in enumerate(layers):
        if output_hidden_states:
            hidden_states.append(x)
        layer_prefix = None if prefix is None else (prefix.keys[i], prefix.values[i], prefix.valid)
        x, layer_kv = call(layer, x, mask, None if kv is None else (kv[0][i], kv[1][i]), start, layer_prefix,
                           *extra)
        x = constrain(x, ACTIVATION_AXES)
        if layer_kv is not None:
            new_k.append(layer_kv[0])
            new_v.append(layer_kv[1])
    return x, (None if kv is None else (tuple(new_k), tuple(new_v))), hidden_states


class DecoderStack(nnx.Module):
    """Decoder layers between embeddings and the final norm.  A subclass sets `self.layers` (an `nnx.List`, or
    stacked layers when `config.scan_layers`) and `self.config` (with `dtype`, `remat`, optionally
    `scan_layers`), and defines the hooks below."""

    @property
    def stacked(self) -> bool:
        """The layers are stacked and scanned (`config.scan_layers`, unless `unstack` split them since)."""
        return not isinstance(self.layers, nnx.List)

    def unstack(self) -> None:
        """Splits stacked layers into a list (`scan.unstack_layers`), in place; a cache for this stack is then
        per layer (`CausalLM.init_cache` follows)."""
        if self.stacked:
            self.layers = unstack_layers(self.layers)

    def default_positions(self, m: StepMasks) -> jax.Array:
        """int[B, T] positions when the caller gives none (the family's rule for padding tokens)."""
        raise NotImplementedError

    def layer_inputs(self, inputs_embeds: jax.Array, positions: jax.Array) -> tuple[jax.Array, tuple]:
        """-> (the first layer's input [B, T, D] in config.dtype, the layers' `extra` arguments)."""
        raise NotImplementedError

    def final_norm(self, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def __call__(self, inputs_embeds: jax.Array, *, attention_mask: jax.Array | None = None,
                 positions: jax.Array | None = None, cache: KVCache | None = None, prefix: KVCache | None = None,
                 output_hidden_states: bool = False) -> DecoderOutput:
        """inputs_embeds: [B, T, D]; attention_mask: int/bool[B, T] (1 = real token, 0 = padding), or with
        `prefix` a token-tree bool[B, T, T]; positions: int[B, T] or None (the family's default: real tokens
        counted, cache or prefix included, as transformers' `generate` does); cache: KVCache with room for T
        more tokens, or None; prefix: a filled KVCache of P prompts that these B = P * C rows continue (C per
        prompt, prompt-major), read but neither copied nor extended (for scoring many continuations);
        exclusive with `cache`.  hidden_states, when asked: (embeddings, layers 1..L-1, final normed)."""
        B, T, _ = inputs_embeds.shape
        m = step_masks(attention_mask, cache, prefix, B, T)
        if positions is None:
            positions = self.default_positions(m)
        x, extra = self.layer_inputs(inputs_embeds, positions)
        kv = (cache.keys, cache.values) if cache is not None else None
        cfg = self.config
        x, kv, hidden_states = run_layers(self.layers, x, m.mask, kv, m.start, prefix, extra, remat=cfg.remat,
                                          output_hidden_states=output_hidden_states)
        x = self.final_norm(x)
        if output_hidden_states:
            hidden_states.append(x)
        if cache is not None:
            cache = KVCache(keys=kv[0], values=kv[1], valid=m.valid, end=cache.end + T)
        return DecoderOutput(x, cache, tuple(hidden_states) if output_hidden_states else ())


def output_head(cfg, rngs) -> Linear | None:
    """`lm_head` [hidden, vocab] without bias, or None when the config ties it to the token embeddings."""
    return None if cfg.tie_word_embeddings else Linear(
        cfg.hidden_size, cfg.vocab_size, axes=("embed", "vocab"), use_bias=False, dtype=cfg.dtype,
        param_dtype=cfg.param_dtype, rngs=rngs)


class CausalLM(nnx.Module):
    """A subclass sets `self.model` (a `DecoderStack`, or a holder whose call returns a `DecoderOutput`),
    `self.lm_head` (a `Linear`, or None when tied to the token embeddings), `self.config`, and the property
    `embed_tokens` (its `Embed` table)."""

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
               output_hidden_states: bool = False) -> DecoderOutput:
        """Final hidden states (and optionally every layer's); see `DecoderStack.__call__`."""
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

    @property
    def stack(self) -> DecoderStack:
        """The `DecoderStack` inside `self.model`."""
        return next(m for _, m in nnx.iter_modules(self.model) if isinstance(m, DecoderStack))

    def init_cache(self, batch: int, max_length: int) -> KVCache:
        """An empty cache of `max_length` slots; stacked [L, ...] arrays when the layers are stacked."""
        cfg = self.config
        return KVCache.init(num_layers=cfg.num_hidden_layers, batch=batch, max_length=max_length,
                            num_kv_heads=getattr(cfg, "num_key_value_heads", cfg.num_attention_heads),
                            head_dim=cfg.head_size, dtype=cfg.dtype, stacked=self.stack.stacked)
