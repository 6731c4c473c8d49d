"""Probabilistic inference: the log-likelihood of every candidate continuation (class name) of a prompt.

The prompt (image + question + e.g. "ASSISTANT: The photo features a") is prefilled once; every candidate
is then scored as a continuation of that cached prefix, a chunk of candidates at a time.  The prefix is
never recomputed and its cache never copied per candidate: the candidates' queries attend to the shared
cache and to their own keys in one softmax (`layers.attention_with_prefix`).  Candidates are sorted by
length and right-padded per chunk; padding comes after the real tokens, so under the causal mask it never
changes a real token's score.  Only tokens that predict another are fed (see `score_candidates`).

    score(c) = sum_j log p(c_j | prefix, c_<j)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vlmcls_jax.inference.generate import image_inputs
from vlmcls_jax.sharding import put_batch


@functools.partial(jax.jit, static_argnames=("graphdef", "num_slots"))
def _prefill(graphdef, state, input_ids, attention_mask, images: dict, *, num_slots: int):
    """Returns (cache, log-probs of the token after the prefix float32[B, V])."""
    model = nnx.merge(graphdef, state)
    cache = model.init_cache(input_ids.shape[0], num_slots)
    out = model.decode(input_ids, attention_mask=attention_mask, cache=cache, **images)
    return out.cache, jax.nn.log_softmax(model.logits(out.hidden[:, -1]), axis=-1)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _score_chunk(graphdef, state, cache, fed, targets, mask):
    """Candidates continuing the cached prompts.  fed, targets, mask: int[C, W] right-padded: column j feeds
    a candidate's token j and scores its token j + 1 (`targets`), for j up to its length - 2 (`mask`).
    Returns float32[B, C, W]: log p(target) at real columns, 0 at padding."""
    model = nnx.merge(graphdef, state)
    B, (C, W) = cache.valid.shape[0], fed.shape
    out = model.decode(jnp.tile(fed, (B, 1)), attention_mask=jnp.tile(mask, (B, 1)), prefix=cache)
    logp = jax.nn.log_softmax(model.logits(out.hidden), axis=-1)                          # [B*C, W, V]
    picked = jnp.take_along_axis(logp, jnp.tile(targets, (B, 1))[..., None], axis=-1)[..., 0]
    return (picked * jnp.tile(mask, (B, 1))).reshape(B, C, W)


def _bucket(n: int) -> int:
    """Token counts are padded up to a power of two, so a class list compiles a few chunk shapes, not one
    per length."""
    return 1 << (n - 1).bit_length()


def score_candidates(model: nnx.Module, input_ids, attention_mask, candidates: list[list[int]],
                     pixel_values=None, *, chunk_size: int = 128, token_logprobs: bool = False, mesh=None):
    """Scores every candidate token sequence as a continuation of each prompt.

    input_ids, attention_mask: int[B, T] left-padded prompts; candidates: C lists of token ids (each
    non-empty, tokenised as they appear after the prompt); pixel_values: [B_img, H, W, 3], a dict of the
    model's image inputs (`generate.image_inputs`), or None.
    Returns (sum of log-probs float32[B, C], token counts int[C]); divide for a length-normalised score.
    With token_logprobs=True also the per-token log-probs float32[B, C, L] (0 past each candidate's end).
    mesh: split the prompts (images) over the mesh's batch axes (place the model on the mesh first).

    Work done: the prompt once; then each candidate's tokens *but its last* (the last token's probability
    comes from the token before it; a one-token candidate needs no decoding at all).  Candidates are sorted
    by length and scored `chunk_size` at a time, each chunk padded only to its own longest candidate
    (rounded up to a power of two), so ImageNet's 1000 names (mean 3.3 tokens, max 12) cost about their
    real token count rather than 1000 x 12.
    """
    if not candidates or any(len(c) == 0 for c in candidates):
        raise ValueError("candidates: every candidate needs at least one token")
    lengths = np.array([len(c) for c in candidates])
    C, L = len(candidates), int(lengths.max())
    graphdef, state = nnx.split(model)
    images = image_inputs(pixel_values)
    prompt_ids, prompt_mask, *values = put_batch(
        (np.asarray(input_ids, np.int32), np.asarray(attention_mask, np.int32), *images.values()), mesh)
    cache, first_logp = _prefill(graphdef, state, prompt_ids, prompt_mask, dict(zip(images, values)),
                                 num_slots=int(np.shape(input_ids)[1]))
    first = np.asarray(first_logp)                                                        # [B, V]
    per_token = np.zeros((first.shape[0], C, L), np.float32)
    per_token[:, :, 0] = first[:, [c[0] for c in candidates]]
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 1]                       # one-token candidates are done
    for start in range(0, len(order), chunk_size):
        chosen = order[start:start + chunk_size]
        width = _bucket(int(lengths[chosen].max()) - 1)     # tokens fed: all but the last
        rows = chunk_size if len(order) > chunk_size else len(chosen)   # one compiled shape per width
        fed, targets, mask = (np.zeros((rows, width), np.int32) for _ in range(3))
        for row, i in enumerate(chosen):
            n = lengths[i]
            fed[row, : n - 1], targets[row, : n - 1], mask[row, : n - 1] = candidates[i][:-1], candidates[i][1:], 1
        later = np.asarray(_score_chunk(graphdef, state, cache, fed, targets, mask))
        for row, i in enumerate(chosen):
            per_token[:, i, 1: lengths[i]] = later[:, row, : lengths[i] - 1]
    sums = per_token.sum(-1)
    return (sums, lengths, per_token) if token_logprobs else (sums, lengths)
