"""Linear probes on frozen features (the study's Table 3 left / Table 10): is the class information in the
VLM's hidden states?

The study's probe (VLMClassifier `feature_analysis/probe.py`): one linear layer with bias on the raw features,
Adam at learning rate 1e-3, batch 512 in a fixed order, cross-entropy, a set number of epochs (500; 100 for
ImageNet), test accuracy after every epoch, and it reports the best epoch's TEST accuracy.  Picking the epoch
on the test set flatters the probe, so two numbers are reported, clearly named:

  val_selected   the epoch with the best accuracy on a validation split held out from the training
                 features (`val_fraction`, by seed), its test accuracy             (the default headline)
  best_on_test   the best test accuracy over epochs                               (the study's protocol)

The two numbers come from two trainings (`probe_job`): the study's column trains on the whole train split
(val_fraction=0) in the study's order; the validation-selected column holds `val_fraction` out.

The study's CLIP linear probe (`training_analysis/clip/finetune_clip.py:62-179`, the CLIP-L row of Table 3
right) is the same probe on `encode_image` features with `normalize=True` (F.normalize before the layer,
lines 132, 154, 170) and `shuffle=True` (lines 146-149: `shuffled_idxs = list(range(train_len));
random.shuffle(shuffled_idxs)` every epoch, Python's `random` seeded once with `--seed` 0, line 415: the
same orders here from `random.Random(seed)`).

One epoch is one `lax.scan` over fixed-size batches (the last batch padded and masked), jitted once.
"""

from __future__ import annotations

import dataclasses
import functools
import random

import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    epochs: int = 500
    batch_size: int = 512
    learning_rate: float = 1e-3
    val_fraction: float = 0.1       # of the training features, held out to choose the epoch (0: none)
    shuffle: bool = False           # the study's VLM probe keeps one fixed order; True reshuffles each epoch
                                    # as its CLIP probe: random.Random(seed).shuffle(list(range(n)))
    normalize: bool = False         # L2-normalise every feature vector first (the study's CLIP probe)
    seed: int = 0


def _batches(order: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Example order -> (indices int32[S, batch], weights float32[S, batch]); the last batch is padded with
    index 0 at weight 0."""
    n = len(order)
    steps = -(-n // batch_size)
    pad = steps * batch_size - n
    idx = np.concatenate([order, np.zeros(pad, int)]).astype(np.int32)
    w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    return idx.reshape(steps, batch_size), w.reshape(steps, batch_size)


def _loss(params, x, y, w):
    logits = x @ params["kernel"] + params["bias"]
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return (losses * w).sum() / jnp.maximum(w.sum(), 1.0)


@functools.partial(jax.jit, static_argnames=("optimizer",), donate_argnums=(0, 1))
def _epoch(params, opt_state, x, y, idx, w, *, optimizer):
    """One pass over the batches idx [S, batch] of the device-resident features x [N, D], labels y [N]."""
    def step(carry, batch):
        params, opt_state = carry
        i, wb = batch
        loss, grads = jax.value_and_grad(_loss)(params, x[i], y[i], wb)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (idx, w))
    return params, opt_state, losses


@jax.jit
def _predict(params, x):
    return jnp.argmax(x @ params["kernel"] + params["bias"], axis=-1)


def accuracy(params, x: np.ndarray, y: np.ndarray, batch_size: int = 8192) -> float:
    if len(y) == 0:
        return 0.0
    preds = np.concatenate([np.asarray(_predict(params, jnp.asarray(x[i:i + batch_size])))
                            for i in range(0, len(x), batch_size)])
    return float(np.mean(preds == y))


def _unit(x: np.ndarray) -> np.ndarray:
    """torch's F.normalize(x, dim=-1): x / max(|x|, 1e-12)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (train indices, validation indices): a seeded random `fraction` of range(n) held out."""
    order = np.random.default_rng(seed).permutation(n)
    k = int(round(n * fraction))
    return np.sort(order[k:]), np.sort(order[:k])


def train_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                num_classes: int, settings: ProbeSettings = ProbeSettings()) -> dict:
    """Trains a linear probe float32[N, D] -> num_classes and reports both protocols.

    Returns {"val_selected": {"epoch", "val_accuracy", "test_accuracy"} (None without a validation split),
    "best_on_test": {"epoch", "test_accuracy"}, "final_test_accuracy", "history": per-epoch
    {"epoch", "loss", "val_accuracy", "test_accuracy"}, "train_examples", "val_examples", "test_examples"}."""
    s = settings
    train_x, test_x = np.asarray(train_x, np.float32), np.asarray(test_x, np.float32)
    train_y, test_y = np.asarray(train_y, np.int64), np.asarray(test_y, np.int64)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"features must be [N, D] with the same D: train {train_x.shape}, test {test_x.shape}")
    for name, y in (("train", train_y), ("test", test_y)):
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} labels must lie in [0, {num_classes}); found {y.min()}..{y.max()}")
    if s.normalize:
        train_x, test_x = _unit(train_x), _unit(test_x)
    fit_idx, val_idx = split_validation(len(train_y), s.val_fraction, s.seed) if s.val_fraction > 0 else \
        (np.arange(len(train_y)), np.arange(0))
    fit_x, fit_y = train_x[fit_idx], train_y[fit_idx]
    val_x, val_y = train_x[val_idx], train_y[val_idx]

    D = train_x.shape[1]
    # torch.nn.Linear's default init (uniform +-1/sqrt(D)), as the study's probe starts from.
    bound = 1.0 / np.sqrt(D)
    k1, k2 = jax.random.split(jax.random.key(s.seed))
    params = {"kernel": jax.random.uniform(k1, (D, num_classes), minval=-bound, maxval=bound),
              "bias": jax.random.uniform(k2, (num_classes,), minval=-bound, maxval=bound)}
    optimizer = optax.adam(s.learning_rate)
    opt_state = optimizer.init(params)
    rng = random.Random(s.seed)
    x_dev, y_dev = jnp.asarray(fit_x), jnp.asarray(fit_y.astype(np.int32))     # on the device once
    fixed = _batches(np.arange(len(fit_y)), s.batch_size)
    history = []
    for epoch in range(1, s.epochs + 1):
        if s.shuffle:
            order = list(range(len(fit_y)))
            rng.shuffle(order)
            idx, w = _batches(np.array(order, int), s.batch_size)
        else:
            idx, w = fixed
        params, opt_state, losses = _epoch(params, opt_state, x_dev, y_dev, jnp.asarray(idx), jnp.asarray(w),
                                           optimizer=optimizer)
        history.append({"epoch": epoch, "loss": float(jnp.mean(losses)),
                        "val_accuracy": accuracy(params, val_x, val_y) if len(val_y) else None,
                        "test_accuracy": accuracy(params, test_x, test_y)})
    best_test = max(history, key=lambda h: h["test_accuracy"])   # first epoch among ties
    out = {"best_on_test": {"epoch": best_test["epoch"], "test_accuracy": best_test["test_accuracy"]},
           "val_selected": None, "final_test_accuracy": history[-1]["test_accuracy"], "history": history,
           "train_examples": len(fit_y), "val_examples": len(val_y), "test_examples": len(test_y)}
    if len(val_y):
        best_val = max(history, key=lambda h: h["val_accuracy"])
        out["val_selected"] = {"epoch": best_val["epoch"], "val_accuracy": best_val["val_accuracy"],
                               "test_accuracy": best_val["test_accuracy"]}
    return out
