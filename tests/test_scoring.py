"""`score_candidates` equals, for every candidate, the summed log-softmax of transformers' full forward over
prompt + candidate (same weights: a tiny random LLaVA saved with `save_pretrained`, loaded with `load_hf`)."""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest
import torch
import transformers

from vlmcls_jax.convert import load_hf
from vlmcls_jax.inference import score_candidates

PAD, BOS, EOS, IMAGE = 0, 1, 2, 63
N_IMG = 4                                   # (28 / 14)^2 patches, CLS dropped
TEXT = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=28,
              patch_size=14, projection_dim=16)

ROWS = [[BOS, 5, *[IMAGE] * N_IMG, 7, 8, 9],                      # left-padded by 3
        [BOS, 10, 11, *[IMAGE] * N_IMG, 12, 13, 14, 15, 16, 17]]
T = max(map(len, ROWS))
IDS = np.array([[PAD] * (T - len(r)) + r for r in ROWS], np.int64)
MASK = np.array([[0] * (T - len(r)) + [1] * len(r) for r in ROWS], np.int64)
PIXELS = np.random.RandomState(0).randn(2, 28, 28, 3).astype(np.float32)
# 9 candidates of 1..4 tokens; [6, 7], [6, 7, 8] and [6, 9] share fed prefixes (the token tree computes
# node 6 and node 6-7 once for them).  chunk_size 3 and 2 give one packed row per call, 128 one call.
CANDIDATES = [[5], [6, 7], [8, 9, 10], [11, 12, 13, 14], [5, 20], [30], [40, 41, 42, 43], [6, 7, 8], [6, 9]]
TOL = 1e-4


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_llava_scoring")
    torch.manual_seed(0)
    cfg = transformers.LlavaConfig(vision_config=transformers.CLIPVisionConfig(**VISION),
                                   text_config=transformers.LlamaConfig(**TEXT), image_token_index=IMAGE)
    ref = transformers.LlavaForConditionalGeneration(cfg).eval()
    ref.save_pretrained(folder)
    return ref, load_hf(str(folder))


@pytest.fixture(scope="module")
def reference(llava):
    """transformers' per-token log-probs float64[B, C, 4] (0 past each candidate's end), from one full forward
    over prompt + candidate per candidate, with our default positions (real tokens counted, padding at 0)."""
    ref, _ = llava
    out = np.zeros((len(ROWS), len(CANDIDATES), 4))
    for c, cand in enumerate(CANDIDATES):
        ids = np.concatenate([IDS, np.tile(cand, (len(ROWS), 1))], 1)
        mask = np.concatenate([MASK, np.ones((len(ROWS), len(cand)), np.int64)], 1)
        positions = np.maximum(mask.cumsum(1) - 1, 0)
        with torch.no_grad():
            logits = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                         pixel_values=torch.tensor(PIXELS.transpose(0, 3, 1, 2)),
                         position_ids=torch.tensor(positions)).logits.double()
        logp = torch.log_softmax(logits, -1).numpy()
        for j, tok in enumerate(cand):
            out[:, c, j] = logp[:, T + j - 1, tok]                        # position T+j-1 predicts token j
    return out


def report(what, diff):
    if os.environ.get("VLMCLS_PRINT_DIFFS"):
        print(f"\n[max abs diff] {what}: {diff:.3g} (tol {TOL:g})")


@pytest.fixture(scope="module")
def scores_by_chunk(llava):
    _, ours = llava
    return {k: score_candidates(ours, IDS, MASK, CANDIDATES, PIXELS, chunk_size=k) for k in (3, 128)}


@pytest.mark.parametrize("chunk_size", [3, 128])
def test_scores_equal_transformers_full_forward(scores_by_chunk, reference, chunk_size):
    scores, lengths = scores_by_chunk[chunk_size]
    assert scores.shape == (2, len(CANDIDATES)) and scores.dtype == np.float32
    assert lengths.tolist() == [len(c) for c in CANDIDATES]
    diff = float(np.abs(scores - reference.sum(-1)).max())
    report(f"score_candidates (chunk_size={chunk_size}) vs HF full forward", diff)
    assert diff <= TOL, diff
    assert np.isfinite(scores).all() and (scores < 0).all()


def test_results_independent_of_chunk_size(llava, scores_by_chunk):
    _, ours = llava
    s2, n2 = score_candidates(ours, IDS, MASK, CANDIDATES, PIXELS, chunk_size=2)
    for k, (s, n) in scores_by_chunk.items():
        np.testing.assert_array_equal(n, n2)
        diff = float(np.abs(s - s2).max())
        report(f"chunk_size 2 vs {k}", diff)
        assert diff <= 1e-5, (k, diff)


def test_rows_are_scored_against_their_own_image(llava, scores_by_chunk):
    """Swapping the two images changes the scores (each prompt row sees its own image)."""
    _, ours = llava
    swapped, _ = score_candidates(ours, IDS, MASK, CANDIDATES, PIXELS[::-1].copy(), chunk_size=128)
    assert np.abs(swapped - scores_by_chunk[128][0]).max() > 1e-3


@pytest.mark.skipif("token_logprobs" not in inspect.signature(score_candidates).parameters,
                    reason="score_candidates has no token_logprobs option in this version")
def test_per_token_log_probs_equal_transformers(llava, reference):
    _, ours = llava
    sums, _, per_token = score_candidates(ours, IDS, MASK, CANDIDATES, PIXELS, chunk_size=3, token_logprobs=True)
    assert per_token.shape == (2, len(CANDIDATES), 4)
    diff = float(np.abs(per_token - reference).max())
    report("per-token log-probs vs HF", diff)
    assert diff <= TOL, diff
    for c, cand in enumerate(CANDIDATES):
        assert (per_token[:, c, len(cand):] == 0).all()
    np.testing.assert_allclose(per_token.sum(-1), sums, atol=1e-6)


@pytest.mark.parametrize("candidates", [[[5], []], []], ids=["one-empty", "none"])
def test_empty_candidates_raise(llava, candidates):
    _, ours = llava
    with pytest.raises(ValueError, match="at least one token"):
        score_candidates(ours, IDS, MASK, candidates, PIXELS)


def test_token_tree_shares_prefixes_and_splits_rows():
    """Each distinct fed prefix is one node; a path that does not fit the row starts a new one, repeating
    its ancestors; every scored token is predicted at the slot of the prefix before it."""
    from vlmcls_jax.inference.token_tree import pack
    cands = [[1, 2, 3], [1, 2, 4], [1, 5], [7], [8, 9, 10, 11]]
    tree = pack(cands, width=3)
    # row 0: 1, 1-2 (paths of [1, 2, *] and [1, 5]); row 1: 8, 8-9, 8-9-10 (one-token [7] needs no node)
    assert tree.tokens.tolist() == [[1, 2, 0], [8, 9, 10]] and tree.depth.tolist() == [[0, 1, 0], [0, 1, 2]]
    assert tree.mask[0].tolist() == [[True, False, False], [True, True, False], [False, False, False]]
    got = sorted(zip(tree.target_candidate.tolist(), tree.target_index.tolist(), tree.target_row.tolist(),
                     tree.target_slot.tolist(), tree.target_token.tolist()))
    assert got == [(0, 1, 0, 0, 2), (0, 2, 0, 1, 3), (1, 1, 0, 0, 2), (1, 2, 0, 1, 4), (2, 1, 0, 0, 5),
                   (4, 1, 1, 0, 9), (4, 2, 1, 1, 10), (4, 3, 1, 2, 11)]
    split = pack([[1, 2, 3], [4, 5, 6], [1, 2, 7]], width=2)       # sorted: [1,2,*] share a row, [4,5,6] next
    assert split.tokens.tolist() == [[1, 2], [4, 5]]
    with pytest.raises(ValueError, match="more than width=2"):
        pack([[1, 2, 3, 4]], width=2)
