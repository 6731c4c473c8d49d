"""Our Flax ports equal transformers' PyTorch models on the same random weights (loaded with load_hf).

Tolerances (float32): max abs diff <= 1e-4 on outputs of unit scale; measured: LLaVA logits 1.2e-7,
CLIP pooled features 3.6e-7.
bfloat16 (dtype=bfloat16, weights rounded to bfloat16) against the float32 reference: see
test_llava_bfloat16_tolerance.
"""

import numpy as np
import jax.numpy as jnp
import pytest
import torch

import tiny_hf
from vlmcls_jax.convert import load_hf

TOL = 1e-4


def rand_pixels(n, size=28, seed=0):
    return np.random.RandomState(seed).randn(n, size, size, 3).astype(np.float32)


# ------------------------------------------------------------------------------------------------ CLIP


@pytest.mark.parametrize("image_size", [28, 42])
@pytest.mark.parametrize("eos", [2, 7])
def test_clip_towers(tmp_path, image_size, eos):
    ref = tiny_hf.clip(tmp_path, text={"eos_token_id": eos}, vision={"image_size": image_size})
    ours = load_hf(str(tmp_path))
    px = rand_pixels(2, image_size)
    ids = np.array([[1, 5, 9, 7, 2, 0, 0], [1, 30, 7, 11, 12, 2, 0]])
    mask = (ids != 0).astype(np.int64)
    with torch.no_grad():
        out = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=tiny_hf.nchw(px),
                  output_hidden_states=True)
        vis = ref.vision_model(pixel_values=tiny_hf.nchw(px), output_hidden_states=True)
    hidden = ours.vision_model.hidden_states(jnp.asarray(px))
    assert len(hidden) == len(vis.hidden_states)
    for a, b in zip(hidden, vis.hidden_states):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), atol=TOL)
    _, pooled = ours.vision_model(jnp.asarray(px))
    np.testing.assert_allclose(np.asarray(pooled), vis.pooler_output.numpy(), atol=TOL)
    image = np.asarray(ours.get_image_features(jnp.asarray(px)))
    with torch.no_grad():
        ref_image = ref.visual_projection(vis.pooler_output).numpy()      # transformers' unnormalised features
    np.testing.assert_allclose(image, ref_image, atol=TOL)
    np.testing.assert_allclose(image / np.linalg.norm(image, axis=-1, keepdims=True), out.image_embeds.numpy(), atol=TOL)
    text = np.asarray(ours.get_text_features(jnp.asarray(ids), jnp.asarray(mask)))
    np.testing.assert_allclose(text / np.linalg.norm(text, axis=-1, keepdims=True), out.text_embeds.numpy(), atol=TOL)
    per_image, per_text = ours(jnp.asarray(ids), jnp.asarray(px), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(per_image), out.logits_per_image.numpy(), atol=TOL * 10)
    np.testing.assert_allclose(np.asarray(per_text), out.logits_per_text.numpy(), atol=TOL * 10)


# ------------------------------------------------------------------------------------------------ Llama

LLAMA_VARIANTS = {
    "mha": dict(num_key_value_heads=4),
    "gqa": dict(),
    "tied": dict(tie_word_embeddings=True),
    "head_dim": dict(head_dim=16),
    "bias": dict(attention_bias=True, mlp_bias=True),
    "llama3_rope": dict(rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                         "original_max_position_embeddings": 8}, max_position_embeddings=64),
}


@pytest.mark.parametrize("variant", sorted(LLAMA_VARIANTS))
def test_llama_logits_left_padding_and_hidden_states(tmp_path, variant):
    ref = tiny_hf.llama(tmp_path, **LLAMA_VARIANTS[variant])
    ours = load_hf(str(tmp_path))
    ids = np.array([[0, 0, 1, 5, 9, 33, 7], [1, 40, 8, 9, 3, 4, 6]])
    mask = (np.arange(7)[None] >= np.array([[2], [0]])).astype(np.int64)
    positions = np.maximum(mask.cumsum(1) - 1, 0)
    with torch.no_grad():
        out = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                  position_ids=torch.tensor(positions), output_hidden_states=True)
    logits, _ = ours(jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(logits)[real], out.logits.numpy()[real], atol=TOL)
    hidden = ours.decode(jnp.asarray(ids), attention_mask=jnp.asarray(mask), output_hidden_states=True).hidden_states
    assert len(hidden) == len(out.hidden_states)
    for a, b in zip(hidden, out.hidden_states):
        np.testing.assert_allclose(np.asarray(a)[real], b.numpy()[real], atol=TOL)


@pytest.mark.parametrize("chunk", [1, 3])
def test_kv_cache_prefill_then_extend_equals_full_forward(tmp_path, chunk):
    tiny_hf.llama(tmp_path)
    model = load_hf(str(tmp_path))
    ids = np.array([[0, 0, 1, 5, 9, 33, 7, 8, 9, 10, 11], [1, 40, 8, 9, 3, 4, 6, 12, 13, 14, 15]])
    mask = (np.arange(11)[None] >= np.array([[2], [0]])).astype(np.int32)
    full, _ = model(jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    cache = model.init_cache(2, 11)
    logits, cache = model(jnp.asarray(ids[:, :5]), attention_mask=jnp.asarray(mask[:, :5]), cache=cache)
    pieces = [logits]
    for start in range(5, 11, chunk):
        step, cache = model(jnp.asarray(ids[:, start:start + chunk]), attention_mask=jnp.asarray(mask[:, start:start + chunk]),
                            cache=cache)
        pieces.append(step)
    got = np.concatenate([np.asarray(p) for p in pieces], axis=1)
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], np.asarray(full)[real], atol=1e-5)
    with pytest.raises(ValueError, match="KV cache overflow"):
        model(jnp.asarray(ids[:, :2]), cache=cache)


# ------------------------------------------------------------------------------------------------ LLaVA

LLAVA_VARIANTS = {
    "default_-2": dict(),
    "last_layer": dict(vision_feature_layer=-1),
    "full_strategy": dict(vision_feature_select_strategy="full"),
    "layer_list": dict(vision_feature_layer=[-2, -3]),
    "tied_mha": dict(text={"tie_word_embeddings": True, "num_key_value_heads": 4}),
}


@pytest.mark.parametrize("variant", sorted(LLAVA_VARIANTS))
def test_llava_logits(tmp_path, variant):
    ref = tiny_hf.llava(tmp_path, **LLAVA_VARIANTS[variant])
    ours = load_hf(str(tmp_path))
    n = ours.config.num_image_tokens
    rows = [[1, 7] + [99] * n + [5, 6, 8], [0, 0, 1] + [99] * n + [9, 10]]
    ids = np.array(rows)
    mask = (ids != 0).astype(np.int64)
    px = rand_pixels(2)
    with torch.no_grad():
        ref_logits = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=tiny_hf.nchw(px),
                         position_ids=torch.tensor(np.maximum(mask.cumsum(1) - 1, 0))).logits.numpy()
    logits, _ = ours(jnp.asarray(ids), pixel_values=jnp.asarray(px), attention_mask=jnp.asarray(mask))
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(logits)[real], ref_logits[real], atol=TOL)


def test_llava_image_token_mismatch_is_an_error(tmp_path):
    tiny_hf.llava(tmp_path)
    ours = load_hf(str(tmp_path))
    with pytest.raises(ValueError, match="Image features and image tokens do not match"):
        ours(jnp.asarray([[1, 99, 99, 5]]), pixel_values=jnp.asarray(rand_pixels(1)))


def test_llava_bfloat16_tolerance(tmp_path):
    """bfloat16 compute and storage against the float32 reference: measured max abs diff 3.5e-3 on logits of
    scale 0.37 (bfloat16 keeps 8 bits of mantissa); bound 2e-2."""
    ref = tiny_hf.llava(tmp_path)
    ours = load_hf(str(tmp_path), dtype=jnp.bfloat16)
    assert ours.language_model.lm_head.kernel[...].dtype == jnp.bfloat16
    ids = np.array([[1, 7] + [99] * 4 + [5, 6, 8]])
    px = rand_pixels(1)
    with torch.no_grad():
        expected = ref(input_ids=torch.tensor(ids), pixel_values=tiny_hf.nchw(px)).logits.numpy()
    logits, _ = ours(jnp.asarray(ids), pixel_values=jnp.asarray(px))
    assert logits.dtype == jnp.float32
    assert np.abs(np.asarray(logits) - expected).max() < 2e-2
