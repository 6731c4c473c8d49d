"""Greedy generation: one jitted prefill, then a `lax.while_loop` of single-token decode steps.

Works for any model with `decode(input_ids, attention_mask=, cache=, **image_inputs) -> DecoderOutput`,
`logits(hidden)` and `init_cache(batch, max_length)`: the language models (`causal_lm.CausalLM`: Llama, OPT)
and the vision-language ones (`vision_language.VisionLanguageModel`: LLaVA, LLaVA-NeXT, BLIP-2, InstructBLIP).  Prompts are left-padded so every
row's last prompt token sits in the same slot; all rows share one cache write position.  Shapes are
static (cache of T + max_new_tokens slots), so one compilation serves every batch of the same shape.
Matches transformers' greedy `generate`: after a row emits EOS it is filled with `pad_id`, and the loop
stops early once every row has finished.

What a decode step reads (benchmarks/decode_anatomy.py measures it against the time to read it once): the
decoder's weights and the KV cache, nothing copied.  The cache is a carry of the `while_loop`, so XLA writes
each step's keys and values into it in place (`layers.cached_attention`; no per-step copy of the cache), in the
layout its attention products read directly (`kv_cache.py`).  On XLA:CPU, a model with scanned (stacked) layers
has its layers unstacked once per call, before the loop (`unrolled_for_decoding`): inside the loop, XLA:CPU
would otherwise copy every layer's weights out of the stacked arrays on every step (it cannot fuse the slice into
the matrix product, as the TPU and GPU compilers do), which made a scanned step 1.8x an unrolled one.  The
price is a second copy of the decoder's weights while `generate` runs (CPU memory only).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vlmcls_jax.models.causal_lm import DecoderStack
from vlmcls_jax.models.layers import xla_cpu
from vlmcls_jax.sharding import put_batch


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "eos_ids", "pad_id"))
def _generate(graphdef, state, input_ids, attention_mask, images: dict, *, max_new_tokens: int,
              eos_ids: tuple[int, ...], pad_id: int):
    model = unrolled_for_decoding(nnx.merge(graphdef, state))
    B, T = input_ids.shape
    cache = model.init_cache(B, T + max_new_tokens)
    out = model.decode(input_ids, attention_mask=attention_mask, cache=cache, **images)
    first = jnp.argmax(model.logits(out.hidden[:, -1]), axis=-1).astype(jnp.int32)
    is_eos = lambda tok: jnp.isin(tok, jnp.asarray(eos_ids, jnp.int32))
    tokens = jnp.full((B, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(first)

    def cond(carry):
        i, _, _, _, done = carry
        return (i < max_new_tokens) & ~jnp.all(done)

    def body(carry):
        i, tok, cache, tokens, done = carry
        step = model.decode(tok[:, None], attention_mask=jnp.ones((B, 1), jnp.int32), cache=cache)
        nxt = jnp.argmax(model.logits(step.hidden[:, -1]), axis=-1).astype(jnp.int32)
        nxt = jnp.where(done, pad_id, nxt)
        return i + 1, nxt, step.cache, tokens.at[:, i].set(nxt), done | is_eos(nxt)

    carry = (jnp.int32(1), first, out.cache, tokens, is_eos(first))
    _, _, _, tokens, _ = jax.lax.while_loop(cond, body, carry)
    return tokens


def unrolled_for_decoding(model: nnx.Module) -> nnx.Module:
    """On the CPU backend: `model` with every stacked decoder stack split into per-layer modules (in place; call
    it on a merged copy inside jit, once, outside the decode loop).  Elsewhere, `model` unchanged."""
    if xla_cpu():
        for _, module in list(nnx.iter_modules(model)):
            if isinstance(module, DecoderStack):
                module.unstack()
    return model


def generate(model: nnx.Module, input_ids, attention_mask=None, pixel_values=None, *, max_new_tokens: int,
             eos_token_id: int | list[int] | None = None, pad_token_id: int | None = None,
             mesh=None) -> np.ndarray:
    """Greedy decoding.

    input_ids: int[B, T] left-padded prompts (image tokens already expanded for LLaVA);
    attention_mask: int[B, T] (1 = real token); pixel_values: float[B_img, H, W, 3], or a dict of the model's
    image inputs (`image_inputs`: e.g. LLaVA-NeXT's pixel_values + image_index), or None.
    eos/pad ids default to the model's text config.  Returns int32[B, max_new_tokens]: the new tokens,
    EOS included, then `pad_token_id` after it, as a host (numpy) array ready for `tokenizer.batch_decode`.
    mesh: split the batch over the mesh's batch axes (data parallel; place the model on the same mesh first,
    `sharding.shard_model`); the tokens equal the single-device ones.
    """
    text_cfg = getattr(model.config, "text_config", model.config)
    eos = text_cfg.eos_token_id if eos_token_id is None else eos_token_id
    eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (int(eos),))
    pad = pad_token_id if pad_token_id is not None else text_cfg.pad_token_id
    if pad is None:   # (a pad id of 0 is a real id, not a missing one)
        pad = eos_ids[0] if eos_ids else 0
    if attention_mask is None:
        attention_mask = jnp.ones_like(input_ids)
    if not bool(jnp.all(jnp.asarray(attention_mask)[:, -1])):
        raise ValueError("attention_mask: prompts must be left-padded (every row's last position a real token)")
    graphdef, state = nnx.split(model)
    images = image_inputs(pixel_values)
    ids, mask, *values = put_batch((np.asarray(input_ids, np.int32), np.asarray(attention_mask, np.int32),
                                    *images.values()), mesh)
    return np.asarray(_generate(graphdef, state, ids, mask, dict(zip(images, values)),
                                max_new_tokens=max_new_tokens, eos_ids=eos_ids, pad_id=int(pad)))


def image_inputs(pixel_values) -> dict[str, np.ndarray]:
    """The keyword arguments a model's `decode` takes for its images: {} for None, {"pixel_values": x} for an
    array, a dict as it is (each entry split over the batch like the prompts)."""
    if pixel_values is None:
        return {}
    if isinstance(pixel_values, dict):
        return {k: np.asarray(v) for k, v in pixel_values.items()}
    return {"pixel_values": np.asarray(pixel_values)}
