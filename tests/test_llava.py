"""Our `LlavaForConditionalGeneration` equals transformers' on the same random weights (loaded with `load_hf`).

Variants: vision_feature_layer -2 (the default), -1, 0 (the embedding output; transformers 5.24 handles it
only when hidden states are requested, see test_image_features), the list [-2, -3] (features concatenated
along the width), select strategy "default" (drop CLS) and "full" (keep it: `cfg.num_image_tokens` =
patches + 1), text towers with GQA (2 kv heads for 4 heads; the default here) and with tied embeddings + MHA.
Inputs: a batch of 2 images, one row left-padded, HF given our default positions (cumsum(mask) - 1); only
real positions are compared.

Tolerance (float32): max abs diff <= 1e-4 on logits and decoder hidden states (scale ~0.4-1); 1e-6 on the
projector's image features, whose scale is only ~0.02 here.  Measured maxima over the variants: logits 1.8e-7,
image features 5.8e-9, decoder hidden states 1.1e-6.
bfloat16: see test_bfloat16_against_float32_reference.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import tiny_hf
from tiny_hf import assert_close
from vlmcls_jax.convert import load_hf
from vlmcls_jax.models import LlavaForConditionalGeneration

TOL = 1e-4
FEATURE_TOL = 1e-6
IMG = 99                                                      # tiny_hf's image_token_index

VARIANTS = {
    "layer-2": dict(),
    "layer-1": dict(vision_feature_layer=-1),
    "layer0": dict(vision_feature_layer=0),
    "layers[-2,-3]": dict(vision_feature_layer=[-2, -3]),
    "full": dict(vision_feature_select_strategy="full"),
    "layers[-1,0]-full": dict(vision_feature_layer=[-1, 0], vision_feature_select_strategy="full"),
    "tied-mha": dict(text={"tie_word_embeddings": True, "num_key_value_heads": 4}),
}


def two_image_batch(n):
    """Row 0 full, row 1 left-padded by 2; each row holds one image's n tokens."""
    return tiny_hf.left_padded([[1, 7] + [IMG] * n + [5, 6, 8], [1] + [IMG] * n + [9, 10]])


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def llava_pair(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("llava")
    ref = tiny_hf.llava(folder, **VARIANTS[request.param])
    ours = load_hf(str(folder))
    assert isinstance(ours, LlavaForConditionalGeneration)
    return request.param, ref, ours


def test_config(llava_pair):
    variant, ref, ours = llava_pair
    cfg = ours.config
    layer = ref.config.vision_feature_layer
    assert cfg.feature_layers == ((layer,) if isinstance(layer, int) else tuple(layer))
    assert cfg.vision_feature_select_strategy == ref.config.vision_feature_select_strategy
    assert cfg.num_image_tokens == 4 + (cfg.vision_feature_select_strategy == "full")      # 2x2 patches (+ CLS)
    assert ours.multi_modal_projector.linear_1.kernel.shape == (32 * len(cfg.feature_layers), 32)
    assert (ours.language_model.lm_head is None) == ref.config.text_config.tie_word_embeddings


def test_image_features(llava_pair):
    variant, ref, ours = llava_pair
    px = tiny_hf.rand_pixels(2)
    with torch.no_grad():
        # output_hidden_states=True: transformers 5.24 otherwise captures only the feature layers, and layer 0
        # reads as "capture none" (hidden_states None -> TypeError inside HF).
        out = ref.get_image_features(pixel_values=tiny_hf.nchw(px), output_hidden_states=True)
    # transformers 5: an output object whose pooler_output is a list of per-image [N, D] features.
    feats = out.pooler_output if hasattr(out, "pooler_output") else out
    expected = torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats
    got = ours.get_image_features(jnp.asarray(px))
    assert got.shape == (2, ours.config.num_image_tokens, 32)
    assert_close(got, expected, FEATURE_TOL, f"{variant} image features")


def test_logits_and_hidden_states_left_padded(llava_pair):
    variant, ref, ours = llava_pair
    ids, mask = two_image_batch(ours.config.num_image_tokens)
    px = tiny_hf.rand_pixels(2)
    with torch.no_grad():
        out = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=tiny_hf.nchw(px),
                  position_ids=torch.tensor(tiny_hf.hf_positions(mask)), output_hidden_states=True)
    real = mask.astype(bool)
    logits, cache = ours(jnp.asarray(ids), pixel_values=jnp.asarray(px), attention_mask=jnp.asarray(mask))
    assert cache is None and logits.dtype == jnp.float32
    assert_close(logits, out.logits, TOL, f"{variant} logits", where=real)
    hidden = ours.decode(jnp.asarray(ids), pixel_values=jnp.asarray(px), attention_mask=jnp.asarray(mask),
                         output_hidden_states=True).hidden_states
    assert len(hidden) == len(out.hidden_states) == 3
    for i, (a, b) in enumerate(zip(hidden, out.hidden_states)):
        assert_close(a, b, TOL, f"{variant} decoder hidden_states[{i}]", where=real)


# -------------------------------------------------------------------------- image placement and errors

@pytest.fixture(scope="module")
def default_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llava_default")
    return tiny_hf.llava(folder), load_hf(str(folder)), folder


def test_images_fill_image_tokens_in_order_when_not_one_per_row(default_pair):
    """B_img != B: images fill the image positions in order across the batch (transformers' rule): here row 0
    holds two images back to back and row 1 (left-padded) the third."""
    ref, ours, _ = default_pair
    ids, mask = tiny_hf.left_padded([[1] + [IMG] * 8, [1, 7] + [IMG] * 4 + [9]])
    px = tiny_hf.rand_pixels(3, seed=1)
    with torch.no_grad():
        expected = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=tiny_hf.nchw(px),
                       position_ids=torch.tensor(tiny_hf.hf_positions(mask))).logits
    logits, _ = ours(jnp.asarray(ids), pixel_values=jnp.asarray(px), attention_mask=jnp.asarray(mask))
    assert_close(logits, expected, TOL, "3 images over 2 rows", where=mask.astype(bool))


def test_text_only_rows(default_pair):
    """No pixel_values: a plain language-model forward.  And with B_img == B (our documented extension of
    HF's rule), row b takes image b, and a row without image tokens ignores its image."""
    ref, ours, _ = default_pair
    ids, mask = tiny_hf.left_padded([[1, 7, 5, 6, 8, 9, 10, 11, 12], [1, 9, 10, 11, 13]])
    with torch.no_grad():
        expected = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                       position_ids=torch.tensor(tiny_hf.hf_positions(mask))).logits
    logits, _ = ours(jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    assert_close(logits, expected, TOL, "text-only logits", where=mask.astype(bool))

    ids, mask = two_image_batch(4)
    ids[1], mask[1] = [1, 9, 10, 11, 12, 13, 14, 15, 16], 1                     # row 1 now has no image tokens
    px = tiny_hf.rand_pixels(2)
    logits, _ = ours(jnp.asarray(ids), pixel_values=jnp.asarray(px), attention_mask=jnp.asarray(mask))
    other = px.copy()
    other[1] = tiny_hf.rand_pixels(1, seed=5)[0]
    again, _ = ours(jnp.asarray(ids), pixel_values=jnp.asarray(other), attention_mask=jnp.asarray(mask))
    np.testing.assert_array_equal(np.asarray(again), np.asarray(logits))
    with torch.no_grad():                                      # HF, given only row 0's image, agrees on row 0
        expected = ref(input_ids=torch.tensor(ids[:1]), pixel_values=tiny_hf.nchw(px[:1])).logits
    assert_close(np.asarray(logits)[:1], expected, TOL, "image row next to a text-only row")


def test_mismatch_between_image_tokens_and_images_is_an_error(default_pair):
    _, ours, _ = default_pair
    ids, mask = two_image_batch(4)
    ids[1, -5] = 9                                                            # row 1: 3 image tokens, not 4
    with pytest.raises(ValueError, match=r"Image features and image tokens do not match: rows have \[4, 3\] "
                                         "image tokens; each must have 0 or 4"):
        ours(jnp.asarray(ids), pixel_values=jnp.asarray(tiny_hf.rand_pixels(2)), attention_mask=jnp.asarray(mask))
    ids, mask = two_image_batch(4)                                            # 8 image tokens, 3 images
    with pytest.raises(ValueError, match="Image features and image tokens do not match: 8 image tokens"):
        ours(jnp.asarray(ids), pixel_values=jnp.asarray(tiny_hf.rand_pixels(3)), attention_mask=jnp.asarray(mask))


def test_image_tokens_without_pixels_embed_like_transformers(default_pair):
    ref, ours, _ = default_pair
    ids = np.array([[1, 7, IMG, IMG, 5, 6, 8, 9, 10]] * 2)
    with torch.no_grad():
        expected = ref(input_ids=torch.tensor(ids)).logits
    assert_close(ours(jnp.asarray(ids))[0], expected, TOL, "image tokens without pixels")


@pytest.mark.parametrize("layer", [4, -5, [-2, 4]])          # the tower has 3 layers: valid indices -4..3
def test_out_of_range_feature_layer_is_an_error(default_pair, layer):
    """transformers raises IndexError; a modulo would silently pick another layer."""
    _, ours, _ = default_pair
    with pytest.raises(ValueError, match="out of range"):
        dataclasses.replace(ours.config, vision_feature_layer=layer)
    dataclasses.replace(ours.config, vision_feature_layer=-4)                # hidden_states[0]: valid


# ------------------------------------------------------------------------------------------------ bfloat16

def test_bfloat16_against_float32_reference(default_pair):
    """dtype=bfloat16 (bf16 weights and compute, float32 norms/softmax/accumulation) against the float32 HF
    model on the left-padded 2-image batch.  Logits have max |value| 0.43; measured max abs diff 3.9e-3
    (bfloat16 keeps 8 mantissa bits: 2^-9 relative rounding per op); bound 1.5e-2 (~4x).
    param_dtype=bfloat16 with float32 compute (weights rounded only): measured 2.1e-3, bound 5e-3 (~2.4x)."""
    ref, _, folder = default_pair
    ids, mask = two_image_batch(4)
    px = tiny_hf.rand_pixels(2)
    with torch.no_grad():
        expected = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=tiny_hf.nchw(px),
                       position_ids=torch.tensor(tiny_hf.hf_positions(mask))).logits
    real = mask.astype(bool)

    bf16 = load_hf(str(folder), dtype=jnp.bfloat16)
    assert bf16.language_model.lm_head.kernel[...].dtype == jnp.bfloat16
    assert bf16.vision_tower.embeddings.patch_embedding[...].dtype == jnp.bfloat16
    logits, _ = bf16(jnp.asarray(ids), pixel_values=jnp.asarray(px), attention_mask=jnp.asarray(mask))
    assert logits.dtype == jnp.float32
    assert_close(logits, expected, 1.5e-2, "bfloat16 logits vs float32 HF", where=real)

    stored = load_hf(str(folder), dtype=jnp.float32, param_dtype=jnp.bfloat16)
    assert stored.language_model.lm_head.kernel[...].dtype == jnp.bfloat16
    logits, _ = stored(jnp.asarray(ids), pixel_values=jnp.asarray(px), attention_mask=jnp.asarray(mask))
    assert_close(logits, expected, 5e-3, "bfloat16 params, float32 compute vs float32 HF", where=real)
