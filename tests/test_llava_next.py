"""LLaVA-NeXT (AnyRes): our preprocessing, token counts, feature layout and model against transformers 5.

Reference: tiny random `LlavaNextForConditionalGeneration`s (tiny_hf.llava_next: 28 px tiles of 4 x 4 patches,
grid pinpoints [[28, 56], [56, 28], [56, 56], [84, 28], [28, 84]]), text towers Mistral with GQA (2 kv heads
for 4) and Llama/Vicuna with MHA, loaded with `load_hf`.  Images: a square 40x40 and non-square 30x70, 90x25
(88, 60 and 76 image tokens), preprocessed by `anyres_batch`; transformers gets the same pixels (NCHW) and
`image_sizes`.  Batches are left-padded, HF given our default positions; only real positions are compared.

Tolerances (float32): logits and decoder hidden states 1e-4 (scale ~0.5-1); projector image features 1e-6
(scale ~0.02) and the decoder's input embeddings.  Measured maxima (both variants): logits 2.1e-7, decoder
hidden states 1.3e-6, image features 1.3e-8, input embeddings (images filled across rows) 1.3e-8; `embed` with
the index padded to max_num_image_tokens equals the unpadded one exactly, and transformers' (second batch
through the same compiled function) to 1.0e-8.  Preprocessing is bit-identical to
`LlavaNextImageProcessorPil` (measured 0.0); feature layout and token counts are compared exactly.
transformers' torchvision `LlavaNextImageProcessor` is not compared (torchvision is not installed here).

Parameter counts of the full-size presets against transformers on the meta device: tests/test_presets.py,
which covers every entry of PRESETS, both LLaVA-NeXT ones included.
"""

import dataclasses
import json
import types

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file as save_torch
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

import tiny_hf
from conftest import add_llava_tokens, build_sentencepiece_tokenizer, tokenizer_file
from tiny_hf import assert_close
from vlmcls_jax.convert import config_from_hf, load_hf, save_hf
from vlmcls_jax.data.anyres import NEWLINE, PAD, anyres_batch, anyres_preprocess, image_feature_index
from vlmcls_jax.data.preprocess import ClipPreprocessConfig
from vlmcls_jax.data.prompt_formats import PROMPT_FORMATS, prompt_format, study_prompt
from vlmcls_jax.data.prompts import OPEN_QUESTION, SCORING_PREFIX, llava_prompt
from vlmcls_jax.models import LlavaNextConfig, LlavaNextForConditionalGeneration
from vlmcls_jax.models.config_io import config_from_dict, config_to_dict
from vlmcls_jax.models.presets import PRESETS

TOL = 1e-4
FEATURE_TOL = 1e-6
IMG = 99                                                              # tiny_hf's image_token_index
TINY_PREPROCESS = ClipPreprocessConfig(size=28, crop_size=(28, 28))
SIZES = [(40, 40), (30, 70), (90, 25)]                                # (height, width): square, wide, tall
FULL_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]

VARIANTS = {"mistral-gqa": dict(mistral=True), "vicuna-mha": dict(text={"num_key_value_heads": 4})}


def random_image(height, width, seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA")
    return image if mode == "RGBA" else image.convert(mode)


def nchw(pixels):
    """Our [B, 1 + T, S, S, 3] -> torch [B, 1 + T, 3, S, S]."""
    return torch.tensor(pixels.transpose(0, 1, 4, 2, 3))


_BUILT = {}


def build(variant, tmp_path_factory):
    """(HF reference, ours) for a variant, built once per session."""
    if variant not in _BUILT:
        folder = tmp_path_factory.mktemp("llava_next")
        ref = tiny_hf.llava_next(folder, **VARIANTS[variant])
        ours = load_hf(str(folder))
        assert isinstance(ours, LlavaNextForConditionalGeneration)
        _BUILT[variant] = ref, ours
    return _BUILT[variant]


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tmp_path_factory):
    return (request.param,) + build(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def batch():
    """The three images' pixels float32[3, 1 + 4, 28, 28, 3] and sizes int32[3, 2]."""
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(SIZES)]
    pixels, sizes = anyres_batch(images, TINY_PREPROCESS, tiny_hf.NEXT_PINPOINTS)
    return pixels, sizes


def one_image_per_row(cfg):
    counts = [cfg.num_image_tokens_for(h, w) for h, w in SIZES]
    assert counts == [88, 60, 76]
    return tiny_hf.left_padded([[1, 7] + [IMG] * counts[0] + [5, 6, 8], [1] + [IMG] * counts[1] + [9, 10],
                                [1, 4, 5] + [IMG] * counts[2] + [3]])


def hf_forward(ref, ids, mask, pixels, sizes, **kw):
    with torch.no_grad():
        return ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=nchw(pixels),
                   image_sizes=torch.tensor(sizes), position_ids=torch.tensor(tiny_hf.hf_positions(mask)), **kw)


# ------------------------------------------------------------------------------------------------ model

# Compiled entry points: one XLA program per variant and shape instead of hundreds of eager ops each compiled on
# first use (faster here, and the persistent compilation cache keeps them).  The host-side checks, which run
# only outside jit (and before any compute), are tested in test_errors and the in-order test.
image_features = nnx.jit(lambda model, pixels, index: model.get_image_features(pixels, index))
embed = nnx.jit(lambda model, ids, pixels, index: model.embed(ids, pixels, index))


@nnx.jit
def forward(model, ids, pixels, index, mask):
    """(logits, cache, decoder hidden states)."""
    logits, cache = model(ids, pixel_values=pixels, image_index=index, attention_mask=mask)
    hidden = model.decode(ids, pixel_values=pixels, image_index=index, attention_mask=mask,
                          output_hidden_states=True).hidden_states
    return logits, cache, hidden


def test_config(pair):
    variant, ref, ours = pair
    cfg = ours.config
    assert isinstance(cfg, LlavaNextConfig)
    assert cfg.image_grid_pinpoints == ((28, 56), (56, 28), (56, 56), (84, 28), (28, 84))
    assert cfg.text_config.num_key_value_heads == ref.config.text_config.num_key_value_heads
    assert cfg.max_tiles == 4 and cfg.max_num_image_tokens == 16 + 8 * 9     # 56x56: 8 rows of 8 patches + newline
    assert ours.image_newline.shape == (32,)
    np.testing.assert_array_equal(np.asarray(ours.image_newline[...]), ref.model.image_newline.detach().numpy())
    with pytest.raises(AttributeError, match="num_image_tokens_for"):
        cfg.num_image_tokens


def test_image_features(pair, batch):
    variant, ref, ours = pair
    pixels, sizes = batch
    with torch.no_grad():
        out = ref.model.get_image_features(pixel_values=nchw(pixels), image_sizes=torch.tensor(sizes))
    expected = list(out.pooler_output)                                        # per image [n_i, D]
    index = ours.config.image_index(sizes)
    got = np.asarray(image_features(ours, jnp.asarray(pixels), jnp.asarray(index)))
    assert got.shape == (3, 88, 32)
    for i, want in enumerate(expected):
        n = ours.config.num_image_tokens_for(*sizes[i])
        assert want.shape[0] == n
        assert_close(got[i, :n], want, FEATURE_TOL, f"{variant} image {i} {tuple(sizes[i])} features")
        assert not got[i, n:].any()                                           # PAD rows are zeros


def test_logits_and_hidden_states_left_padded(pair, batch):
    """Three rows of different lengths and image-token counts (88, 60, 76), left-padded, one image per row."""
    variant, ref, ours = pair
    pixels, sizes = batch
    ids, mask = one_image_per_row(ours.config)
    out = hf_forward(ref, ids, mask, pixels, sizes, output_hidden_states=True)
    real = mask.astype(bool)
    logits, cache, hidden = forward(ours, jnp.asarray(ids), jnp.asarray(pixels),
                                    jnp.asarray(ours.config.image_index(sizes)), jnp.asarray(mask))
    assert cache is None and logits.dtype == jnp.float32
    assert_close(logits, out.logits, TOL, f"{variant} logits", where=real)
    assert len(hidden) == len(out.hidden_states) == 3
    for i, (a, b) in enumerate(zip(hidden, out.hidden_states)):
        assert_close(a, b, TOL, f"{variant} decoder hidden_states[{i}]", where=real)


@pytest.fixture(scope="module")
def mistral_pair(tmp_path_factory):
    return build("mistral-gqa", tmp_path_factory)


def test_jit_with_fixed_shapes(mistral_pair, batch):
    """One compiled `embed` (vision tower, feature layout, placement) serves batches of any image sizes: pixel
    tiles fixed at 1 + max_tiles, the index at max_num_image_tokens; only index values and token layout change.
    (The decoder after it is LLaVA's, jit-tested there.)  Checked against transformers' embedding output."""
    ref, ours = mistral_pair
    pixels, sizes = batch
    cfg = ours.config
    traces = []

    @nnx.jit
    def counted_embed(model, ids, px, index):
        traces.append(1)
        return model.embed(ids, px, index)

    def run(ids, px, image_sizes):
        index = cfg.image_index(image_sizes, length=cfg.max_num_image_tokens)
        return counted_embed(ours, jnp.asarray(ids), jnp.asarray(px), jnp.asarray(index))

    ids, mask = one_image_per_row(cfg)
    got = run(ids, pixels, sizes)
    unpadded = embed(ours, jnp.asarray(ids), jnp.asarray(pixels), jnp.asarray(cfg.image_index(sizes)))
    assert_close(got, unpadded, 1e-7, "index padded to max_num_image_tokens vs unpadded")
    # Other sizes (so other token counts), same padded shapes: no new trace.
    other = [(20, 20), (60, 30), (25, 90)]
    px2, sizes2 = anyres_batch([random_image(h, w, seed=7 + i) for i, (h, w) in enumerate(other)], TINY_PREPROCESS,
                               cfg.image_grid_pinpoints)
    counts = [cfg.num_image_tokens_for(h, w) for h, w in other]
    rows = [[1] + [IMG] * n + [5, 6] for n in counts]
    ids2, mask2 = tiny_hf.left_padded([rows[0] + [7] * (ids.shape[1] - len(rows[0]))] + rows[1:])
    assert ids2.shape == ids.shape and counts != [88, 60, 76]
    got2 = run(ids2, px2, sizes2)
    assert len(traces) == 1
    expected = hf_forward(ref, ids2, mask2, px2, sizes2, output_hidden_states=True).hidden_states[0]
    assert_close(got2, expected, FEATURE_TOL, "jit embeddings, second batch", where=mask2.astype(bool))


def test_images_fill_image_tokens_in_order_when_not_one_per_row(mistral_pair, batch):
    """B_img != B: row 0 holds images 0 and 1 back to back, row 1 (left-padded) image 2 (transformers' rule).
    Compared on the decoder's input embeddings (HF's hidden_states[0]); the decoder is tested above."""
    ref, ours = mistral_pair
    pixels, sizes = batch
    ids, mask = tiny_hf.left_padded([[1] + [IMG] * (88 + 60) + [4], [1, 7] + [IMG] * 76 + [9]])
    expected = hf_forward(ref, ids, mask, pixels, sizes, output_hidden_states=True).hidden_states[0]
    got = embed(ours, jnp.asarray(ids), jnp.asarray(pixels), jnp.asarray(ours.config.image_index(sizes)))
    assert_close(got, expected, FEATURE_TOL, "3 images over 2 rows: embeddings", where=mask.astype(bool))
    with pytest.raises(ValueError, match=r"223 image tokens in input_ids, 224 features \(3 images with "
                                         r"\[88, 60, 76\]\)"):
        ours.embed(jnp.asarray(ids[:, 2:]), jnp.asarray(pixels), jnp.asarray(ours.config.image_index(sizes)))


def test_errors(mistral_pair, batch):
    _, ours = mistral_pair
    pixels, sizes = batch
    index = ours.config.image_index(sizes)
    ids, mask = one_image_per_row(ours.config)
    with pytest.raises(ValueError, match="needs image_index"):
        ours(jnp.asarray(ids), pixel_values=jnp.asarray(pixels))
    bad = ids.copy()
    bad[1, -3] = 9                                                      # row 1: 59 image tokens, not 60
    with pytest.raises(ValueError, match=r"rows have \[88, 59, 76\] image tokens; each must have 0 or its "
                                         r"image's \[88, 60, 76\]"):
        ours(jnp.asarray(bad), pixel_values=jnp.asarray(pixels), image_index=jnp.asarray(index))
    with pytest.raises(ValueError, match="too few tiles"):             # the 40x40 image has 4 tiles
        ours.get_image_features(jnp.asarray(pixels[:, :3]), jnp.asarray(index))
    with pytest.raises(ValueError, match="only vision_feature_select_strategy='default'"):
        dataclasses.replace(ours.config, vision_feature_select_strategy="full")
    with pytest.raises(ValueError, match=r"\[\(28, 50\)\] are not positive multiples"):
        dataclasses.replace(ours.config, image_grid_pinpoints=[[28, 56], [28, 50]])


# ------------------------------------------------------------------------------------------------ converter

def test_save_hf_round_trip_through_transformers(pair, tmp_path, batch):
    variant, ref, ours = pair
    save_hf(ours, str(tmp_path))
    with safe_open(str(tmp_path / "model.safetensors"), "np") as f:
        assert "image_newline" in f.keys()
    again, info = transformers.LlavaNextForConditionalGeneration.from_pretrained(str(tmp_path),
                                                                               output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert again.config.architectures == ["LlavaNextForConditionalGeneration"]
    assert again.config.image_grid_pinpoints == tiny_hf.NEXT_PINPOINTS
    ref_state, again_state = ref.state_dict(), again.state_dict()
    assert ref_state.keys() == again_state.keys()
    for k in ref_state:
        assert torch.equal(ref_state[k], again_state[k]), k
    pixels, sizes = batch
    ids, mask = one_image_per_row(ours.config)
    torch.testing.assert_close(hf_forward(again.eval(), ids, mask, pixels, sizes).logits,
                               hf_forward(ref, ids, mask, pixels, sizes).logits, rtol=0, atol=1e-6)
    assert config_from_hf(again.config) == ours.config


def params(model):
    return {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def to_v4(key):
    """transformers-4 hub files (llava-hf/llava-v1.6-*-hf): vision_tower.vision_model.*, language_model.model.*,
    language_model.lm_head.*, multi_modal_projector.*, image_newline."""
    for a, b in (("model.vision_tower.", "vision_tower.vision_model."),
                 ("model.language_model.", "language_model.model."),
                 ("model.multi_modal_projector.", "multi_modal_projector."), ("model.image_newline", "image_newline")):
        key = key.replace(a, b)
    return "language_model." + key if key.startswith("lm_head.") else key


@pytest.mark.parametrize("layout", ["v4_hub", "memory"])
def test_hub_layouts_load_to_the_same_params(mistral_pair, tmp_path, layout):
    ref, ours = mistral_pair
    rename = to_v4 if layout == "v4_hub" else (lambda k: k)           # memory: model.image_newline, lm_head.*
    state = {rename(k): v.detach().clone() for k, v in ref.state_dict().items()}
    assert ("image_newline" if layout == "v4_hub" else "model.image_newline") in state
    save_torch(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    ref.config.save_pretrained(tmp_path)
    got, want = params(load_hf(str(tmp_path))), params(ours)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=str(k))


def test_mistral_preset_equals_the_hub_config():
    """llava-hf/llava-v1.6-mistral-7b-hf's config.json (transformers-4 era, as published), read by transformers 5."""
    hub = {"architectures": ["LlavaNextForConditionalGeneration"], "ignore_index": -100,
           "image_grid_pinpoints": FULL_PINPOINTS, "image_token_index": 32000, "model_type": "llava_next",
           "projector_hidden_act": "gelu",
           "text_config": {"_name_or_path": "mistralai/Mistral-7B-Instruct-v0.2",
                           "architectures": ["MistralForCausalLM"],
                           "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
                           "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
                           "sliding_window": None, "torch_dtype": "bfloat16", "vocab_size": 32064},
           "torch_dtype": "float16", "use_image_newline_parameter": True,
           "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                             "model_type": "clip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 24,
                             "patch_size": 14, "projection_dim": 768, "vocab_size": 32000},
           "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "vocab_size": 32064}
    assert config_from_hf(transformers.LlavaNextConfig.from_dict(hub)) == PRESETS["llava-hf/llava-v1.6-mistral-7b-hf"]
    assert PRESETS["llava-hf/llava-v1.6-vicuna-7b-hf"].text_config == PRESETS["llava-hf/llava-1.5-7b-hf"].text_config


def test_config_json_round_trip():
    """Our own checkpoint format: image_grid_pinpoints (pairs) survive JSON as lists of lists."""
    cfg = PRESETS["llava-hf/llava-v1.6-mistral-7b-hf"]
    d = json.loads(json.dumps(config_to_dict(cfg)))
    assert d["type"] == "LlavaNextConfig" and d["image_grid_pinpoints"] == FULL_PINPOINTS
    assert config_from_dict(d) == cfg


# ------------------------------------------------------------------------------------------------ host side

@pytest.mark.parametrize("geometry", ["tiny", "336"])
def test_preprocessing_matches_transformers(geometry):
    """`anyres_batch` vs `LlavaNextImageProcessorPil` (which pads the tile axis to the batch's maximum)."""
    S, pinpoints = (28, tiny_hf.NEXT_PINPOINTS) if geometry == "tiny" else (336, FULL_PINPOINTS)
    processor = LlavaNextImageProcessorPil(size={"shortest_edge": S}, crop_size={"height": S, "width": S},
                                           image_grid_pinpoints=pinpoints)
    cfg = ClipPreprocessConfig.from_hf_dict(processor.to_dict())
    sizes = [(40, 40), (30, 70), (90, 25), (13, 100), (28, 28)] if geometry == "tiny" else \
        [(375, 500), (480, 480), (640, 427), (200, 900)]
    images = [random_image(h, w, seed=i, mode=("RGB", "RGBA", "L")[i % 3]) for i, (h, w) in enumerate(sizes)]
    expected = processor(images, return_tensors="np")
    pixels, image_sizes = anyres_batch(images, cfg, pinpoints, num_tiles=expected["pixel_values"].shape[1] - 1)
    np.testing.assert_array_equal(image_sizes, expected["image_sizes"])
    np.testing.assert_array_equal(pixels, expected["pixel_values"].transpose(0, 1, 3, 4, 2))   # bit-identical
    one, size = anyres_preprocess(images[1], cfg, pinpoints)
    assert size == sizes[1] and one.shape[1:] == (S, S, 3)
    np.testing.assert_array_equal(one, pixels[1, : len(one)])
    assert not pixels[1, len(one):].any()


def pack_reference(hf_config, height, width):
    """transformers' `pack_image_features` on features that hold their own flat index (newline = -1)."""
    vc = hf_config.vision_config
    P = (vc.image_size // vc.patch_size) ** 2
    rows, cols = (x // vc.image_size for x in
                  transformers.image_processing_utils.select_best_resolution((height, width),
                                                                             hf_config.image_grid_pinpoints))
    features = torch.arange((1 + rows * cols) * P, dtype=torch.float64).reshape(1 + rows * cols, P, 1)
    this = types.SimpleNamespace(config=hf_config)
    packed, lens = transformers.LlavaNextModel.pack_image_features(
        this, [features], torch.tensor([[height, width]]), "default", torch.tensor([float(NEWLINE)]))
    return packed[0][:, 0].numpy().astype(np.int64)


@pytest.mark.parametrize("geometry", ["tiny", "336"])
def test_feature_index_matches_pack_image_features(geometry):
    """Our index reproduces transformers' unpadding and newline placement exactly, over many sizes (including
    ones where `round(x, 7)` and the odd-padding floor matter)."""
    if geometry == "tiny":
        hf = transformers.LlavaNextConfig(vision_config=transformers.CLIPVisionConfig(**tiny_hf.NEXT_VISION),
                                          image_grid_pinpoints=tiny_hf.NEXT_PINPOINTS)
    else:
        hf = transformers.LlavaNextConfig(image_grid_pinpoints=FULL_PINPOINTS)
    cfg = config_from_hf(hf)
    rng = np.random.default_rng(0)
    scale = hf.vision_config.image_size
    sizes = [tuple(int(x) for x in rng.integers(1, 4 * scale, 2)) for _ in range(60)]
    sizes += [(scale, scale), (scale, 2 * scale), (3 * scale, scale), (scale + 1, 2 * scale), (7, 11 * scale)]
    # Sizes where the unpadded side computes as k - 1e-15 in floats, so only `round(x, 7)` gives k.
    sizes += [(47, 188), (49, 98)] if geometry == "tiny" else [(44, 55), (47, 94)]
    for h, w in sizes:
        try:
            ours = image_feature_index(h, w, pinpoints=cfg.image_grid_pinpoints, image_size=scale,
                                       patch_size=hf.vision_config.patch_size)
        except ValueError:                                             # e.g. 1 x 900: no pinpoint keeps a pixel
            assert transformers.image_processing_utils.select_best_resolution((h, w), hf.image_grid_pinpoints) is None
            continue
        np.testing.assert_array_equal(ours, pack_reference(hf, h, w), err_msg=f"{h}x{w}")
        assert len(ours) == cfg.num_image_tokens_for(h, w) <= cfg.max_num_image_tokens
    padded = cfg.image_index(sizes[:3], length=cfg.max_num_image_tokens)
    assert padded.shape == (3, cfg.max_num_image_tokens) and padded.dtype == np.int32
    assert all((row[cfg.num_image_tokens_for(*s):] == PAD).all() for row, s in zip(padded, sizes))


@pytest.fixture(scope="module")
def mistral_tokenizer(tmp_path_factory):
    """The Mistral-7B v0.1/v0.2 tokenizer + llava-hf's `<image>` (32000) and `<pad>` (32001)."""
    path = tokenizer_file("mistral-v1.model")
    return add_llava_tokens(build_sentencepiece_tokenizer(path, tmp_path_factory.mktemp("mistral_tokenizer")))


def test_token_counts_match_the_processor(mistral_tokenizer):
    """`num_image_tokens_for` == `LlavaNextProcessor`'s count (llava-hf's processor config: patch 14, "default",
    one additional CLS token), over many sizes; and end to end, the `<image>` ids the processor writes."""
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": 336},
                                                 crop_size={"height": 336, "width": 336},
                                                 image_grid_pinpoints=FULL_PINPOINTS)
    processor = transformers.LlavaNextProcessor(image_processor=image_processor, tokenizer=mistral_tokenizer,
                                                patch_size=14, vision_feature_select_strategy="default",
                                                num_additional_image_tokens=1)
    cfg = PRESETS["llava-hf/llava-v1.6-mistral-7b-hf"]
    rng = np.random.default_rng(1)
    for h, w in [tuple(int(x) for x in rng.integers(8, 2000, 2)) for _ in range(300)] + [(44, 55), (47, 94)]:
        assert cfg.num_image_tokens_for(h, w) == processor._get_number_of_features(h, w, 336, 336) - 1, (h, w)
    sizes = [(480, 640), (336, 336), (500, 213)]
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    prompt = prompt_format("llava-hf/llava-v1.6-mistral-7b-hf")(OPEN_QUESTION, "")
    out = processor(text=[prompt] * 3, images=images, padding=True, return_tensors="np")
    counts = (out["input_ids"] == 32000).sum(1)
    assert counts.tolist() == [cfg.num_image_tokens_for(h, w) for h, w in sizes] == [2340, 1176, 1584]


def test_prompt_formats(mistral_tokenizer):
    """The study's Mistral prompt (VLMClassifier main_results/main.py:113) has no space before `[/INST]`:
        f"[INST] <image>\\n{question}[/INST]" for question in questions
    so `?[/INST]` tokenizes differently from the docs' `? [/INST]` (kept as the option llava_next_mistral_docs).
    Ids: BOS, `[INST]` = [733, 16289, 28793], `▁` `<image>` `\\n`, the question, then `[/INST]` glued to `?`."""
    assert PROMPT_FORMATS["llava_hf"] is llava_prompt
    mistral = PROMPT_FORMATS["llava_next_mistral"]
    study = lambda question: f"[INST] <image>\n{question}[/INST]"                       # main.py:113
    assert mistral("What is shown in this image?") == study("What is shown in this image?")
    # imagewikiqa/main.py:56: f"[INST] <image>\n{question}[/INST] Let's think step by step."
    assert study_prompt("llava_next_mistral", "Q?", chain_of_thought=True) == \
        "[INST] <image>\nQ?[/INST] Let's think step by step."
    docs = PROMPT_FORMATS["llava_next_mistral_docs"]
    assert docs("What is shown in this image?") == "[INST] <image>\nWhat is shown in this image? [/INST]"
    # main.py:118 (LLaVA-NeXT-Vicuna)
    assert PROMPT_FORMATS["llava_next_vicuna"]("What is shown in this image?", "It is") == (
        "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the human's questions. USER: <image>\nWhat is shown in this image? "
        "ASSISTANT: It is")
    ids = mistral_tokenizer(mistral(OPEN_QUESTION, SCORING_PREFIX))["input_ids"]
    assert ids == mistral_tokenizer(study(OPEN_QUESTION) + " " + SCORING_PREFIX)["input_ids"]
    question = mistral_tokenizer.encode(OPEN_QUESTION, add_special_tokens=False)
    assert question[0] == 1824                                          # "▁What"; after "\n" it is "What" = 3195
    assert ids[:8] == [1, 733, 16289, 28793, 28705, 32000, 13, 3195]
    assert mistral_tokenizer.convert_ids_to_tokens(ids[:8]) == ["<s>", "▁[", "INST", "]", "▁", "<image>", "<0x0A>",
                                                                "What"]
    docs_ids = mistral_tokenizer(docs(OPEN_QUESTION, SCORING_PREFIX))["input_ids"]
    assert docs_ids == ([1, 733, 16289, 28793, 28705, 32000, 13, 3195] + question[1:] + [733, 28748, 16289, 28793]
                        + mistral_tokenizer.encode(SCORING_PREFIX, add_special_tokens=False))
    assert ids != docs_ids                                              # the space changes the ids
    end = mistral_tokenizer.convert_ids_to_tokens(mistral_tokenizer(study(OPEN_QUESTION))["input_ids"][-5:])
    assert end == ["?", "[", "/", "INST", "]"] and "".join(end) == "?[/INST]"
    with pytest.raises(KeyError, match="unknown prompt format"):
        prompt_format("llava-hf/llava-v1.6-34b-hf")
