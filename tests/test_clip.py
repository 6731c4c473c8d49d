"""Our CLIP (vision + text towers, projections, CLIPModel) equals transformers' `CLIPModel` on the same random
weights, loaded with `load_hf` from the folder `save_pretrained` wrote.

Variants: a 224-like geometry (image 28 / patch 14 -> 2x2 patches) and a 336-like one (image 42 / patch 14 ->
3x3 patches, paired with the legacy EOS rule like openai/clip-vit-large-patch14-336), which between them cover
both EOS pooling rules of transformers' CLIPTextTransformer (the geometry only touches the vision tower and
the rule only the text tower, so the cross product adds nothing):
  * eos_token_id == 2 (legacy configs such as openai's): pool at argmax(input_ids), the highest id;
  * a real eos id (7 here): pool at the FIRST occurrence of that id.
Texts are right-padded after EOS with an attention mask, one has EOS twice, and one has no EOS at all (both
implementations then pool at position 0).

Tolerance (float32): max abs diff <= 1e-4 on unit-scale outputs (hidden states, pooled output, features);
1e-3 on CLIP logits, which are scaled by exp(logit_scale) = 14.3.  Measured maxima over the variants:
vision hidden states 7.2e-7, pooled 6.0e-7, image features 3.3e-7, text hidden states 1.2e-6, text features
8.3e-7, logits_per_image / logits_per_text 3.3e-6.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import tiny_hf
from tiny_hf import assert_close
from vlmcls_jax.convert import load_hf
from vlmcls_jax.models import CLIPModel

TOL = 1e-4
LOGIT_TOL = 1e-3

# Right-padded texts (pad 0).  Real-eos rule (7): first 7 at 3, 2 (twice), 6, none (-> 0).
# Legacy rule: the highest id, at 2, 1, 5, 5.
IDS = np.array([[1, 5, 9, 7, 2, 0, 0],
                [1, 30, 7, 11, 7, 2, 0],
                [1, 4, 3, 8, 6, 12, 7],
                [1, 4, 3, 8, 6, 13, 5]])
MASK = (IDS != 0).astype(np.int64)
FIRST_EOS_7 = [3, 2, 6, 0]
LEGACY_ARGMAX = [2, 1, 5, 5]


@pytest.fixture(scope="module", params=[(28, 7), (42, 2)], ids=["img28-eos7", "img42-legacy_eos"])
def clip_pair(request, tmp_path_factory):
    """(HF CLIPModel, ours, pixels NHWC, HF outputs with hidden states) for one geometry / EOS rule."""
    image_size, eos = request.param
    folder = tmp_path_factory.mktemp(f"clip{image_size}_{eos}")
    ref = tiny_hf.clip(folder, text={"eos_token_id": eos}, vision={"image_size": image_size})
    ours = load_hf(str(folder))
    assert isinstance(ours, CLIPModel)
    assert ours.config.text_config.eos_token_id == eos and ours.config.vision_config.image_size == image_size
    px = tiny_hf.rand_pixels(2, image_size)
    with torch.no_grad():
        out = ref(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK), pixel_values=tiny_hf.nchw(px),
                  output_hidden_states=True)
        # In transformers 5, CLIPModel.forward returns the towers' outputs with pooler_output overwritten by the
        # projected features, so the unprojected pooled outputs come from the towers themselves.
        out.vision = ref.vision_model(pixel_values=tiny_hf.nchw(px), output_hidden_states=True)
        out.text = ref.text_model(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK))
    return ref, ours, px, out


def test_vision_hidden_states_every_layer(clip_pair):
    ref, ours, px, out = clip_pair
    expected = out.vision_model_output.hidden_states
    for a, b in zip(expected, out.vision.hidden_states):
        assert torch.equal(a, b)
    hidden = ours.vision_model.hidden_states(jnp.asarray(px))
    n_layers, size = ref.config.vision_config.num_hidden_layers, ref.config.vision_config.image_size
    assert len(hidden) == len(expected) == n_layers + 1                    # index 0 = embeddings (pre_layrnorm)
    assert hidden[0].shape == (2, 1 + (size // 14) ** 2, 32)
    for i, (a, b) in enumerate(zip(hidden, expected)):
        assert_close(a, b, TOL, f"vision hidden_states[{i}]")
    # Early stop returns the prefix of the same list (LLaVA runs only up to its feature layer).
    partial = ours.vision_model.hidden_states(jnp.asarray(px), num_layers=1)
    assert len(partial) == 2
    assert_close(partial[1], expected[1], TOL, "vision hidden_states[:2]")


def test_vision_last_state_and_pooled(clip_pair):
    _, ours, px, out = clip_pair
    last, pooled = ours.vision_model(jnp.asarray(px))
    assert_close(last, out.vision_model_output.last_hidden_state, TOL, "vision last_hidden_state")
    assert_close(pooled, out.vision.pooler_output, TOL, "vision pooled (post_layernorm CLS)")


def test_image_features(clip_pair):
    ref, ours, px, out = clip_pair
    with torch.no_grad():
        feats = ref.get_image_features(pixel_values=tiny_hf.nchw(px))
    # transformers 5 returns an output object whose pooler_output holds the projected (unnormalised) embeds.
    expected = feats.pooler_output if hasattr(feats, "pooler_output") else feats
    got = ours.get_image_features(jnp.asarray(px))
    assert got.dtype == jnp.float32 and got.shape == (2, 16)
    assert_close(got, expected, TOL, "image features")
    got = np.asarray(got)
    assert_close(got / np.linalg.norm(got, axis=-1, keepdims=True), out.image_embeds, TOL, "image embeds (normed)")


def test_text_features_and_eos_pooling(clip_pair):
    ref, ours, _, out = clip_pair
    eos = ref.config.text_config.eos_token_id
    with torch.no_grad():
        feats = ref.get_text_features(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK))
    expected = feats.pooler_output if hasattr(feats, "pooler_output") else feats
    got = ours.get_text_features(jnp.asarray(IDS), jnp.asarray(MASK))
    assert_close(got, expected, TOL, f"text features (eos {eos})")
    got = np.asarray(got)
    assert_close(got / np.linalg.norm(got, axis=-1, keepdims=True), out.text_embeds, TOL, "text embeds (normed)")

    last, pooled = ours.text_model(jnp.asarray(IDS), jnp.asarray(MASK))
    real = MASK.astype(bool)
    assert_close(last, out.text.last_hidden_state, TOL, "text last_hidden_state", where=real)
    assert_close(pooled, out.text.pooler_output, TOL, "text pooled")
    # The pooled vector is the final-normed state at the rule's position (not just "close to HF").
    positions = LEGACY_ARGMAX if eos == 2 else FIRST_EOS_7
    np.testing.assert_array_equal(np.asarray(pooled), np.asarray(last)[np.arange(4), positions])


def test_clip_logits(clip_pair):
    _, ours, px, out = clip_pair
    per_image, per_text = ours(jnp.asarray(IDS), jnp.asarray(px), jnp.asarray(MASK))
    assert per_image.shape == (2, 4) and per_text.shape == (4, 2)
    assert_close(per_image, out.logits_per_image, LOGIT_TOL, "logits_per_image")
    assert_close(per_text, out.logits_per_text, LOGIT_TOL, "logits_per_text")


def test_wrong_image_geometry_is_an_error(clip_pair):
    _, ours, px, _ = clip_pair
    with pytest.raises(ValueError, match="NHWC"):
        ours.get_image_features(jnp.asarray(px.transpose(0, 3, 1, 2)))          # NCHW by mistake
    with pytest.raises(ValueError, match="image_size"):
        ours.get_image_features(jnp.zeros((1, 56, 56, 3)))
