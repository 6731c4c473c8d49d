"""Placing image features at the image-token positions of already-expanded `input_ids` (LLaVA, BLIP-2,
InstructBLIP: transformers' processors repeat the image token once per feature, and the model overwrites those
positions' embeddings with the features, in order; `masked_scatter` in transformers)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def place_image_features(embeds: jax.Array, image_mask: jax.Array, features: jax.Array) -> jax.Array:
    """embeds: [B, T, D] token embeddings; image_mask: bool[B, T] (True at image tokens); features: [B_img, N, D].

    With B_img == B, row b's image tokens take image b's features, and a row without image tokens ignores its
    image (training batches mixing text-only and image rows pass zeros there).  Otherwise the images fill the
    image positions in order across the batch (transformers' rule), so their count must equal B_img * N.
    Counts are checked outside jit (ValueError).  Returns [B, T, D] in `embeds`' dtype.
    """
    features = features.astype(embeds.dtype)
    B, N = embeds.shape[0], features.shape[1]
    per_row = features.shape[0] == B
    if not isinstance(image_mask, jax.core.Tracer):
        counts = np.asarray(image_mask.sum(1))
        if per_row and not np.all((counts == 0) | (counts == N)):
            raise ValueError(f"Image features and image tokens do not match: rows have {counts.tolist()} "
                             f"image tokens; each must have 0 or {N}")
        if not per_row and counts.sum() != features.shape[0] * N:
            raise ValueError(f"Image features and image tokens do not match: {counts.sum()} image tokens "
                             f"in input_ids, {features.shape[0] * N} features ({features.shape[0]} images "
                             f"x {N})")
    if per_row:
        index = jnp.clip(jnp.cumsum(image_mask, axis=1) - 1, 0, N - 1)             # [B, T]
        gathered = jnp.take_along_axis(features, index[..., None], axis=1)
    else:
        flat = features.reshape(-1, features.shape[-1])
        index = jnp.clip(jnp.cumsum(image_mask.reshape(-1)) - 1, 0, flat.shape[0] - 1)
        gathered = flat[index].reshape(embeds.shape)
    return jnp.where(image_mask[..., None], gathered, embeds)
