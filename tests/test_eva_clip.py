"""EVA01-CLIP against open_clip itself: a tiny random model of EVA01-g-14-plus's form built by open_clip (timm's
EVA trunk, open_clip's text transformer), saved in the hub's open_clip safetensors layout, loaded by `load_hf`;
image / text features and logits compared.  Full-size presets: parameter counts equal open_clip's model built
on the meta device from its own EVA01 configs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import tiny_open_clip
from tiny_hf import assert_close, nchw, rand_pixels
from vlmcls_jax.convert import abstract_model, load_hf, openclip
from vlmcls_jax.models.eva_clip import EvaCLIPModel
from vlmcls_jax.models.presets import OPEN_CLIP_PRESETS, preset

TOL = 1e-4   # float32 outputs of unit scale, as the other ports (tests/test_clip.py)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(open_clip model, its folder) with the tiny trunk known to our converter as well."""
    cfg = tiny_open_clip.model_cfg()
    trunk = tiny_open_clip.TINY_TRUNK
    openclip.TIMM_EVA01[cfg["vision_cfg"]["timm_model_name"]] = openclip.EvaTrunk(
        hidden_size=trunk["embed_dim"], num_hidden_layers=trunk["depth"], num_attention_heads=trunk["num_heads"],
        intermediate_size=int(trunk["embed_dim"] * trunk["mlp_ratio"]), patch_size=trunk["patch_size"],
        image_size=trunk["img_size"])
    model = tiny_open_clip.build(cfg)
    folder = tiny_open_clip.save(model, cfg, tmp_path_factory.mktemp("evaclip") / "tiny")
    yield model, folder
    del openclip.TIMM_EVA01[cfg["vision_cfg"]["timm_model_name"]]


def _texts(vocab: int, context: int, lengths=(3, 9, 16)):
    """open_clip-style ids: random tokens, the end-of-text id (the vocabulary's highest) last, zeros after."""
    rng = np.random.default_rng(1)
    ids = np.zeros((len(lengths), context), np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n - 1] = rng.integers(1, vocab - 1, n - 1)
        ids[row, n - 1] = vocab - 1
    return ids, (np.arange(context)[None] < np.array(lengths)[:, None]).astype(np.int32)


def test_features_and_logits_equal_open_clip(tiny):
    ref, folder = tiny
    ours = load_hf(str(folder))
    assert isinstance(ours, EvaCLIPModel)
    cfg = ours.config
    assert cfg.vision_config.separate_qv_bias and cfg.text_config.hidden_act == "gelu"
    px = rand_pixels(2, size=28, seed=3)
    ids, mask = _texts(64, 16)
    with torch.no_grad():
        want_img = ref.encode_image(nchw(px)).numpy()
        want_txt = ref.encode_text(torch.from_numpy(ids)).numpy()
        img_n, txt_n, scale = ref(nchw(px), torch.from_numpy(ids))
        want_logits = (scale * img_n @ txt_n.T).numpy()
    assert_close(ours.get_image_features(jnp.asarray(px)), want_img, TOL, "image features")
    # With the tokenizer's attention mask, and without one (open_clip has none: causal attention alone).
    assert_close(ours.get_text_features(jnp.asarray(ids), jnp.asarray(mask)), want_txt, TOL, "text features")
    assert_close(ours.get_text_features(jnp.asarray(ids)), want_txt, TOL, "text features, no mask")
    per_image, per_text = ours(jnp.asarray(ids), jnp.asarray(px), jnp.asarray(mask))
    assert_close(per_image, want_logits, TOL, "logits_per_image")
    np.testing.assert_array_equal(np.asarray(per_text), np.asarray(per_image).T)
    # A non-trivial check: the q / v biases, the head's bias and the text projection all matter.
    assert np.abs(want_img).max() > 0.1 and np.abs(want_logits).std() > 0.1


def test_bfloat16_load_stays_close(tiny):
    ref, folder = tiny
    ours = load_hf(str(folder), dtype=jnp.bfloat16)
    px = rand_pixels(2, size=28, seed=3)
    with torch.no_grad():
        want = ref.encode_image(nchw(px)).numpy()
    got = np.asarray(ours.get_image_features(jnp.asarray(px)))
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_unsupported_configs_are_refused_by_name(tmp_path):
    cfg = tiny_open_clip.model_cfg()
    with pytest.raises(ValueError, match="timm_model_name='eva02_large_patch14_clip_224'"):
        openclip.config_from_open_clip(dict(cfg, vision_cfg=dict(cfg["vision_cfg"],
                                                                 timm_model_name="eva02_large_patch14_clip_224")))
    with pytest.raises(ValueError, match=r"text_cfg\.ls_init_value=0\.1 is not supported"):
        openclip.config_from_open_clip(dict(cfg, text_cfg=dict(cfg["text_cfg"], ls_init_value=0.1)))
    with pytest.raises(ValueError, match=r"text_cfg\.hf_model_name"):
        openclip.config_from_open_clip(dict(cfg, text_cfg=dict(cfg["text_cfg"], hf_model_name="xlm-roberta")))
    with pytest.raises(ValueError, match=r"vision_cfg\.timm_pool='avg'"):
        openclip.config_from_open_clip({"model_cfg": dict(cfg, vision_cfg=dict(cfg["vision_cfg"], timm_pool="avg"))})


def test_missing_and_unexpected_tensors_are_named(tiny, tmp_path):
    from safetensors.numpy import load_file, save_file
    _, folder = tiny
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "open_clip_config.json").write_text((folder / "open_clip_config.json").read_text())
    tensors = load_file(str(folder / "open_clip_model.safetensors"))
    tensors.pop("visual.trunk.blocks.1.attn.v_bias")
    tensors["visual.trunk.extra"] = np.zeros(2, np.float32)
    save_file(tensors, str(broken / "open_clip_model.safetensors"))
    with pytest.raises(ValueError, match=r"encoder\.layers\.1\.self_attn\.v_bias.*visual\.trunk\.extra"):
        load_hf(str(broken))


@pytest.mark.parametrize("name,open_clip_name", [
    ("timm/eva_giant_patch14_plus_clip_224.merged2b_s11b_b114k", "EVA01-g-14-plus"),
    ("timm/eva_giant_patch14_clip_224.laion400m_s11b_b41k", "EVA01-g-14")])
def test_preset_parameters_equal_open_clip(name, open_clip_name):
    """Every tensor of open_clip's full-size model (meta device: no memory) under our key mapping, shape for
    shape; EVA01-CLIP-g-14-plus has 1,366,621,569 parameters (1,012,588,928 image + 354,032,640 text + scale)."""
    open_clip = tiny_open_clip.import_open_clip()
    cfg = dict(open_clip.get_model_config(open_clip_name))
    assert openclip.config_from_open_clip(cfg) == OPEN_CLIP_PRESETS[name] == preset(name)
    cfg.pop("custom_text")
    with torch.device("meta"):
        ref = open_clip.CustomTextCLIP(**cfg)
    want = {key: tuple(t.shape) for _, key, t in openclip.to_our_keys(
        ("", k, np.broadcast_to(np.zeros((), np.float32), p.shape)) for k, p in ref.state_dict().items())}
    from vlmcls_jax.convert.hf import _to_torch, hf_key
    leaves = nnx.to_flat_state(nnx.state(abstract_model(OPEN_CLIP_PRESETS[name]), nnx.Param))
    ours = {hf_key(path): _to_torch(np.broadcast_to(np.zeros((), bool), v.shape), str(path[-1])).shape
            for path, v in leaves}
    assert ours == want
    count = sum(int(np.prod(v.shape)) for _, v in leaves)
    assert count == sum(p.numel() for p in ref.parameters())
    if open_clip_name == "EVA01-g-14-plus":
        assert count == 1_366_621_569


def test_text_tower_of_g14_plus():
    """The g-14-plus text tower is open_clip's 24 x 1024 transformer (16 heads, 4096 MLP, exact GELU, 77 positions,
    pooled at the highest id), its image tower timm's EVA ViT-g (40 x 1408, 16 heads, 6144 MLP) at 224 px."""
    cfg = OPEN_CLIP_PRESETS["timm/eva_giant_patch14_plus_clip_224.merged2b_s11b_b114k"]
    t, v = cfg.text_config, cfg.vision_config
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.intermediate_size,
            t.max_position_embeddings, t.hidden_act, t.eos_token_id, t.vocab_size) == \
        (1024, 24, 16, 4096, 77, "gelu", 2, 49408)
    assert (v.hidden_size, v.num_hidden_layers, v.num_attention_heads, v.intermediate_size, v.image_size,
            v.patch_size, v.layer_norm_eps) == (1408, 40, 16, 6144, 224, 14, 1e-6)
    assert cfg.projection_dim == 1024
    assert dataclasses.replace(v, separate_qv_bias=False) != v
