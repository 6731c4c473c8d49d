"""LLaVA-NeXT (LLaVA-1.6): LLaVA-1.5 plus AnyRes tiling and the `image_newline` embedding.

An image of (height, width) arrives as 1 + T tiles of S x S pixels (the base image squashed to S x S, then
the tiles of its best-fitting grid resolution; `data.anyres`).  Every tile goes through the LLaVA-1.5 path
(CLIP tower -> chosen hidden layer(s), CLS dropped -> projector), P = (S / patch) ** 2 features per tile.
Those are then arranged as transformers' `pack_image_features` does: the base image's P features, then the
tiles' patch grid cropped to the image's aspect ratio, row by row, each row closed by `image_newline`.

The number of features (= `<image>` tokens in `input_ids`) so depends on each image's size; jit wants static
shapes.  Design: the host computes, per image, an int index into the image's flattened tile features
(`LlavaNextConfig.image_index`, from `models.anyres_layout.image_feature_index`), with `NEWLINE` (-1) for the
`image_newline` embedding and `PAD` (-2) past the image's count.  The model computes features for all tiles
of all images in one batch and gathers with the index.  Shapes:

    pixel_values  float[B_img, 1 + T, S, S, 3]   NHWC tiles; T fixed per batch (zero tiles past an image's
                                                  own, never read; `data.anyres.anyres_batch`)
    image_index   int32[B_img, N]                 N fixed per batch (e.g. `config.max_num_image_tokens`)
    features      [B_img, N, D]                   `get_image_features`; zeros at PAD

`config.num_image_tokens` does not exist here (it raises, saying so): use
`config.num_image_tokens_for(height, width)`, which equals `LlavaNextProcessor`'s count.

Names mirror transformers-5 LLaVA-NeXT files (`image_newline`, `vision_tower.*`, `multi_modal_projector.*`,
`language_model.model.*`, `language_model.lm_head`).  Only the "default" feature selection (CLS dropped) is
supported, as in transformers, whose tile grid cannot hold CLS features either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vlmcls_jax.models import anyres_layout
from vlmcls_jax.models.anyres_layout import NEWLINE, PAD
from vlmcls_jax.models.layers import param
from vlmcls_jax.models.llava import LlavaConfig, LlavaForConditionalGeneration

DEFAULT_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))


@dataclasses.dataclass(frozen=True)
class LlavaNextConfig(LlavaConfig):
    """`LlavaConfig` + `image_grid_pinpoints`: the (height, width) grid resolutions AnyRes chooses from, each a
    multiple of the vision tower's image_size.  Stored as a tuple of pairs (lists are accepted)."""

    image_grid_pinpoints: tuple[tuple[int, int], ...] = DEFAULT_PINPOINTS

    def __post_init__(self):
        super().__post_init__()
        pinpoints = tuple((int(h), int(w)) for h, w in self.image_grid_pinpoints)
        object.__setattr__(self, "image_grid_pinpoints", pinpoints)
        S, p = self.vision_config.image_size, self.vision_config.patch_size
        if not pinpoints:
            raise ValueError("image_grid_pinpoints is empty")
        bad = [pp for pp in pinpoints if pp[0] <= 0 or pp[1] <= 0 or pp[0] % S or pp[1] % S]
        if bad:
            raise ValueError(f"image_grid_pinpoints {bad} are not positive multiples of the vision image_size {S}")
        if S % p:
            raise ValueError(f"vision image_size {S} is not a multiple of patch_size {p}")
        if self.vision_feature_select_strategy != "default":
            raise ValueError("LLaVA-NeXT supports only vision_feature_select_strategy='default' (transformers' "
                             "tile grid has no place for CLS features)")

    @property
    def num_image_tokens(self) -> int:
        raise AttributeError("LLaVA-NeXT has no fixed number of image tokens: it depends on the image size; use "
                             "config.num_image_tokens_for(height, width)")

    @property
    def max_tiles(self) -> int:
        """Tiles of the largest grid (4 for the default pinpoints): pixel_values' dim 1 is at most 1 + this."""
        return anyres_layout.max_tiles(self.image_grid_pinpoints, self.vision_config.image_size)

    @property
    def max_num_image_tokens(self) -> int:
        """Upper bound of `num_image_tokens_for` over all sizes (2928 for LLaVA-1.6 at 336 px: 576 + 48 x 49)."""
        return anyres_layout.max_image_features(**self._geometry())

    def _geometry(self) -> dict:
        vc = self.vision_config
        return dict(pinpoints=self.image_grid_pinpoints, image_size=vc.image_size, patch_size=vc.patch_size)

    def num_image_tokens_for(self, height: int, width: int) -> int:
        """`<image>` tokens (= features) for an image of (height, width) pixels, as `LlavaNextProcessor` counts."""
        return anyres_layout.num_image_features(height, width, **self._geometry())

    def image_index(self, image_sizes: Sequence[Sequence[int]] | np.ndarray, length: int | None = None) -> np.ndarray:
        """int32[B_img, length] gather index for images of `image_sizes` [(height, width), ...]; see the module
        docstring.  length: default the longest image's count (pass `max_num_image_tokens` for one shape)."""
        return anyres_layout.image_feature_index_batch(image_sizes, length=length, **self._geometry())


class LlavaNextForConditionalGeneration(LlavaForConditionalGeneration):
    """LLaVA with AnyRes images.  Same interface as `LlavaForConditionalGeneration`, plus the keyword
    `image_index` (see the module docstring) wherever `pixel_values` goes."""

    def __init__(self, cfg: LlavaNextConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg, rngs=rngs)
        D = cfg.text_config.hidden_size
        # transformers initialises it N(0, 1/D) (`embed_std`); trained checkpoints overwrite it.
        self.image_newline = param(rngs, nnx.initializers.normal(stddev=D ** -0.5), (D,), ("embed",),
                                   cfg.text_config.param_dtype)

    def tile_features(self, pixel_values: jax.Array) -> jax.Array:
        """float[B_img, 1 + T, S, S, 3] -> [B_img, (1 + T) * P, D]: projector features of every tile, flattened
        tile-major (row t * P + p = patch p of tile t), the rows `image_index` points at."""
        B, tiles = pixel_values.shape[:2]
        flat = super().get_image_features(pixel_values.reshape((B * tiles,) + pixel_values.shape[2:]))
        return flat.reshape(B, tiles * flat.shape[1], flat.shape[2])

    def get_image_features(self, pixel_values: jax.Array, image_index: jax.Array) -> jax.Array:
        """pixel_values float[B_img, 1 + T, S, S, 3], image_index int[B_img, N] -> [B_img, N, D]: image i's
        features in the order its `<image>` tokens take them (transformers' `pack_image_features`), with the
        `image_newline` embedding at NEWLINE and zeros at PAD."""
        rows = pixel_values.shape[1] * self.config.vision_config.num_patches       # (1 + T) * P
        if not isinstance(image_index, jax.core.Tracer):                            # checked before any compute
            index = np.asarray(image_index)
            if index.ndim != 2 or index.shape[0] != pixel_values.shape[0]:
                raise ValueError(f"image_index of shape {index.shape} for {pixel_values.shape[0]} images; expected "
                                 "[B_img, N]")
            if index.size and (index.max() >= rows or index.min() < PAD):
                raise ValueError(f"image_index values must lie in [{PAD}, {rows}) for {pixel_values.shape[1]} tiles "
                                 f"per image; got {index.min()}..{index.max()} (too few tiles in pixel_values?)")
        features = self.tile_features(pixel_values)
        index = jnp.asarray(image_index)
        gathered = jnp.take_along_axis(features, jnp.clip(index, 0, rows - 1)[..., None], axis=1)
        newline = self.image_newline[...].astype(gathered.dtype)
        gathered = jnp.where((index == NEWLINE)[..., None], newline, gathered)
        return jnp.where((index == PAD)[..., None], jnp.zeros((), gathered.dtype), gathered)

    def embed(self, input_ids: jax.Array, pixel_values: jax.Array | None = None,
              image_index: jax.Array | None = None) -> jax.Array:
        """`VisionLanguageModel.embed` with `image_index` also taken by position."""
        return super().embed(input_ids, pixel_values, image_index=image_index)

    def place_features(self, embeds: jax.Array, image_mask: jax.Array, pixel_values: jax.Array,
                       image_index: jax.Array | None = None) -> jax.Array:
        """embeds [B, T, D] with image features at `image_mask` (bool[B, T]; each image already expanded to its
        `num_image_tokens_for` ids in input_ids).

        As in LLaVA: with B_img == B, row b's image tokens take image b's features (a row without image tokens
        ignores its image); otherwise the images fill the image positions in order across the batch
        (transformers' rule).  Counts are checked outside jit, before any image is computed.
        """
        if image_index is None:
            raise ValueError("LLaVA-NeXT needs image_index with pixel_values (config.image_index(image_sizes))")
        counts = (jnp.asarray(image_index) != PAD).sum(1)                                    # [B_img]
        B_img, N = jnp.shape(image_index)
        per_row = B_img == image_mask.shape[0]
        if not isinstance(image_mask, jax.core.Tracer) and not isinstance(counts, jax.core.Tracer):
            have, need = np.asarray(image_mask.sum(1)), np.asarray(counts)
            if per_row and not np.all((have == 0) | (have == need)):
                raise ValueError(f"Image features and image tokens do not match: rows have {have.tolist()} image "
                                 f"tokens; each must have 0 or its image's {need.tolist()}")
            if not per_row and have.sum() != need.sum():
                raise ValueError(f"Image features and image tokens do not match: {have.sum()} image tokens in "
                                 f"input_ids, {need.sum()} features ({B_img} images with {need.tolist()})")
        features = self.get_image_features(pixel_values, image_index).astype(embeds.dtype)   # [B_img, N, D]
        if per_row:
            k = jnp.clip(jnp.cumsum(image_mask, axis=1) - 1, 0, N - 1)                        # [B, T]
            gathered = jnp.take_along_axis(features, k[..., None], axis=1)
        else:
            rank = jnp.cumsum(image_mask.reshape(-1)) - 1                                    # global image-token rank
            ends = jnp.cumsum(counts)
            image = jnp.clip(jnp.searchsorted(ends, rank, side="right"), 0, B_img - 1)
            k = jnp.clip(rank - (ends - counts)[image], 0, N - 1)
            gathered = features[image, k].reshape(embeds.shape)
        return jnp.where(image_mask[..., None], gathered, embeds)
