"""Probabilistic inference: the log-likelihood of every candidate continuation (class name) of a prompt.

The prompt (image + question + e.g. "ASSISTANT: The photo features a") is prefilled once; every candidate
is then scored as a continuation of that cached prefix, a chunk of candidates at a time.  The prefix is
never recomputed and its cache never copied per candidate: the candidates' queries attend to the shared
cache and to their own keys in one softmax (`layers.attention_with_prefix`).  Candidates are right-padded
to one length; padding comes after the real tokens, so under the causal mask it never changes a real
token's score.

    score(c) = sum_j log p(c_j | prefix, c_<j)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vlmcls_jax.sharding import put_batch


@functools.partial(jax.jit, static_argnames=("graphdef", "num_slots"))
def _prefill(graphdef, state, input_ids, attention_mask, pixel_values, *, num_slots: int):
    """Returns (cache, log-probs of the token after the prefix float32[B, V])."""
    model = nnx.merge(graphdef, state)
    kwargs = {} if pixel_values is None else {"pixel_values": pixel_values}
    cache = model.init_cache(input_ids.shape[0], num_slots)
    out = model.decode(input_ids, attention_mask=attention_mask, cache=cache, **kwargs)
    return out.cache, jax.nn.log_softmax(model.logits(out.hidden[:, -1]), axis=-1)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _score_chunk(graphdef, state, cache, first_logp, cand_ids, cand_mask):
    """cand_ids, cand_mask: int[C, L] (right-padded).  Returns per-token log-probs float32[B, C, L]
    (0 at padding)."""
    model = nnx.merge(graphdef, state)
    B, C = first_logp.shape[0], cand_ids.shape[0]
    ids = jnp.tile(cand_ids, (B, 1))                                                      # [B*C, L]
    mask = jnp.tile(cand_mask, (B, 1))
    out = model.decode(ids, attention_mask=mask, prefix=cache)
    logp = jax.nn.log_softmax(model.logits(out.hidden[:, :-1]), axis=-1)               # predicts tokens 1..L-1
    later = jnp.take_along_axis(logp, ids[:, 1:, None], axis=-1)[..., 0]                 # [B*C, L-1]
    first = jnp.take_along_axis(first_logp, cand_ids[None, :, 0].repeat(B, 0), axis=-1)   # [B, C]
    later = (later * mask[:, 1:]).reshape(B, C, -1)
    return jnp.concatenate([first[..., None], later], axis=-1)


def score_candidates(model: nnx.Module, input_ids, attention_mask, candidates: list[list[int]],
                     pixel_values=None, *, chunk_size: int = 128, token_logprobs: bool = False, mesh=None):
    """Scores every candidate token sequence as a continuation of each prompt.

    input_ids, attention_mask: int[B, T] left-padded prompts; candidates: C lists of token ids (each
    non-empty, tokenised as they appear after the prompt); pixel_values: [B_img, H, W, 3] or None.
    Returns (sum of log-probs float32[B, C], token counts int[C]); divide for a length-normalised score.
    With token_logprobs=True also the per-token log-probs float32[B, C, L] (0 past each candidate's end).
    mesh: split the prompts (images) over the mesh's batch axes (place the model on the mesh first).
    """
    if not candidates or any(len(c) == 0 for c in candidates):
        raise ValueError("candidates: every candidate needs at least one token")
    L = max(len(c) for c in candidates)
    C = len(candidates)
    ids = np.zeros((C, L), np.int32)
    mask = np.zeros((C, L), np.int32)
    for i, c in enumerate(candidates):
        ids[i, : len(c)], mask[i, : len(c)] = c, 1
    graphdef, state = nnx.split(model)
    prompt_ids, prompt_mask, pixels = put_batch(
        (np.asarray(input_ids, np.int32), np.asarray(attention_mask, np.int32),
         None if pixel_values is None else np.asarray(pixel_values)), mesh)
    cache, first_logp = _prefill(graphdef, state, prompt_ids, prompt_mask, pixels,
                                 num_slots=int(np.shape(input_ids)[1]))
    scores = []
    for start in range(0, C, chunk_size):
        chunk_ids, chunk_mask = ids[start:start + chunk_size], mask[start:start + chunk_size]
        if len(chunk_ids) < chunk_size and C > chunk_size:   # keep one compiled shape: pad the last chunk
            pad = chunk_size - len(chunk_ids)
            chunk_ids = np.concatenate([chunk_ids, np.repeat(chunk_ids[:1], pad, 0)])
            chunk_mask = np.concatenate([chunk_mask, np.repeat(chunk_mask[:1], pad, 0)])
        chunk_scores = _score_chunk(graphdef, state, cache, first_logp, chunk_ids, chunk_mask)
        scores.append(np.asarray(chunk_scores)[:, : min(chunk_size, C - start)])
    per_token = np.concatenate(scores, axis=1)
    sums = per_token.sum(-1)
    return (sums, mask.sum(1), per_token) if token_logprobs else (sums, mask.sum(1))
