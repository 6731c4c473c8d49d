"""Greedy `generate` equals transformers' greedy `generate(do_sample=False)` on the same weights.

Reference models are tiny random transformers models saved with `save_pretrained` and converted with
`load_hf` (the path users take).  Prompts are batched, of different lengths and left-padded.
"""

from __future__ import annotations

import copy
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from vlmcls_jax.convert import load_hf
from vlmcls_jax.inference import generate

PAD, BOS, EOS, IMAGE = 0, 1, 2, 63
N_IMG = 4                                   # (28 / 14)^2 patches, CLS dropped ("default" strategy)
TEXT = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=28,
              patch_size=14, projection_dim=16)
MAX_NEW = 10
NEVER = 1000                                # an EOS id outside the vocabulary: never emitted


def left_padded(rows, pad=PAD):
    T = max(map(len, rows))
    ids = np.array([[pad] * (T - len(r)) + list(r) for r in rows], np.int64)
    mask = np.array([[0] * (T - len(r)) + [1] * len(r) for r in rows], np.int64)
    return ids, mask


# Three prompts of different lengths, each with one image (N_IMG image tokens), left-padded.
LLAVA_ROWS = [[BOS, 5, *[IMAGE] * N_IMG, 7, 8],
              [BOS, *[IMAGE] * N_IMG, 9, 10, 11, 12, 13, 14],
              [BOS, 20, 21, *[IMAGE] * N_IMG, 22, 23]]
IDS, MASK = left_padded(LLAVA_ROWS)
PIXELS = np.random.RandomState(0).randn(3, 28, 28, 3).astype(np.float32)
TEXT_ROWS = [[BOS, 3, 4], [BOS, 5, 6, 7, 8, 9, 10], [BOS, 30, 31, 32, 33]]


def hf_greedy(ref, ids, mask, pixels=None, *, max_new_tokens, eos=EOS, pad=PAD):
    """transformers' greedy decoding with the given eos/pad in its generation config; the new tokens only."""
    gen = copy.deepcopy(ref.generation_config)
    gen.update(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad,
               bos_token_id=BOS)
    kwargs = {} if pixels is None else {"pixel_values": torch.tensor(pixels.transpose(0, 3, 1, 2))}
    with torch.no_grad():
        out = ref.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), generation_config=gen,
                           **kwargs)
    return out[:, ids.shape[1]:].numpy()


def assert_matches_hf(got, expected, pad=PAD):
    """Our [B, N] tokens vs HF's [B, n <= N]: first n equal, the rest (after every row finished) are pad."""
    n = expected.shape[1]
    assert n <= got.shape[1]
    np.testing.assert_array_equal(got[:, :n], expected)
    assert (got[:, n:] == pad).all(), got


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_llava")
    torch.manual_seed(0)
    cfg = transformers.LlavaConfig(vision_config=transformers.CLIPVisionConfig(**VISION),
                                   text_config=transformers.LlamaConfig(**TEXT), image_token_index=IMAGE)
    ref = transformers.LlavaForConditionalGeneration(cfg).eval()
    ref.save_pretrained(folder)
    return ref, load_hf(str(folder)), str(folder)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_llama")
    torch.manual_seed(1)
    ref = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TEXT)).eval()
    ref.save_pretrained(folder)
    return ref, load_hf(str(folder))


@pytest.fixture(scope="module")
def llava_free(llava):
    """Our greedy tokens for the LLaVA batch, eos/pad from the model's config (this seed never emits EOS)."""
    _, ours, _ = llava
    got = generate(ours, IDS, MASK, PIXELS, max_new_tokens=MAX_NEW)
    assert EOS not in got, f"the seed changed: EOS {EOS} emitted in {got.tolist()}"
    return got


@pytest.fixture(scope="module")
def llama_free(llama):
    _, ours = llama
    ids, mask = left_padded(TEXT_ROWS)
    got = generate(ours, ids, mask, max_new_tokens=MAX_NEW)
    assert EOS not in got, f"the seed changed: EOS {EOS} emitted in {got.tolist()}"
    return got


def test_llava_batched_left_padded_equals_transformers(llava, llava_free):
    """3 prompts of different lengths, left-padded, one image each; no EOS emitted, so HF runs all MAX_NEW
    steps and the whole [B, MAX_NEW] block must match."""
    ref, _, _ = llava
    assert len(set(MASK.sum(1).tolist())) == 3 and not MASK[:, 0].all()       # really ragged, left-padded
    assert llava_free.shape == (3, MAX_NEW) and llava_free.dtype == np.int32
    expected = hf_greedy(ref, IDS, MASK, PIXELS, max_new_tokens=MAX_NEW)
    assert expected.shape == (3, MAX_NEW)
    np.testing.assert_array_equal(llava_free, expected)


def test_llava_padded_row_equals_unbatched_row(llava, llava_free):
    """Left padding changes nothing: row 0 (3 pads in the batch) generated alone gives the batched tokens."""
    _, ours, _ = llava
    ids, mask = left_padded(LLAVA_ROWS[:1])
    alone = generate(ours, ids, mask, PIXELS[:1], max_new_tokens=MAX_NEW)
    np.testing.assert_array_equal(alone[0], llava_free[0])


def test_text_only_llama_equals_transformers(llama, llama_free):
    ref, _ = llama
    ids, mask = left_padded(TEXT_ROWS)
    assert llama_free.shape == (3, MAX_NEW)
    expected = hf_greedy(ref, ids, mask, max_new_tokens=MAX_NEW)
    assert expected.shape == (3, MAX_NEW)
    np.testing.assert_array_equal(llama_free, expected)


def test_config_pad_token_id_zero_fills_finished_rows(llama, llama_free):
    """The config's pad_token_id (0 here, as in many checkpoints) fills rows after EOS when the caller passes
    no pad id, as transformers does with the generation config's pad_token_id = 0."""
    ref, ours = llama
    ids, mask = left_padded(TEXT_ROWS)
    eos = int(llama_free[0, 1])
    assert ours.config.pad_token_id == PAD == 0
    got = generate(ours, ids, mask, max_new_tokens=MAX_NEW, eos_token_id=eos)       # pad from the config
    stop = list(got[0]).index(eos)
    assert stop + 1 < MAX_NEW
    assert (got[0, stop + 1:] == PAD).all(), f"row 0 after EOS {eos}: {got[0, stop + 1:].tolist()}, want pad {PAD}"
    assert_matches_hf(got, hf_greedy(ref, ids, mask, max_new_tokens=MAX_NEW, eos=eos, pad=PAD))


def test_one_row_hits_eos_early(llava, llava_free):
    """EOS = a token row 0 greedily emits early.  Our row is pad after its EOS; HF stops once every row has
    finished, so its output may be shorter: our first HF-length tokens match it and the rest are pad."""
    ref, ours, _ = llava
    # A token that row 0 emits at step <= 2 and that some other row does not emit before the end, so at
    # least one row keeps going after row 0 stops.
    choice = [t for t in llava_free[0, :3]
              if any(t not in llava_free[b] for b in range(1, 3))]
    if not choice:
        pytest.skip(f"no suitable eos in {llava_free.tolist()}")
    eos = int(choice[0])
    pad = 62 if eos != 62 else 61
    stop = list(llava_free[0]).index(eos)                                     # row 0's EOS step
    got = generate(ours, IDS, MASK, PIXELS, max_new_tokens=MAX_NEW, eos_token_id=eos, pad_token_id=pad)
    expected = hf_greedy(ref, IDS, MASK, PIXELS, max_new_tokens=MAX_NEW, eos=eos, pad=pad)
    assert_matches_hf(got, expected, pad=pad)
    np.testing.assert_array_equal(got[0, :stop + 1], llava_free[0, :stop + 1])   # EOS itself is kept
    assert (got[0, stop + 1:] == pad).all()
    assert stop + 1 < MAX_NEW                                                  # row 0 really stopped early
    for b in (1, 2):                                                           # unfinished rows run on
        if eos not in llava_free[b]:
            np.testing.assert_array_equal(got[b], llava_free[b])


def test_all_rows_hit_eos_stops_like_transformers(llava, llava_free):
    """EOS = a token every row emits early: HF returns fewer than MAX_NEW tokens; ours pads up to MAX_NEW.
    Rows 0 and 2 of the batch (both left-padded) are used: with this seed they share an early token."""
    ref, ours, _ = llava
    rows = [0, 2]
    common = [t for t in llava_free[rows[0], : MAX_NEW - 2] if all(t in llava_free[b, : MAX_NEW - 2] for b in rows)]
    if not common:
        pytest.skip(f"no token emitted early by rows {rows} in {llava_free.tolist()}")
    eos = int(common[0])
    ids, mask = IDS[rows], MASK[rows]
    # EOS given as a list (Llama-3 style), one id never emitted: the first EOS a row emits ends it.
    got = generate(ours, ids, mask, PIXELS[rows], max_new_tokens=MAX_NEW, eos_token_id=[NEVER, eos], pad_token_id=PAD)
    expected = hf_greedy(ref, ids, mask, PIXELS[rows], max_new_tokens=MAX_NEW, eos=[NEVER, eos], pad=PAD)
    assert expected.shape[1] < MAX_NEW
    assert_matches_hf(got, expected)
    for i, b in enumerate(rows):
        stop = list(llava_free[b]).index(eos)
        np.testing.assert_array_equal(got[i, :stop + 1], llava_free[b, :stop + 1])
        assert (got[i, stop + 1:] == PAD).all()


def test_bfloat16_runs_with_right_shape(llava, llava_free):
    """bf16 compute: runs and returns [B, max_new_tokens]; token agreement with float32 HF is only reported
    (VLMCLS_PRINT_DIFFS=1 pytest -s), not required."""
    ref, _, folder = llava
    ours16 = load_hf(folder, dtype=jnp.bfloat16)
    got = generate(ours16, IDS, MASK, PIXELS, max_new_tokens=MAX_NEW)
    assert got.shape == (3, MAX_NEW) and got.dtype == np.int32
    assert ((got >= 0) & (got < TEXT["vocab_size"])).all()
    expected = hf_greedy(ref, IDS, MASK, PIXELS, max_new_tokens=MAX_NEW)          # float32, no EOS emitted
    same = int((got == expected).sum())
    prefix = [int(np.argmin(np.r_[got[b] == expected[b], False])) for b in range(3)]
    msg = f"bf16 vs float32 HF: {same}/{got.size} tokens equal, equal prefix lengths per row {prefix}"
    if os.environ.get("VLMCLS_PRINT_DIFFS"):
        print("\n" + msg)


def test_right_padding_raises(llava):
    _, ours, _ = llava
    ids, mask = left_padded(LLAVA_ROWS)
    right_ids = np.array([r + [PAD] * (ids.shape[1] - len(r)) for r in LLAVA_ROWS])
    right_mask = mask[:, ::-1].copy()
    with pytest.raises(ValueError, match="left-padded"):
        generate(ours, right_ids, right_mask, PIXELS, max_new_tokens=2)
