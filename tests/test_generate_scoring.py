"""Greedy generation equals transformers' greedy `generate`; class scoring equals the log-likelihood from
transformers' full forward over prompt + candidate."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import tiny_hf
from vlmcls_jax.convert import load_hf
from vlmcls_jax.inference import generate, score_candidates

IDS = np.array([[0, 0, 1, 99, 99, 99, 99, 5, 6, 7], [1, 99, 99, 99, 99, 8, 9, 10, 11, 12]])
MASK = (IDS != 0).astype(np.int64)
PIXELS = np.random.RandomState(0).randn(2, 28, 28, 3).astype(np.float32)


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llava")
    return tiny_hf.llava(folder), load_hf(str(folder))


def test_batched_left_padded_generation_equals_transformers(llava):
    ref, ours = llava
    with torch.no_grad():
        expected = ref.generate(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK),
                                pixel_values=tiny_hf.nchw(PIXELS), max_new_tokens=12, do_sample=False)[:, 10:]
    got = generate(ours, IDS, MASK, PIXELS, max_new_tokens=12)
    assert got.shape == (2, 12)
    np.testing.assert_array_equal(got, expected.numpy())


def test_generation_stops_at_eos_and_pads_like_transformers(llava):
    ref, ours = llava
    free = generate(ours, IDS, MASK, PIXELS, max_new_tokens=12)
    eos = int(free[0, 3])                                           # a token row 0 emits: make it the EOS
    with torch.no_grad():
        expected = ref.generate(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK),
                                pixel_values=tiny_hf.nchw(PIXELS), max_new_tokens=12, do_sample=False,
                                eos_token_id=eos, pad_token_id=0)[:, 10:].numpy()
    got = generate(ours, IDS, MASK, PIXELS, max_new_tokens=12, eos_token_id=eos, pad_token_id=0)
    n = expected.shape[1]
    np.testing.assert_array_equal(got[:, :n], expected)
    assert (got[:, n:] == 0).all()
    first_eos = list(got[0]).index(eos)
    assert (got[0, first_eos + 1:] == 0).all()


def test_text_only_llama_generation(tmp_path):
    ref = tiny_hf.llama(tmp_path)
    ours = load_hf(str(tmp_path))
    ids = np.array([[0, 1, 5, 9], [1, 3, 4, 6]])
    mask = (ids != 0).astype(np.int64)
    with torch.no_grad():
        expected = ref.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=8,
                                do_sample=False)[:, 4:]
    np.testing.assert_array_equal(generate(ours, ids, mask, max_new_tokens=8), expected.numpy())


def test_right_padding_is_refused(llava):
    _, ours = llava
    with pytest.raises(ValueError, match="left-padded"):
        generate(ours, IDS[:, ::-1], MASK[:, ::-1], PIXELS, max_new_tokens=2)


def test_bfloat16_generation_runs(tmp_path):
    tiny_hf.llava(tmp_path)
    ours = load_hf(str(tmp_path), dtype=jnp.bfloat16)
    assert generate(ours, IDS, MASK, PIXELS, max_new_tokens=4).shape == (2, 4)


CANDIDATES = [[5], [6, 7], [8, 9, 10], [11, 12, 13, 14], [20], [21, 22]]


def reference_scores(ref, candidates):
    out = np.zeros((2, len(candidates)), np.float32)
    for c, cand in enumerate(candidates):
        ids = np.concatenate([IDS, np.tile(cand, (2, 1))], 1)
        mask = np.concatenate([MASK, np.ones((2, len(cand)), np.int64)], 1)
        with torch.no_grad():
            logp = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=tiny_hf.nchw(PIXELS),
                       position_ids=torch.tensor(np.maximum(mask.cumsum(1) - 1, 0))).logits.log_softmax(-1).numpy()
        out[:, c] = sum(logp[:, IDS.shape[1] + j - 1, t] for j, t in enumerate(cand))
    return out


@pytest.mark.parametrize("chunk_size", [2, 4, 128])
def test_scores_equal_full_forward_log_likelihoods(llava, chunk_size):
    ref, ours = llava
    scores, lengths = score_candidates(ours, IDS, MASK, CANDIDATES, PIXELS, chunk_size=chunk_size)
    assert lengths.tolist() == [len(c) for c in CANDIDATES]
    np.testing.assert_allclose(scores, reference_scores(ref, CANDIDATES), atol=1e-4)


def test_empty_candidate_is_refused(llava):
    with pytest.raises(ValueError, match="at least one token"):
        score_candidates(llava[1], IDS, MASK, [[5], []], PIXELS)
