"""Linear probe: reaches the known accuracy on separable synthetic features, its first Adam step equals a
hand computation, both reporting protocols are what they say, bad input is named."""

import numpy as np
import pytest

from vlmcls_jax.analysis.probe import ProbeSettings, split_validation, train_probe


def clusters(n_per_class, num_classes=4, dim=16, noise=0.3, seed=0, noise_seed=None):
    """Gaussian clusters around centres drawn from `seed`; the noise from `noise_seed` (default: seed)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim)) * 2
    if noise_seed is not None:
        rng = np.random.default_rng(noise_seed)
    y = np.repeat(np.arange(num_classes), n_per_class)
    return (centres[y] + noise * rng.normal(size=(len(y), dim))).astype(np.float32), y


def test_separable_features_are_learned():
    x, y = clusters(60)
    tx, ty = clusters(15, noise_seed=1)                       # the same classes, new draws
    out = train_probe(x, y, tx, ty, 4, ProbeSettings(epochs=40, batch_size=32, learning_rate=1e-2))
    assert out["val_selected"]["test_accuracy"] >= 0.95 and out["final_test_accuracy"] >= 0.95
    assert out["best_on_test"]["test_accuracy"] >= out["val_selected"]["test_accuracy"]
    assert len(out["history"]) == 40 and out["history"][-1]["loss"] < out["history"][0]["loss"]
    assert (out["train_examples"], out["val_examples"], out["test_examples"]) == (216, 24, 60)


def test_random_labels_stay_near_chance_on_test():
    x, _ = clusters(100)
    y = np.random.default_rng(3).integers(0, 4, len(x))
    out = train_probe(x[:300], y[:300], x[300:], y[300:], 4, ProbeSettings(epochs=20, batch_size=64))
    assert out["val_selected"]["test_accuracy"] < 0.5


def test_first_adam_step_by_hand():
    """One batch, one epoch: Adam's first update is -lr * g / (|g| + eps) elementwise (bias-corrected)."""
    x, y = clusters(5, num_classes=3, dim=4)
    s = ProbeSettings(epochs=1, batch_size=64, learning_rate=0.1, val_fraction=0.0)
    out0 = train_probe(x, y, x, y, 3, ProbeSettings(epochs=1, batch_size=64, learning_rate=0.0, val_fraction=0.0))
    out1 = train_probe(x, y, x, y, 3, s)
    # Recompute: the initial parameters are the lr=0 run's (same seed); gradient of the mean cross-entropy.
    import jax
    bound = 1 / np.sqrt(4)
    k1, k2 = jax.random.split(jax.random.key(0))
    W = np.asarray(jax.random.uniform(k1, (4, 3), minval=-bound, maxval=bound))
    b = np.asarray(jax.random.uniform(k2, (3,), minval=-bound, maxval=bound))
    logits = x @ W + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    loss0 = -np.mean(np.log(p[np.arange(len(y)), y]))
    assert out0["history"][0]["loss"] == pytest.approx(loss0, rel=1e-5)
    g = p.copy()
    g[np.arange(len(y)), y] -= 1
    gW, gb = x.T @ g / len(y), g.mean(0)
    W1, b1 = W - 0.1 * gW / (np.abs(gW) + 1e-8), b - 0.1 * gb / (np.abs(gb) + 1e-8)
    logits1 = x @ W1 + b1
    assert out1["final_test_accuracy"] == pytest.approx(np.mean(logits1.argmax(1) == y))
    # The recorded loss is the pre-update loss of the only batch.
    assert out1["history"][0]["loss"] == pytest.approx(loss0, rel=1e-5)


def test_protocols_and_validation_split():
    train, val = split_validation(100, 0.2, seed=5)
    assert len(val) == 20 and len(train) == 80 and not set(train) & set(val)
    assert (split_validation(100, 0.2, seed=5)[1] == val).all()
    x, y = clusters(30)
    out = train_probe(x, y, x[:40], y[:40], 4, ProbeSettings(epochs=5, batch_size=16, val_fraction=0.0))
    assert out["val_selected"] is None and out["val_examples"] == 0
    a = train_probe(x, y, x, y, 4, ProbeSettings(epochs=3, batch_size=16, shuffle=True, seed=1))
    b = train_probe(x, y, x, y, 4, ProbeSettings(epochs=3, batch_size=16, shuffle=True, seed=1))
    assert a["history"] == b["history"]


def test_bad_input_is_named():
    x, y = clusters(5)
    with pytest.raises(ValueError, match="same D"):
        train_probe(x, y, x[:, :3], y, 4, ProbeSettings(epochs=1))
    with pytest.raises(ValueError, match=r"train labels must lie in \[0, 3\)"):
        train_probe(x, y, x, y, 3, ProbeSettings(epochs=1))


def test_the_study_clip_probes_order_and_normalisation():
    """training_analysis/clip/finetune_clip.py (the study's CLIP linear probe), seeded by `random.seed(args.seed)`
    (line 415, --seed 0), each epoch:

        146  shuffled_idxs = list(range(train_len))
        147  random.shuffle(shuffled_idxs)
        148  shuffled_train_feats = train_features[shuffled_idxs]
        ...
        154  outputs = classifier(F.normalize(shuffled_train_feats[i : i + bsz].cuda(), dim=-1))

    One epoch with shuffle=True, normalize=True equals one epoch in a fixed order on the features the study
    feeds: normalised, in random.seed(0)'s first shuffle."""
    import random
    x, y = clusters(20)
    x = x * np.arange(1, len(x) + 1, dtype=np.float32)[:, None]         # norms differ: normalising matters
    random.seed(0)
    shuffled_idxs = list(range(len(y)))
    random.shuffle(shuffled_idxs)
    unit = x / np.linalg.norm(x, axis=-1, keepdims=True)
    common = dict(epochs=1, batch_size=16, learning_rate=1e-2, val_fraction=0.0, seed=0)
    ours = train_probe(x, y, x, y, 4, ProbeSettings(shuffle=True, normalize=True, **common))
    study = train_probe(unit[shuffled_idxs], y[shuffled_idxs], unit, y, 4, ProbeSettings(**common))
    assert ours["history"] == study["history"]
    assert train_probe(x, y, x, y, 4, ProbeSettings(**common))["history"] != study["history"]
