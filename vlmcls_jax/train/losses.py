"""Loss functions as pure functions of arrays, each returning (scalar loss, metrics dict).

They are the pieces that objectives (`objectives.py`) assemble; each is unit-tested against hand-computed
values.  Means are over supervised tokens / examples of the whole (global) batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example cross-entropy.  logits: float[..., V]; labels: int[...]; smoothing spreads
    `label_smoothing` of the target mass uniformly over the V classes.  Returns float32[...]."""
    logits = logits.astype(jnp.float32)
    if label_smoothing == 0.0:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    num_classes = logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def next_token_loss(logits: jax.Array, tokens: jax.Array, loss_mask: jax.Array, label_smoothing: float = 0.0):
    """Language-modelling loss on answer tokens only (LLaVA's: prompt and image positions are masked).

    logits: float[B, T, V] (position t predicts token t + 1); tokens: int[B, T];
    loss_mask: [B, T], 1 where tokens[t] is supervised (position 0 is never: nothing predicts it).
    Returns (mean over supervised tokens of the batch, metrics).  A batch with no supervised token gives
    loss 0 and `supervised_tokens` 0; the data pipeline refuses such samples before they get here.
    """
    mask = loss_mask[:, 1:].astype(jnp.float32)
    per_token = smoothed_cross_entropy(logits[:, :-1], tokens[:, 1:], label_smoothing)
    count = mask.sum()
    loss = (per_token * mask).sum() / jnp.maximum(count, 1.0)
    correct = (jnp.argmax(logits[:, :-1], -1) == tokens[:, 1:]).astype(jnp.float32)
    return loss, {"loss": loss, "token_accuracy": (correct * mask).sum() / jnp.maximum(count, 1.0),
                  "supervised_tokens": count}


def pool(hidden: jax.Array, mask: jax.Array, mode: str) -> jax.Array:
    """hidden: [B, T, D]; mask: [B, T] (1 = real token).  "last": the last real token (right- or
    left-padded rows alike); "mean": the mean over real tokens.  Returns float32[B, D]."""
    hidden = hidden.astype(jnp.float32)
    mask = mask.astype(jnp.float32)
    if mode == "mean":
        return (hidden * mask[..., None]).sum(1) / jnp.maximum(mask.sum(1, keepdims=True), 1.0)
    if mode == "last":
        last = hidden.shape[1] - 1 - jnp.argmax(mask[:, ::-1], axis=1)
        return hidden[jnp.arange(hidden.shape[0]), last]
    raise ValueError(f"pool mode {mode!r} is not 'last' or 'mean'")


def classification_loss(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0):
    """logits: float[B, C]; labels: int[B].  Returns (mean cross-entropy, metrics with accuracy)."""
    loss = smoothed_cross_entropy(logits, labels, label_smoothing).mean()
    accuracy = (jnp.argmax(logits, -1) == labels).astype(jnp.float32).mean()
    return loss, {"loss": loss, "accuracy": accuracy}


def clip_contrastive_loss(image_embeds: jax.Array, text_embeds: jax.Array, logit_scale: jax.Array):
    """CLIP's symmetric InfoNCE.  image_embeds, text_embeds: float[B, E] (row i of each is a pair, not
    normalised); logit_scale: the log temperature (the model's `logit_scale` parameter).
    Returns (mean of image->text and text->image cross-entropy, metrics)."""
    img = image_embeds.astype(jnp.float32)
    txt = text_embeds.astype(jnp.float32)
    img = img / jnp.linalg.norm(img, axis=-1, keepdims=True)
    txt = txt / jnp.linalg.norm(txt, axis=-1, keepdims=True)
    logits = jnp.exp(logit_scale.astype(jnp.float32)) * img @ txt.T          # [B_img, B_txt]
    labels = jnp.arange(logits.shape[0])
    i2t = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    t2i = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()
    loss = (i2t + t2i) / 2
    accuracy = (jnp.argmax(logits, -1) == labels).astype(jnp.float32).mean()
    return loss, {"loss": loss, "image_to_text_accuracy": accuracy}
