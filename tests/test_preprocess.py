"""vlmcls_jax.data.preprocess against transformers 5's PIL image processors (no torchvision needed)."""

from __future__ import annotations

import dataclasses
import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

from vlmcls_jax.data.preprocess import (
    ClipPreprocessConfig,
    clip_preprocess,
    expand_to_square,
    load_image,
    preprocess_batch,
    to_rgb,
)

TOL = 1e-5  # measured: 0.0 (bit-identical) for every case below

CLIP_224 = {}  # CLIPImageProcessorPil's defaults are openai CLIP ViT-*/14 at 224 px
CLIP_336 = {"size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336}}  # llava-1.5-*-hf
# Resize to 100, crop 121 x 90: the crop can be taller than the image, which HF zero-pads first (odd pixel on top).
PAD_CROP = {"size": {"shortest_edge": 100}, "crop_size": {"height": 121, "width": 90}}

SIZES = [(5, 7), (7, 5), (1, 1), (224, 224), (336, 336), (300, 200), (200, 300), (225, 224), (37, 401),
         (401, 37), (513, 769), (1000, 750)]  # (height, width)


def _random_image(mode: str, height: int, width: int, seed: int = 0) -> Image.Image:
    """A noisy PIL image of `mode`; PNG-backed modes are written to bytes and reopened, as from disk."""
    rng = np.random.default_rng(seed)
    u8 = lambda *c: rng.integers(0, 256, (height, width, *c), dtype=np.uint8)
    if mode in ("RGB", "RGBA", "CMYK"):
        return Image.fromarray(u8(len(mode)), mode)
    if mode == "L":
        return Image.fromarray(u8(), "L")
    if mode == "1":
        return Image.fromarray(u8() > 127)
    if mode == "LA":
        return Image.fromarray(u8(2), "LA")
    if mode == "P":
        return Image.fromarray(u8(3), "RGB").quantize(colors=64)
    png = io.BytesIO()
    if mode == "I;16":  # a 16-bit grayscale PNG; values straddle 255, where PIL's conversion clips
        Image.fromarray(rng.integers(0, 600, (height, width), dtype=np.uint16)).save(png, "PNG")
    elif mode == "P+trns":  # palette PNG with a transparent palette index
        Image.fromarray(u8(3), "RGB").quantize(colors=16).save(png, "PNG", transparency=3)
    elif mode == "L+trns":  # grayscale PNG with a transparent grey level (tRNS chunk, no alpha band)
        Image.fromarray((u8() // 64) * 64, "L").save(png, "PNG", transparency=128)
    elif mode == "RGB+trns":
        Image.fromarray((u8(3) // 128) * 255, "RGB").save(png, "PNG", transparency=(255, 0, 255))
    else:
        raise ValueError(mode)
    return Image.open(io.BytesIO(png.getvalue()))


def _hf_nhwc(processor, image: Image.Image) -> np.ndarray:
    out = processor(image, return_tensors="np")["pixel_values"]  # float32[1, 3, H, W]
    return out[0].transpose(1, 2, 0)


def _check_equal(ours: np.ndarray, theirs: np.ndarray):
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= TOL


@pytest.mark.parametrize("hf_kwargs", [CLIP_224, CLIP_336, PAD_CROP], ids=["clip224", "clip336", "pad_crop"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_rgb_sizes_match_hf(hf_kwargs, size):
    hf = CLIPImageProcessorPil(**hf_kwargs)
    cfg = ClipPreprocessConfig.from_hf_dict(hf.to_dict())
    image = _random_image("RGB", *size, seed=size[0] * 1000 + size[1])
    _check_equal(clip_preprocess(image, cfg), _hf_nhwc(hf, image))


def test_bit_identical_to_hf():
    """Stricter than the contract (TOL): today every step repeats HF's dtype sequence, so outputs are equal."""
    hf = CLIPImageProcessorPil(**CLIP_336)
    image = _random_image("RGBA", 413, 297, seed=3)
    np.testing.assert_array_equal(clip_preprocess(image, ClipPreprocessConfig.from_hf_dict(hf.to_dict())),
                                  _hf_nhwc(hf, image))


MODES = ["RGB", "L", "1", "RGBA", "LA", "P", "P+trns", "L+trns", "RGB+trns", "CMYK", "I;16"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [(5, 7), (240, 180), (190, 500)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_modes_match_hf(mode, size):
    image = _random_image(mode, *size, seed=7)
    if mode == "I;16":
        assert image.mode == "I;16"
    for hf_kwargs in (CLIP_224, CLIP_336):
        hf = CLIPImageProcessorPil(**hf_kwargs)
        _check_equal(clip_preprocess(image, ClipPreprocessConfig.from_hf_dict(hf.to_dict())), _hf_nhwc(hf, image))


def test_to_rgb_composites_transparency_on_white_and_clips_16_bit():
    rgba = Image.fromarray(np.array([[[10, 20, 30, 0], [10, 20, 30, 255]]], np.uint8), "RGBA")
    np.testing.assert_array_equal(np.asarray(to_rgb(rgba)), [[[255, 255, 255], [10, 20, 30]]])
    png = io.BytesIO()
    Image.fromarray(np.array([[0, 100, 255, 256, 65535]], np.uint16)).save(png, "PNG")
    sixteen = Image.open(io.BytesIO(png.getvalue()))
    assert sixteen.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(to_rgb(sixteen))[0, :, 0], [0, 100, 255, 255, 255])


def test_pad_to_square_by_hand():
    red, blue = (255, 0, 0), (0, 0, 255)
    bg = ClipPreprocessConfig().pad_color
    assert bg == (122, 116, 104)  # int(255 * openai CLIP mean)

    wide = expand_to_square(Image.new("RGB", (20, 10), red), bg)  # (width, height)
    assert wide.size == (20, 20)
    px = wide.load()  # px[x, y]
    for xy in [(0, 0), (19, 0), (0, 19), (19, 19), (10, 4), (10, 15)]:
        assert px[xy] == bg, xy
    for xy in [(0, 5), (19, 14), (10, 10)]:
        assert px[xy] == red, xy

    tall = expand_to_square(Image.new("RGB", (10, 21), blue), bg)  # pasted at x = (21 - 10) // 2 = 5
    assert tall.size == (21, 21)
    px = tall.load()
    for xy in [(0, 0), (20, 0), (0, 20), (20, 20), (4, 10), (15, 10)]:
        assert px[xy] == bg, xy
    for xy in [(5, 0), (14, 20), (10, 10)]:
        assert px[xy] == blue, xy

    square = Image.new("RGB", (8, 8), red)
    assert expand_to_square(square, bg) is square


@pytest.mark.parametrize("pad_to_square", [False, True])
def test_batch_matches_hf_and_accepts_paths(tmp_path, pad_to_square):
    images = [_random_image("RGB", 120, 300, 1), _random_image("RGBA", 333, 100, 2), _random_image("P", 64, 64, 3)]
    path = tmp_path / "img.png"
    images[1].save(path)
    hf = LlavaImageProcessorPil(**CLIP_336, do_pad=pad_to_square)
    cfg = ClipPreprocessConfig.from_hf_dict(hf.to_dict())
    assert cfg.pad_to_square == pad_to_square
    ours = preprocess_batch([images[0], path, images[2]], cfg)
    no_pad = dataclasses.replace(cfg, pad_to_square=False)
    assert np.array_equal(ours, preprocess_batch(images, no_pad, pad_to_square=pad_to_square))  # the override
    theirs = hf(images, return_tensors="np")["pixel_values"].transpose(0, 2, 3, 1)
    assert ours.shape == (3, 336, 336, 3)
    _check_equal(ours, theirs)


def test_config_from_hf_dicts_and_folders(tmp_path):
    assert ClipPreprocessConfig.from_hf_dict({}) == ClipPreprocessConfig()
    old_style = {"size": 224, "crop_size": 224}  # as in openai/clip-vit-*'s preprocessor_config.json
    assert ClipPreprocessConfig.from_hf_dict(old_style) == ClipPreprocessConfig()
    cfg_336 = ClipPreprocessConfig(size=336, crop_size=(336, 336))
    assert ClipPreprocessConfig.from_hf_dict(CLIPImageProcessorPil(**CLIP_336).to_dict()) == cfg_336

    CLIPImageProcessorPil(**CLIP_336).save_pretrained(tmp_path / "a")  # writes preprocessor_config.json
    assert ClipPreprocessConfig.from_pretrained_dir(tmp_path / "a") == cfg_336
    # transformers 5 processors save the image processor inside processor_config.json instead.
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "processor_config.json").write_text(json.dumps({"image_processor": CLIP_336}))
    assert ClipPreprocessConfig.from_pretrained_dir(tmp_path / "b") == cfg_336

    with pytest.raises(ValueError, match="shortest-edge or"):
        ClipPreprocessConfig.from_hf_dict({"size": {"longest_edge": 224}})
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        ClipPreprocessConfig.from_pretrained_dir(tmp_path / "missing")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "c" / "preprocessor_config.json"))):
        ClipPreprocessConfig.from_pretrained_dir(tmp_path / "c")


def test_load_image_errors_name_the_file(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((4, 6, 4), np.uint8), "RGBA").save(good)
    loaded = load_image(good)
    assert loaded.mode == "RGB" and loaded.size == (6, 4)
    assert np.all(np.asarray(loaded) == 255)  # fully transparent -> white, like transformers

    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image" * 10)
    truncated = tmp_path / "truncated.png"
    _random_image("RGB", 64, 64).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    for path in [tmp_path / "missing.png", empty, garbage, truncated]:
        with pytest.raises(ValueError, match=re.escape(str(path))):
            load_image(path)


@pytest.mark.parametrize("size", [(24, 24), (30, 18)])
def test_exact_size_resize_matches_blip_processor(size):
    """BLIP-2 / InstructBLIP checkpoints ship a `BlipImageProcessor`: resize to exactly (height, width), no
    crop.  Its preprocessor_config.json reads into `resize_to` and the output is bit-identical."""
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
    hf = BlipImageProcessorPil(size={"height": size[0], "width": size[1]})
    cfg = ClipPreprocessConfig.from_hf_dict(hf.to_dict())
    assert cfg.resize_to == size and not cfg.do_center_crop
    for shape in [(50, 40), (13, 61)]:
        image = _random_image("RGB", *shape)
        ours = clip_preprocess(image, cfg)
        theirs = np.asarray(hf(image, return_tensors="np").pixel_values[0]).transpose(1, 2, 0)
        assert ours.shape == (*size, 3)
        np.testing.assert_array_equal(ours, theirs)
