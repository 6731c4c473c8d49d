"""Probabilistic inference: the log-likelihood of every candidate continuation (class name) of a prompt.

The prompt (image + question + e.g. "ASSISTANT: The photo features a") is prefilled once; every candidate
is then scored as a continuation of that cached prefix, a chunk of candidates at a time.  The prefix is
never recomputed and its cache never copied per candidate: the candidates' queries attend to the shared
cache and to their own keys in one softmax (`layers.attention_with_prefix`).  The candidates' tokens are fed
as a token tree (`token_tree`): a prefix shared by several candidates is computed once, each token seeing
the prompt and its own ancestors; only tokens that predict another are fed (see `score_candidates`).

    score(c) = sum_j log p(c_j | prefix, c_<j)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vlmcls_jax.inference import token_tree
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
def _score_rows(graphdef, state, cache, tokens, depth, mask, target_row, target_slot, target_token):
    """Packed token-tree rows (`token_tree.PackedTree`: tokens, depth int[R, W], mask bool[R, W, W]) continuing
    each of the B cached prompts.  Returns log p(target_token) at (target_row, target_slot): float32[B, K]."""
    model = nnx.merge(graphdef, state)
    B, (R, W) = cache.valid.shape[0], tokens.shape
    before = cache.valid.sum(1, dtype=jnp.int32)                                          # [B] real prompt tokens
    positions = (before[:, None, None] + depth[None]).reshape(B * R, W)
    out = model.decode(jnp.tile(tokens, (B, 1)), attention_mask=jnp.tile(mask, (B, 1, 1)), positions=positions,
                       prefix=cache)
    hidden = out.hidden.reshape(B, R, W, -1)[:, target_row, target_slot]                   # [B, K, D]
    logp = jax.nn.log_softmax(model.logits(hidden), axis=-1)                              # [B, K, V]
    return jnp.take_along_axis(logp, jnp.broadcast_to(target_token[None, :, None], (B, len(target_token), 1)),
                               axis=-1)[..., 0]


def _bucket(n: int) -> int:
    """Sizes are padded up to a power of two, so a class list compiles a few shapes, not one per size."""
    return 1 << (int(n) - 1).bit_length()


def score_candidates(model: nnx.Module, input_ids, attention_mask, candidates: list[list[int]],
                     pixel_values=None, *, chunk_size: int = 1024, token_logprobs: bool = False, mesh=None):
    """Scores every candidate token sequence as a continuation of each prompt.

    input_ids, attention_mask: int[B, T] left-padded prompts; candidates: C lists of token ids (each
    non-empty, tokenised as they appear after the prompt); chunk_size: token positions per call (memory:
    B x chunk_size x vocabulary log-probs); pixel_values: [B_img, H, W, 3], a dict of the
    model's image inputs (`generate.image_inputs`), or None.
    Returns (sum of log-probs float32[B, C], token counts int[C]); divide for a length-normalised score.
    With token_logprobs=True also the per-token log-probs float32[B, C, L] (0 past each candidate's end).
    mesh: split the prompts (images) over the mesh's batch axes (place the model on the mesh first).

    Work done: the prompt once; then each distinct prefix of the candidates' tokens *but their last*, once
    (`token_tree`: candidates that start alike share their first tokens; a one-token candidate needs no
    decoding at all), packed into rows of W slots (W = 16, or the longest candidate rounded up to a power of
    two), about chunk_size // W rows per call (balanced over the calls); the output head runs only where a
    token is scored.  ImageNet's 1000
    names (3250 tokens) cost 1866 fed tokens instead of the 12000 of 1000 rows padded to the longest.
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
    per_token = np.zeros((first_logp.shape[0], C, L), np.float32)
    if L > 1:
        tree = token_tree.pack(candidates, width=max(16, _bucket(L - 1)))
        W = tree.tokens.shape[1]
        R = len(tree.tokens)
        calls = -(-R // max(1, chunk_size // W))                  # about chunk_size tokens per call
        per_call = -(-R // calls)                                 # rows per call, balanced: little padding
        rows = per_call                                           # one compiled row count
        dispatched = []                                           # all calls queued before the first is read
        for start in range(0, R, per_call):
            sel = (tree.target_row >= start) & (tree.target_row < start + per_call)
            K = -(-int(sel.sum()) // 128) * 128                   # targets padded to a multiple of 128
            pad = lambda a, fill=0: np.concatenate([a, np.full(K - len(a), fill, a.dtype)])
            block = lambda a: np.concatenate([a[start:start + per_call],
                                              np.zeros((rows - len(a[start:start + per_call]),) + a.shape[1:],
                                                       a.dtype)])
            dispatched.append((sel, _score_rows(graphdef, state, cache, block(tree.tokens), block(tree.depth),
                                                block(tree.mask), pad(tree.target_row[sel] - start),
                                                pad(tree.target_slot[sel]), pad(tree.target_token[sel]))))
        for sel, picked in dispatched:
            per_token[:, tree.target_candidate[sel], tree.target_index[sel]] = np.asarray(picked)[:, :int(sel.sum())]
    per_token[:, :, 0] = np.asarray(first_logp)[:, [c[0] for c in candidates]]   # [B, V] -> [B, C]
    sums = per_token.sum(-1)
    return (sums, lengths, per_token) if token_logprobs else (sums, lengths)
