"""LLaVA-NeXT ("LLaVA-1.6") AnyRes layout: which grid an image of (height, width) is tiled into, and where each
of its image features comes from.  Pure numpy, shared by the model (`models/llava_next.py`, which gathers with
the index) and the host pipeline (`data/anyres.py`, which cuts the pixels); models never import data.

Image features (`image_feature_index`).  The model runs the vision tower + projector on all 1 + T tiles of
an image, giving P = (S / patch) ** 2 features per tile: flattened, feature `t * P + p` is patch p (row-major)
of tile t (t = 0 the base image).  transformers' `pack_image_features` then arranges them as

    base image's P features,
    then the tiles' patch grid (T tiles form a (rows * g) x (cols * g) patch grid, g = S / patch),
    cropped back to the image's aspect ratio ("unpadding": the rows or columns that only saw the
    zero padding are dropped), row by row, each row followed by the `image_newline` embedding.

That count depends on the image size, so it cannot be a config constant.  `image_feature_index` gives, for one
image size, int32[N] indices into the flattened features, with `NEWLINE` (-1) where the `image_newline`
embedding goes; `image_feature_index_batch` pads rows with `PAD` (-2) to a common length.  The model gathers
with it (static shapes under jit: the index is an input, only its values change).  N equals the number of
`<image>` tokens `LlavaNextProcessor` expands each image to (`num_image_features`), with transformers' float
rounding (`round(x, 7)`) reproduced exactly.

Only the "default" feature selection (CLS dropped) is described: transformers' LLaVA-NeXT cannot lay out
"full" (CLS kept) tile features in a grid either.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NEWLINE = -1   # index value: the `image_newline` embedding
PAD = -2       # index value: no feature (padding past an image's count in a batch)

Pinpoints = Sequence[Sequence[int]]   # [(height, width), ...] candidate resolutions, multiples of the tile size


# ---------------------------------------------------------------------------------------------- geometry


def select_best_resolution(height: int, width: int, pinpoints: Pinpoints) -> tuple[int, int]:
    """The (H, W) among `pinpoints` keeping most of the image's pixels after an aspect-preserving fit, ties
    going to the least wasted area, then to the earliest listed (transformers' `select_best_resolution`)."""
    best, best_effective, best_wasted = None, 0, float("inf")
    for h, w in pinpoints:
        scale = min(w / width, h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = w * h - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (int(h), int(w)), effective, wasted
    if best is None:
        raise ValueError(f"no grid pinpoint fits a {height}x{width} image: {list(pinpoints)}")
    return best


def anyres_grid_shape(height: int, width: int, pinpoints: Pinpoints, tile_size: int) -> tuple[int, int]:
    """(rows, cols) of tiles for an image of (height, width) (transformers' `get_anyres_image_grid_shape`)."""
    best_h, best_w = select_best_resolution(height, width, pinpoints)
    return best_h // tile_size, best_w // tile_size


def max_tiles(pinpoints: Pinpoints, tile_size: int) -> int:
    """The most tiles any image gets (4 for LLaVA-NeXT's default pinpoints at 336): pad to 1 + this for a
    batch shape that never changes."""
    return max((h // tile_size) * (w // tile_size) for h, w in pinpoints)


def unpadded_ranges(height: int, width: int, grid_height: int, grid_width: int
                    ) -> tuple[tuple[int, int], tuple[int, int]]:
    """((y0, y1), (x0, x1)): the part of a grid_height x grid_width feature grid that covers the image rather
    than its padding, as transformers' `unpad_image` crops it (same float arithmetic and `round(x, 7)`)."""
    if width / height > grid_width / grid_height:
        new_height = int(round(height * (grid_width / width), 7))
        pad = (grid_height - new_height) // 2
        return (pad, grid_height - pad), (0, grid_width)
    new_width = int(round(width * (grid_height / height), 7))
    pad = (grid_width - new_width) // 2
    return (0, grid_height), (pad, grid_width - pad)


# ---------------------------------------------------------------------------------------------- features


def _grid(height: int, width: int, pinpoints: Pinpoints, image_size: int, patch_size: int):
    g = image_size // patch_size
    rows, cols = anyres_grid_shape(height, width, pinpoints, image_size)
    return g, rows, cols, unpadded_ranges(height, width, rows * g, cols * g)


def num_image_features(height: int, width: int, *, pinpoints: Pinpoints, image_size: int, patch_size: int) -> int:
    """How many features (= `<image>` tokens) an image of (height, width) becomes: P base features + the
    unpadded grid's rows x (cols + 1 newline)."""
    g, _, _, ((y0, y1), (x0, x1)) = _grid(height, width, pinpoints, image_size, patch_size)
    return g * g + (y1 - y0) * (x1 - x0 + 1)


def max_image_features(*, pinpoints: Pinpoints, image_size: int, patch_size: int) -> int:
    """An upper bound on `num_image_features` over all image sizes (the full grid of the largest pinpoint,
    which images of exactly that aspect ratio reach): a fixed index length for jit."""
    g = image_size // patch_size
    return g * g + max((h // image_size) * g * ((w // image_size) * g + 1) for h, w in pinpoints)


def image_feature_index(height: int, width: int, *, pinpoints: Pinpoints, image_size: int, patch_size: int
                        ) -> np.ndarray:
    """int32[N] (N = `num_image_features`): for each of the image's features in the order the language model
    sees them, its row in the image's flattened tile features [(1 + T) * P, D] (tile t, patch p -> t * P + p),
    or `NEWLINE` for the `image_newline` embedding.  Reproduces `pack_image_features` for the "default" selection."""
    g, rows, cols, ((y0, y1), (x0, x1)) = _grid(height, width, pinpoints, image_size, patch_size)
    P = g * g
    ys, xs = np.arange(y0, y1)[:, None], np.arange(x0, x1)[None, :]
    tile = (ys // g) * cols + xs // g                                          # row-major tiles, as they were cut
    grid = (1 + tile) * P + (ys % g) * g + xs % g                              # [y1 - y0, x1 - x0]
    grid = np.concatenate([grid, np.full((y1 - y0, 1), NEWLINE)], axis=1)    # a newline closes every row
    return np.concatenate([np.arange(P), grid.reshape(-1)]).astype(np.int32)


def image_feature_index_batch(image_sizes: Sequence[Sequence[int]] | np.ndarray, *, pinpoints: Pinpoints,
                              image_size: int, patch_size: int, length: int | None = None) -> np.ndarray:
    """int32[B_img, length] (default length: the longest image's count) of `image_feature_index` rows padded
    with `PAD`.  image_sizes: (height, width) per image, as `anyres_batch` returns them."""
    rows = [image_feature_index(int(h), int(w), pinpoints=pinpoints, image_size=image_size, patch_size=patch_size)
            for h, w in np.asarray(image_sizes).reshape(-1, 2)]
    longest = max((len(r) for r in rows), default=0)
    length = longest if length is None else length
    if longest > length:
        raise ValueError(f"an image needs {longest} features, more than length={length}")
    out = np.full((len(rows), length), PAD, np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out
