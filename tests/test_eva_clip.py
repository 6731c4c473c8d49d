"""EVA01-CLIP against open_clip itself: a tiny random model of EVA01-g-14-plus's form built by open_clip (timm's
EVA trunk, open_clip's text transformer), saved in the hub's open_clip safetensors layout, loaded by `load_hf`;
image / text features and logits compared.  Full-size presets: parameter counts equal open_clip's model built
on the meta device from its own EVA01 configs."""

import dataclasses
import functools
import json

import jax
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
def tiny_trunk():
    """The tiny timm trunk registered with timm, and its shape known to our converter (as eva_giant's is)."""
    name, trunk = tiny_open_clip.register_tiny_trunk(), tiny_open_clip.TINY_TRUNK
    openclip.TIMM_EVA01[name] = openclip.EvaTrunk(
        hidden_size=trunk["embed_dim"], num_hidden_layers=trunk["depth"], num_attention_heads=trunk["num_heads"],
        intermediate_size=int(trunk["embed_dim"] * trunk["mlp_ratio"]), patch_size=trunk["patch_size"],
        image_size=trunk["img_size"])
    yield name
    del openclip.TIMM_EVA01[name]


@pytest.fixture(scope="module")
def tiny(tiny_trunk, tmp_path_factory):
    """(open_clip model, its folder)."""
    cfg = tiny_open_clip.model_cfg()
    model = tiny_open_clip.build(cfg)
    return model, tiny_open_clip.save(model, cfg, tmp_path_factory.mktemp("evaclip") / "tiny")


def _texts(vocab: int, context: int, lengths=(3, 9, 16)):
    """open_clip-style ids: random tokens, the end-of-text id (the vocabulary's highest) last, zeros after."""
    rng = np.random.default_rng(1)
    ids = np.zeros((len(lengths), context), np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n - 1] = rng.integers(1, vocab - 1, n - 1)
        ids[row, n - 1] = vocab - 1
    return ids, (np.arange(context)[None] < np.array(lengths)[:, None]).astype(np.int32)


@functools.partial(jax.jit, static_argnums=1)
def _outputs(state, graphdef, ids, px, mask):
    """(image features, text features with and without the mask, logits_per_image, logits_per_text): one
    compiled program (op-by-op it takes seconds)."""
    model = nnx.merge(graphdef, state)
    return (model.get_image_features(px), model.get_text_features(ids, mask), model.get_text_features(ids),
            *model(ids, px, mask))


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
    graphdef, state = nnx.split(ours)
    img, txt, txt_nomask, per_image, per_text = _outputs(state, graphdef, ids, px, mask)
    assert_close(img, want_img, TOL, "image features")
    # With the tokenizer's attention mask, and without one (open_clip has none: causal attention alone).
    assert_close(txt, want_txt, TOL, "text features")
    assert_close(txt_nomask, want_txt, TOL, "text features, no mask")
    assert_close(per_image, want_logits, TOL, "logits_per_image")
    np.testing.assert_array_equal(np.asarray(per_text), np.asarray(per_image).T)
    # A non-trivial check: the q / v biases, the head's bias and the text projection all matter.
    assert np.abs(want_img).max() > 0.1 and np.abs(want_logits).std() > 0.1


def test_unsupported_configs_are_refused_by_name(tiny_trunk):
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


def test_preset_parameters_equal_open_clip():
    """Every tensor of open_clip's full-size model (meta device: no memory) under our key mapping, shape for
    shape; EVA01-CLIP-g-14-plus has 1,366,621,569 parameters (1,012,588,928 image + 354,032,640 text + scale)."""
    name = "timm/eva_giant_patch14_plus_clip_224.merged2b_s11b_b114k"
    open_clip = tiny_open_clip.import_open_clip()
    cfg = dict(open_clip.get_model_config("EVA01-g-14-plus"))      # open_clip's own model config
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
    assert count == sum(p.numel() for p in ref.parameters()) == 1_366_621_569


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


# ------------------------------------------------------------------------------------- the jobs running it

@pytest.fixture(scope="module")
def world(tiny_trunk, tmp_path_factory):
    """A tiny EVA01-CLIP checkpoint with a tokenizer (open_clip layout), 12 rendered images (4 test), the
    open_clip model and its eval image transform."""
    import train_fixtures
    from vlmcls_jax import demo

    root = tmp_path_factory.mktemp("evaclip_world")
    names = demo.class_names()
    tok = tiny_open_clip.tokenizer([f"A photo of a {n}" for n in names] * 4)
    cfg = tiny_open_clip.model_cfg(vocab_size=len(tok), context_length=24)
    trunk = tiny_open_clip.TINY_TRUNK
    ref = tiny_open_clip.build(cfg, seed=1)
    ckpt = tiny_open_clip.save(ref, cfg, root / "eva-tiny", tokenizer=tok)
    manifest = train_fixtures.shapes_dataset(root / "data", 12)
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    for i, r in enumerate(rows):
        r["split"] = "test" if i % 3 == 0 else "train"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "classes.json").write_text(json.dumps(names))
    open_clip = tiny_open_clip.import_open_clip()
    pre = json.loads((ckpt / "open_clip_config.json").read_text())["preprocess_cfg"]
    transform = open_clip.image_transform(trunk["img_size"], is_train=False, mean=pre["mean"], std=pre["std"])
    return dict(root=root, ckpt=ckpt, manifest=manifest, names=names, rows=rows, tok=tok, ref=ref,
                transform=transform)


def _ref_image_features(world, rows):
    from PIL import Image
    px = torch.stack([world["transform"](Image.open(world["root"] / "data" / r["image"]).convert("RGB"))
                      for r in rows])
    with torch.no_grad():
        return world["ref"].encode_image(px).numpy()


def test_preprocessing_equals_open_clips_transform(world, tmp_path):
    """open_clip's eval transform (torchvision: shortest-edge bicubic resize, centre crop, normalise) and ours
    from the folder's open_clip_config.json, on images of other sizes and aspect ratios."""
    from PIL import Image

    from vlmcls_jax.data.preprocess import clip_preprocess
    from vlmcls_jax.eval.loading import preprocess_for
    pre = preprocess_for(str(world["ckpt"]), 28)
    rng = np.random.default_rng(0)
    for h, w in ((50, 37), (31, 64), (28, 28), (100, 101)):
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        want = world["transform"](image).numpy().transpose(1, 2, 0)
        np.testing.assert_allclose(clip_preprocess(image, pre), want, atol=1e-5, err_msg=f"{h}x{w}")


def test_zero_shot_job_equals_open_clip(world, tmp_path):
    """`job = "eval"` with experiments=("clip",) on the EVA checkpoint: top-1 / top-5 equal open_clip's own
    zero-shot classification (its image transform and model, the same tokenizer's ids, the study's template)."""
    from configs import table1
    from vlmcls_jax.eval import job

    c = table1.get_config("flowers")
    c.experiments, c.label_set_sizes = ("clip",), ()
    c.clip.checkpoint, c.clip.templates = str(world["ckpt"]), "study"
    c.data.manifest, c.data.classes, c.data.image_root, c.data.split = (
        str(world["manifest"]), str(world["root"] / "classes.json"), str(world["root"] / "data"), "train")
    row = job.run(c, str(tmp_path / "run"))["rows"]["CLIP (study)"]
    rows = [r for r in world["rows"] if r["split"] == "train"]
    names = world["names"]
    enc = world["tok"]([f"A photo of a {n}" for n in names], padding="max_length", max_length=24, return_tensors="np")
    with torch.no_grad():
        text = world["ref"].encode_text(torch.from_numpy(enc["input_ids"])).numpy()
    image = _ref_image_features(world, rows)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    sims = unit(image) @ unit(text).T
    labels = np.array([names.index(r["label"]) for r in rows])
    top5 = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    assert row["examples"] == len(rows) == 8 and row["model"] == "eva-tiny"
    assert row["top1"] == pytest.approx(np.mean(top5[:, 0] == labels))
    assert row["top5"] == pytest.approx(np.mean((top5 == labels[:, None]).any(1)))
    assert len(set(top5[:, 0])) > 1         # the random model does not predict one class for every image


def test_linear_probe_job_on_open_clip_image_embeddings(world, tmp_path):
    """`job = "probe"` (configs/table3_probe.py:flowers,evaclip) on the tiny checkpoint: the features on disk are
    open_clip's `encode_image` (and its L2-normalised form), then a probe per feature."""
    from configs import table3_probe
    from vlmcls_jax.analysis.features import load_features
    from vlmcls_jax.main import jobs

    c = table3_probe.get_config("flowers,evaclip")
    assert c.model.checkpoint == "timm/eva_giant_patch14_plus_clip_224.merged2b_s11b_b114k"
    c.model.checkpoint = str(world["ckpt"])
    c.data.manifest, c.data.classes, c.data.image_root = (
        str(world["manifest"]), str(world["root"] / "classes.json"), str(world["root"] / "data"))
    c.features = ("clip/unit", "clip/embed")
    c.probe.epochs, c.probe.batch_size, c.batch_size = 3, 4, 4
    results = jobs()["probe"](c, str(tmp_path / "run"))
    assert results["examples"] == {"train": 8, "test": 4}
    assert set(results["rows"]) == {"clip/unit", "clip/embed"}
    test_rows = [r for r in world["rows"] if r["split"] == "test"]
    _, labels, feats = load_features(str(tmp_path / "run" / "features" / "test"))
    want = _ref_image_features(world, test_rows)
    assert_close(feats["clip/embed"], want, TOL, "clip/embed")
    assert_close(feats["clip/unit"], want / np.linalg.norm(want, axis=-1, keepdims=True), TOL, "clip/unit")
    assert list(labels) == [world["names"].index(r["label"]) for r in test_rows]
    from vlmcls_jax.analysis.clip_features import check_clip_features
    with pytest.raises(ValueError, match="a CLIP model's features are"):
        check_clip_features(("llm:-1/last",))      # the job's check before extracting anything
