"""LLaVA-NeXT ("LLaVA-1.6") AnyRes images, host side (numpy + PIL): the pixels of the base image and its tiles.

Pixels (`anyres_preprocess`, `anyres_batch`), per image, equal to transformers 5's `LlavaNextImageProcessorPil`
(bit for bit; see tests/test_llava_next.py), channels last:

    image, any mode, (h, w)
      -> to_rgb                                   uint8[h, w, 3]
      -> best resolution (H, W) among the grid pinpoints        (`select_best_resolution`)
      -> aspect-preserving resize into (H, W), then zero padding centred to exactly (H, W)
      -> (H / S) x (W / S) tiles of S x S, row-major (S = crop size = the vision tower's image_size)
      -> in front of them the whole image squashed (not cropped) to (size, size): the "base" image
      -> each of the 1 + T through `clip_preprocess` (shortest-edge resize, centre crop, rescale, normalise)
    -> float32[1 + T, S, S, 3] and the original (h, w)

Image features: the gather index the model uses and the grid geometry live in `models/anyres_layout.py`
(re-exported here: `image_feature_index`, `NEWLINE`, `PAD`, ...).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from vlmcls_jax.data.preprocess import ClipPreprocessConfig, ImageLike, clip_preprocess, load_image, to_rgb
from vlmcls_jax.models.anyres_layout import (  # noqa: F401 (re-exported)
    NEWLINE,
    PAD,
    Pinpoints,
    anyres_grid_shape,
    image_feature_index,
    image_feature_index_batch,
    max_image_features,
    max_tiles,
    num_image_features,
    select_best_resolution,
    unpadded_ranges,
)

# ---------------------------------------------------------------------------------------------- pixels


def fit_size(height: int, width: int, target_height: int, target_width: int) -> tuple[int, int]:
    """(new_h, new_w) of the aspect-preserving resize into the target (transformers' `get_patch_output_size`:
    the limiting side takes the target, the other is rounded up and capped)."""
    scale_w, scale_h = target_width / width, target_height / height
    if scale_w < scale_h:
        return min(math.ceil(height * scale_w), target_height), target_width
    return target_height, min(math.ceil(width * scale_h), target_width)


def _tile_size(cfg: ClipPreprocessConfig) -> int:
    if cfg.crop_size[0] != cfg.crop_size[1]:
        raise ValueError(f"AnyRes tiles are square; crop_size {cfg.crop_size} is not")
    return cfg.crop_size[0]


def anyres_preprocess(image: Image.Image, cfg: ClipPreprocessConfig, pinpoints: Pinpoints
                      ) -> tuple[np.ndarray, tuple[int, int]]:
    """One PIL image -> (float32[1 + T, S, S, 3] base image then tiles, (height, width) of the RGB image).

    cfg: the checkpoint's CLIP preprocessing (for llava-v1.6: shortest edge 336, crop 336x336, bicubic, CLIP
    mean/std); S = its crop size; the base image is resized to (cfg.size, cfg.size); `cfg.pad_to_square` is
    ignored (`ClipPreprocessConfig.from_hf_dict` sets it from `do_pad`, which for LLaVA-NeXT means padding the
    tile axis of a batch, done by `anyres_batch`).  pinpoints: the model config's `image_grid_pinpoints`,
    [(H, W), ...]."""
    image = to_rgb(image)
    height, width = image.height, image.width
    S = _tile_size(cfg)
    best_h, best_w = select_best_resolution(height, width, pinpoints)
    new_h, new_w = fit_size(height, width, best_h, best_w)
    x = np.asarray(image.resize((new_w, new_h), resample=cfg.resample))
    top, extra_y = divmod(best_h - new_h, 2)
    left, extra_x = divmod(best_w - new_w, 2)
    x = np.pad(x, ((top, top + extra_y), (left, left + extra_x), (0, 0)))
    tiles = [Image.fromarray(np.ascontiguousarray(x[i : i + S, j : j + S]))
             for i in range(0, best_h, S) for j in range(0, best_w, S)]
    base = image.resize((cfg.size, cfg.size), resample=cfg.resample)
    return np.stack([clip_preprocess(t, cfg) for t in [base] + tiles]), (height, width)


def anyres_batch(images: Sequence[ImageLike], cfg: ClipPreprocessConfig, pinpoints: Pinpoints,
                 num_tiles: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """PIL images or paths -> (pixel_values float32[B, 1 + num_tiles, S, S, 3], image_sizes int32[B, 2]).

    Images with fewer tiles are zero-padded (never read: their index rows do not point there).  num_tiles
    defaults to `max_tiles(pinpoints, S)`, so every batch has the same shape (transformers pads to the
    batch's own maximum instead; the values the model reads are the same)."""
    if not images:
        raise ValueError("anyres_batch got no images")
    S = _tile_size(cfg)
    num_tiles = max_tiles(pinpoints, S) if num_tiles is None else num_tiles
    out = np.zeros((len(images), 1 + num_tiles, S, S, 3), np.float32)
    sizes = np.zeros((len(images), 2), np.int32)
    for i, image in enumerate(images):
        image = to_rgb(image) if isinstance(image, Image.Image) else load_image(image)
        pixels, sizes[i] = anyres_preprocess(image, cfg, pinpoints)
        if len(pixels) > 1 + num_tiles:
            raise ValueError(f"image {i} ({tuple(sizes[i])}) has {len(pixels) - 1} tiles, more than "
                             f"num_tiles={num_tiles}")
        out[i, : len(pixels)] = pixels
    return out, sizes
