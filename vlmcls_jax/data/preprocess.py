"""CLIP image preprocessing, numerically equal to transformers' PIL `CLIPImageProcessorPil`.

Per image (channels last throughout):

    file or PIL image (any mode)
      -> to_rgb                       uint8[h, w, 3]   (transparency composited onto white)
      -> [expand_to_square]           uint8[s, s, 3]   (LLaVA pad-to-square, optional)
      -> shortest-edge resize (PIL)   uint8[h', w', 3]
      -> center crop                  uint8[H, W, 3]   (zero-padded if smaller than the crop)
      -> rescale, normalize           float32[H, W, 3]

Every step repeats transformers 5's arithmetic (resize-size truncation, crop offsets, float64 rescale then
float32 normalize), so outputs equal `CLIPImageProcessorPil(...)(image).pixel_values` transposed to NHWC,
bit for bit. Pure numpy + PIL: no torch, no transformers.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ImageLike = Image.Image | str | os.PathLike


# Images larger than this many pixels are refused before decoding (PIL's own limit only warns up to twice
# this; a decompression bomb declares a huge size in a tiny file).  PIL's default, ~0.27 GB as RGB.
MAX_IMAGE_PIXELS = 89_478_485


def load_image(path: str | os.PathLike, *, max_pixels: int = MAX_IMAGE_PIXELS,
               exif_transpose: bool = False) -> Image.Image:
    """Reads an image file fully and returns it as RGB (see `to_rgb`).

    EXIF orientation is not applied by default, as in LLaVA's `Image.open(path).convert("RGB")` (transformers'
    `load_image` does apply it, then converts without white compositing); `exif_transpose=True` applies it.
    Raises ValueError naming the file when it is missing, empty, not decodable, truncated, or larger than
    `max_pixels` (checked from the header, before decoding).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Image file not found: {path!r}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"Image file is empty (0 bytes): {path!r}")
    def undecodable(e: Exception) -> ValueError:
        if isinstance(e, Image.DecompressionBombError):
            return ValueError(f"Image file {path!r} is over PIL's decompression-bomb limit: {e}")
        return ValueError(f"Cannot decode image file {path!r}: {type(e).__name__}: {e}")

    try:
        image = Image.open(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise undecodable(e) from e
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ValueError(f"Image file {path!r} is {width} x {height} = {width * height} pixels, over the "
                             f"limit of {max_pixels} (a decompression bomb or a mislabelled scan)")
        try:
            image.load()  # Image.open is lazy: decoding errors only surface here.
            return to_rgb(ImageOps.exif_transpose(image) if exif_transpose else image)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise undecodable(e) from e


def to_rgb(image: Image.Image) -> Image.Image:
    """Converts any PIL mode to RGB the way transformers' `convert_to_rgb` does.

    Images with an alpha band ("A" in the bands: RGBA, LA, PA) or a `transparency` entry (P/L/RGB with tRNS)
    are composited onto opaque white; everything else goes through `Image.convert("RGB")`. Note PIL clips
    16-bit/32-bit integer modes (I;16, I) at 255 rather than rescaling them, so such images come out mostly
    white; transformers does the same.
    """
    has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
    if not has_alpha:
        return image.convert("RGB")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")


def expand_to_square(image: Image.Image, background_color: int | tuple[int, ...]) -> Image.Image:
    """LLaVA's `expand2square`: pastes `image` centred on a square canvas of its longer side.

    `background_color` is usually `cfg.pad_color` (the image mean in 0..255, truncated). A [h, w] image
    becomes [max(h, w), max(h, w)]; square images are returned unchanged.
    """
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), background_color)
    if width > height:
        canvas.paste(image, (0, (width - height) // 2))
    else:
        canvas.paste(image, ((height - width) // 2, 0))
    return canvas


@dataclasses.dataclass(frozen=True)
class ClipPreprocessConfig:
    """What `clip_preprocess` does; defaults are openai CLIP ViT-*/14 at 224 px.

    Images are always converted to RGB (`do_convert_rgb` in HF configs is ignored). `pad_to_square` is
    LLaVA-1.5's `image_aspect_ratio="pad"` (HF's `LlavaImageProcessor` `do_pad`), applied by
    `preprocess_batch`; llava-hf's LLaVA-1.5 checkpoints ship a plain CLIP processor without it.
    """

    size: int = 224  # shortest edge after resizing
    # (height, width): resize to exactly this instead (BLIP-2 / InstructBLIP's `BlipImageProcessor`, no crop)
    resize_to: tuple[int, int] | None = None
    crop_size: tuple[int, int] = (224, 224)  # (height, width)
    image_mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    image_std: tuple[float, float, float] = OPENAI_CLIP_STD
    rescale_factor: float = 1 / 255
    resample: int = int(Image.Resampling.BICUBIC)  # a PIL resampling filter
    do_resize: bool = True
    do_center_crop: bool = True
    do_rescale: bool = True
    do_normalize: bool = True
    pad_to_square: bool = False

    @property
    def pad_color(self) -> tuple[int, ...]:
        """LLaVA's pad-to-square fill: the image mean in 0..255, truncated to ints."""
        return tuple(int(x * 255) for x in self.image_mean)

    @classmethod
    def from_hf_dict(cls, d: Mapping) -> ClipPreprocessConfig:
        """Reads a transformers `preprocessor_config.json` dict; missing keys take CLIP's defaults."""
        kwargs = {}
        if "size" in d:
            size = d["size"]
            if isinstance(size, Mapping) and set(size) == {"height", "width"}:
                kwargs["resize_to"] = (int(size["height"]), int(size["width"]))
                kwargs["size"] = min(kwargs["resize_to"])
                kwargs["crop_size"] = kwargs["resize_to"]          # what comes out (no crop by default)
                kwargs["do_center_crop"] = False
            else:
                if isinstance(size, Mapping):
                    if set(size) != {"shortest_edge"}:
                        raise ValueError(f"Only shortest-edge or (height, width) resizing is supported, got "
                                         f"size={size!r}")
                    size = size["shortest_edge"]
                kwargs["size"] = int(size)
        if "crop_size" in d:
            crop = d["crop_size"]
            if isinstance(crop, Mapping):
                crop = (crop["height"], crop["width"])
            elif isinstance(crop, int):
                crop = (crop, crop)
            if len(crop) != 2:
                raise ValueError(f"crop_size must be (height, width), got {d['crop_size']!r}")
            kwargs["crop_size"] = tuple(int(x) for x in crop)
        for key in ("image_mean", "image_std"):
            if key in d:
                value = d[key]
                kwargs[key] = (float(value),) * 3 if isinstance(value, (int, float)) else tuple(map(float, value))
        if "rescale_factor" in d:
            kwargs["rescale_factor"] = float(d["rescale_factor"])
        if "resample" in d:
            kwargs["resample"] = int(d["resample"])
        for key in ("do_resize", "do_center_crop", "do_rescale", "do_normalize"):
            if key in d:
                kwargs[key] = bool(d[key])
        if "do_pad" in d:
            kwargs["pad_to_square"] = bool(d["do_pad"])
        return cls(**kwargs)

    @classmethod
    def from_pretrained_dir(cls, path: str | os.PathLike) -> ClipPreprocessConfig:
        """Reads `preprocessor_config.json` from a checkpoint folder.

        Falls back to the `image_processor` entry of `processor_config.json`, where transformers 5's
        `ProcessorMixin.save_pretrained` puts it. Errors name the file.
        """
        folder = Path(path)
        file, key = folder / "preprocessor_config.json", None
        if not file.is_file() and (folder / "processor_config.json").is_file():
            file, key = folder / "processor_config.json", "image_processor"
        if not file.is_file():
            raise FileNotFoundError(f"No preprocessor_config.json (or processor_config.json) in {str(folder)!r}")
        try:
            d = json.loads(file.read_text())
            if key is not None:
                d = d[key]
            if not isinstance(d, Mapping):
                raise TypeError(f"expected a JSON object, got {type(d).__name__}")
            return cls.from_hf_dict(d)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"Malformed image preprocessor config {str(file)!r}: {type(e).__name__}: {e}") from e


def resize_shape(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """(new_height, new_width) with the shorter side = `shortest_edge`; the longer one is truncated, not
    rounded (transformers' `get_resize_output_image_size`, like torchvision)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(shortest_edge * long / short)
    return (new_long, shortest_edge) if width <= height else (shortest_edge, new_long)


def center_crop(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """[h, w, C] -> [height, width, C]: offsets floor((h - height) / 2); a side shorter than the crop is
    first zero-padded, the odd pixel going on top/left (transformers' `center_crop`)."""
    pad_h, pad_w = max(height - x.shape[0], 0), max(width - x.shape[1], 0)
    if pad_h or pad_w:
        x = np.pad(x, (((pad_h + 1) // 2, pad_h // 2), ((pad_w + 1) // 2, pad_w // 2), (0, 0)))
    top, left = (x.shape[0] - height) // 2, (x.shape[1] - width) // 2
    return x[top : top + height, left : left + width]


def clip_preprocess(image: Image.Image, cfg: ClipPreprocessConfig = ClipPreprocessConfig()) -> np.ndarray:
    """One PIL image (any mode, any size) -> float32[crop_h, crop_w, 3] (channels last)."""
    image = to_rgb(image)
    if cfg.do_resize:
        new_h, new_w = cfg.resize_to or resize_shape(image.height, image.width, cfg.size)
        image = image.resize((new_w, new_h), resample=cfg.resample)
    x = np.asarray(image)  # uint8[h, w, 3]
    if cfg.do_center_crop:
        x = center_crop(x, *cfg.crop_size)
    if cfg.do_rescale:
        x = (x.astype(np.float64) * cfg.rescale_factor).astype(np.float32)
    x = x.astype(np.float32, copy=False)
    if cfg.do_normalize:
        x = (x - np.asarray(cfg.image_mean, np.float32)) / np.asarray(cfg.image_std, np.float32)
    return x


def preprocess_batch(images: Sequence[ImageLike], cfg: ClipPreprocessConfig = ClipPreprocessConfig(),
                     pad_to_square: bool | None = None) -> np.ndarray:
    """PIL images or image paths -> float32[B, crop_h, crop_w, 3].

    `pad_to_square` (default `cfg.pad_to_square`) is LLaVA-1.5's `image_aspect_ratio="pad"`: `expand_to_square`
    with `cfg.pad_color` before resizing, as transformers' `LlavaImageProcessorPil(do_pad=True)`.
    """
    if not images:
        raise ValueError("preprocess_batch got no images")
    if pad_to_square is None:
        pad_to_square = cfg.pad_to_square
    out = []
    for image in images:
        image = to_rgb(image) if isinstance(image, Image.Image) else load_image(image)
        if pad_to_square:
            image = expand_to_square(image, cfg.pad_color)
        out.append(clip_preprocess(image, cfg))
    return np.stack(out)
