"""Our `LlamaForCausalLM` equals transformers' on the same random weights (loaded with `load_hf`).

Variants: MHA, GQA (2 kv heads for 4 heads; the default here), tied embeddings, attention + MLP biases on
(biases off is every other variant), llama3 rope scaling (`rope_parameters` with rope_type "llama3"), and an
explicit head_dim (16) different from hidden_size / heads (8).

Left padding: our default positions count real tokens only (cumsum(mask) - 1, clamped at 0), as HF's
`generate` does, so HF gets those `position_ids` explicitly; only real (non-pad) positions are compared.

Hidden states: HF's `output_hidden_states` is (embeddings, after layer 1, ..., after layer L-1, final-normed
output): the LAST entry is after the final RMSNorm (it equals `last_hidden_state`), not the raw output of
layer L.  Ours follow the same convention.

Tolerance (float32): max abs diff <= 1e-4 (logits of scale ~0.4); measured maxima over the variants:
logits 1.8e-7, hidden states 7.2e-7.  KV cache vs full forward (both ours): measured 7.4e-8, bound 1e-5.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

import tiny_hf
from tiny_hf import assert_close
from vlmcls_jax.convert import load_hf
from vlmcls_jax.models import LlamaForCausalLM
from vlmcls_jax.models.llama import inv_freq

TOL = 1e-4
CACHE_TOL = 1e-5

LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8}
VARIANTS = {
    "mha": dict(num_key_value_heads=4),
    "gqa": dict(),
    "tied": dict(tie_word_embeddings=True),
    "bias": dict(attention_bias=True, mlp_bias=True),
    "llama3_rope": dict(rope_parameters=LLAMA3_ROPE, max_position_embeddings=64),
    "head_dim": dict(head_dim=16, num_key_value_heads=1),
}

# Two left-padded rows (2 pads) and one full row.
IDS, MASK = tiny_hf.left_padded([[1, 5, 9, 33, 7], [1, 40, 8, 9, 3, 4, 6], [1, 17, 23, 8, 50, 61, 2]])
REAL = MASK.astype(bool)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def llama_pair(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    ref = tiny_hf.llama(folder, **VARIANTS[request.param])
    ours = load_hf(str(folder))
    assert isinstance(ours, LlamaForCausalLM)
    return request.param, ref, ours


def test_config_and_rotary_frequencies(llama_pair):
    variant, ref, ours = llama_pair
    cfg = ours.config
    assert (cfg.num_key_value_heads, cfg.head_size) == (ref.config.num_key_value_heads, ref.config.head_dim)
    assert (ours.lm_head is None) == (variant == "tied")
    assert (ours.model.layers[0].self_attn.q_proj.bias is not None) == (variant == "bias")
    assert (ours.model.layers[0].mlp.up_proj.bias is not None) == (variant == "bias")
    if variant == "llama3_rope":
        assert cfg.rope_scaling["rope_type"] == "llama3" and cfg.rope_theta == 500000.0
    np.testing.assert_allclose(inv_freq(cfg), ref.model.rotary_emb.inv_freq.numpy(), rtol=1e-6)


def test_logits_left_padded(llama_pair):
    variant, ref, ours = llama_pair
    with torch.no_grad():
        expected = ref(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK),
                       position_ids=torch.tensor(tiny_hf.hf_positions(MASK))).logits
    logits, cache = ours(jnp.asarray(IDS), attention_mask=jnp.asarray(MASK))
    assert cache is None and logits.dtype == jnp.float32 and logits.shape == (3, 7, 100)
    assert_close(logits, expected, TOL, f"{variant} logits (left-padded)", where=REAL)


def test_logits_without_mask_and_explicit_positions(llama_pair):
    variant, ref, ours = llama_pair
    shifted = tiny_hf.hf_positions(MASK) + 40                                  # past the llama3 original window
    with torch.no_grad():
        plain = ref(input_ids=torch.tensor(IDS)).logits                         # every token real, positions 0..6
        expected = ref(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK),
                       position_ids=torch.tensor(shifted)).logits
    assert_close(ours(jnp.asarray(IDS))[0], plain, TOL, f"{variant} logits (no mask)")
    got = ours(jnp.asarray(IDS), attention_mask=jnp.asarray(MASK), positions=jnp.asarray(shifted))[0]
    assert_close(got, expected, TOL, f"{variant} logits (explicit positions)", where=REAL)


def test_hidden_states(llama_pair):
    variant, ref, ours = llama_pair
    with torch.no_grad():
        out = ref.model(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK),
                        position_ids=torch.tensor(tiny_hf.hf_positions(MASK)), output_hidden_states=True)
    # HF convention: L + 1 entries, the last one after the final norm (== last_hidden_state).
    assert len(out.hidden_states) == ref.config.num_hidden_layers + 1
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    dec = ours.model(ours.embed(jnp.asarray(IDS)), attention_mask=jnp.asarray(MASK), output_hidden_states=True)
    assert len(dec.hidden_states) == len(out.hidden_states)
    np.testing.assert_array_equal(np.asarray(dec.hidden_states[-1]), np.asarray(dec.hidden))
    for i, (a, b) in enumerate(zip(dec.hidden_states, out.hidden_states)):
        assert_close(a, b, TOL, f"{variant} hidden_states[{i}]", where=REAL)
    assert ours.model(ours.embed(jnp.asarray(IDS)), attention_mask=jnp.asarray(MASK)).hidden_states == ()
    # decode() is the same computation.
    again = ours.decode(jnp.asarray(IDS), attention_mask=jnp.asarray(MASK), output_hidden_states=True)
    np.testing.assert_array_equal(np.asarray(again.hidden), np.asarray(dec.hidden))


def test_mistral_without_sliding_window(tmp_path):
    """model_type "mistral" loads as our Llama (full attention); a real sliding window is refused."""
    torch.manual_seed(0)
    ref = transformers.MistralForCausalLM(transformers.MistralConfig(**{**tiny_hf.TEXT, "sliding_window": None})).eval()
    ref.save_pretrained(tmp_path / "full")
    ours = load_hf(str(tmp_path / "full"))
    with torch.no_grad():
        expected = ref(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK),
                       position_ids=torch.tensor(tiny_hf.hf_positions(MASK))).logits
    logits, _ = ours(jnp.asarray(IDS), attention_mask=jnp.asarray(MASK))
    assert_close(logits, expected, TOL, "mistral logits", where=REAL)
    transformers.MistralConfig(**{**tiny_hf.TEXT, "sliding_window": 4}).save_pretrained(tmp_path / "window")
    with pytest.raises(ValueError, match="sliding_window=4 is not supported"):
        load_hf(str(tmp_path / "window"))


# ------------------------------------------------------------------------------------------------ KV cache

@pytest.fixture(scope="module")
def cache_model(tmp_path_factory):
    """GQA with one kv head and head_dim 16 != 32 / 4, so the cache layout [B, K, S, H] is not square."""
    folder = tmp_path_factory.mktemp("cache")
    tiny_hf.llama(folder, **VARIANTS["head_dim"])
    return load_hf(str(folder))


CACHE_IDS, CACHE_MASK = tiny_hf.left_padded([[1, 5, 9, 33, 7, 8, 9, 10, 11], [1, 40, 8, 9, 3, 4, 6, 12, 13, 14, 15]])


@nnx.jit
def step(model, ids, mask, cache):
    return model(ids, attention_mask=mask, cache=cache)


@pytest.mark.parametrize("padded", [True, False], ids=["left_padded_batch", "one_row"])
@pytest.mark.parametrize("chunk", [1, 3])
def test_kv_cache_prefill_then_extend_equals_full_forward(cache_model, chunk, padded):
    """Prefill 5 slots, then extend `chunk` tokens at a time up to 11: the logits equal the full forward's
    (both ours; HF agreement of the full forward is checked above).  Steps run under jit, as in generation."""
    model = cache_model
    ids, mask = (CACHE_IDS, CACHE_MASK) if padded else (CACHE_IDS[1:], CACHE_MASK[1:])
    B, T = ids.shape
    full, _ = model(jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    cache = model.init_cache(B, T)
    assert cache.keys[0].shape == (B, 1, T, 16)          # [B, K, S, H]: heads before slots (kv_cache.py)
    logits, cache = step(model, jnp.asarray(ids[:, :5]), jnp.asarray(mask[:, :5]), cache)
    pieces = [logits]
    for start in range(5, T, chunk):
        out, cache = step(model, jnp.asarray(ids[:, start:start + chunk]), jnp.asarray(mask[:, start:start + chunk]),
                          cache)
        pieces.append(out)
    assert int(cache.end) == T
    np.testing.assert_array_equal(np.asarray(cache.valid), mask.astype(bool))
    got = np.concatenate([np.asarray(p) for p in pieces], axis=1)
    assert_close(got, np.asarray(full), CACHE_TOL, f"cache chunk={chunk} padded={padded}", where=mask.astype(bool))
    with pytest.raises(ValueError, match="KV cache overflow"):                # checked eagerly (outside jit)
        model(jnp.asarray(ids[:, :1]), cache=cache)


def test_kv_cache_extension_without_mask(cache_model):
    """Default positions under a cache continue from the real-token count of the whole cache."""
    model, ids, mask = cache_model, CACHE_IDS, CACHE_MASK
    cache = model.init_cache(2, ids.shape[1])
    _, cache = step(model, jnp.asarray(ids[:, :6]), jnp.asarray(mask[:, :6]), cache)
    out, _ = step(model, jnp.asarray(ids[:, 6:]), None, cache)               # no mask: all new tokens real
    full, _ = model(jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    assert_close(out, np.asarray(full)[:, 6:], CACHE_TOL, "cache, maskless extension")
