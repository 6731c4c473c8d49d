"""`train.losses` against values computed by hand or with plain numpy (never with the function under test)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from vlmcls_jax.train import losses


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


LOGITS = np.array([[2.0, -1.0, 0.5, 0.0],
                   [0.1, 0.2, 0.3, 0.4],
                   [-3.0, 4.0, 1.0, -0.5]], np.float32)
LABELS = np.array([0, 3, 2], np.int32)


# ---------------------------------------------------------------------------------------- cross-entropy


def test_smoothed_cross_entropy_no_smoothing():
    expected = -np_log_softmax(LOGITS)[np.arange(3), LABELS]
    got = losses.smoothed_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS))
    assert got.shape == (3,) and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=1e-6)
    # one value by hand: row 1 is [0.1, 0.2, 0.3, 0.4], label 3
    by_hand = -(0.4 - math.log(sum(math.exp(v) for v in (0.1, 0.2, 0.3, 0.4))))
    assert float(got[1]) == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_smoothed_cross_entropy_with_smoothing(eps):
    V = LOGITS.shape[1]
    target = (1 - eps) * np.eye(V)[LABELS] + eps / V
    expected = -(target * np_log_softmax(LOGITS)).sum(-1)
    got = losses.smoothed_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS), label_smoothing=eps)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=1e-6)
    plain = -np_log_softmax(LOGITS)[np.arange(3), LABELS]
    assert not np.allclose(np.asarray(got), plain)


def test_smoothed_cross_entropy_upcasts_bf16_and_keeps_leading_axes():
    logits = np.stack([LOGITS, LOGITS[::-1]])                      # [2, 3, V]
    labels = np.stack([LABELS, LABELS[::-1]])
    got = losses.smoothed_cross_entropy(jnp.asarray(logits, jnp.bfloat16), jnp.asarray(labels))
    assert got.shape == (2, 3) and got.dtype == jnp.float32
    bf = np.asarray(jnp.asarray(logits, jnp.bfloat16).astype(jnp.float32))
    expected = -np.take_along_axis(np_log_softmax(bf), labels[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------- next-token loss

V = 6
TOKENS = np.array([[1, 4, 2, 5, 3],
                   [2, 2, 0, 1, 4]], np.int32)
# Supervised target tokens: row 0 -> positions 3, 4; row 1 -> positions 2, 3, 4 (5 in all).
LOSS_MASK = np.array([[0, 0, 0, 1, 1],
                      [0, 0, 1, 1, 1]], np.int32)


def next_token_logits():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 5, V)).astype(np.float32)
    # make some predictions right so that the accuracy is neither 0 nor 1:
    logits[0, 2, 5] = 10.0   # position 2 predicts token[3] = 5: correct
    logits[0, 3, 0] = 10.0   # position 3 predicts token[4] = 3: wrong (says 0)
    logits[1, 1, 0] = 10.0   # position 1 predicts token[2] = 0: correct
    logits[1, 2, 1] = 10.0   # position 2 predicts token[3] = 1: correct
    logits[1, 3, 2] = 10.0   # position 3 predicts token[4] = 4: wrong (says 2)
    return logits


def np_next_token_loss(logits, tokens, mask):
    logp = np_log_softmax(logits)
    total, count = 0.0, 0
    for b in range(tokens.shape[0]):
        for t in range(1, tokens.shape[1]):
            if mask[b, t]:
                total -= logp[b, t - 1, tokens[b, t]]
                count += 1
    return total / count, count


def test_next_token_loss_is_mean_over_supervised_targets():
    logits = next_token_logits()
    loss, metrics = losses.next_token_loss(jnp.asarray(logits), jnp.asarray(TOKENS), jnp.asarray(LOSS_MASK))
    expected, count = np_next_token_loss(logits, TOKENS, LOSS_MASK)
    assert count == 5
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(metrics["loss"]) == float(loss)
    assert float(metrics["supervised_tokens"]) == 5
    assert float(metrics["token_accuracy"]) == pytest.approx(3 / 5)


def test_next_token_loss_ignores_prompt_positions():
    logits = next_token_logits()
    base, _ = losses.next_token_loss(jnp.asarray(logits), jnp.asarray(TOKENS), jnp.asarray(LOSS_MASK))
    changed = logits.copy()
    # Positions whose *next* token is unsupervised (row 0: t = 0, 1; row 1: t = 0), plus the last position
    # (which predicts nothing), may change freely.
    changed[0, 0] += 7.0
    changed[0, 1] = -changed[0, 1] * 3
    changed[1, 0] = 100.0
    changed[:, 4] = np.random.default_rng(1).standard_normal((2, V)) * 50
    same, _ = losses.next_token_loss(jnp.asarray(changed), jnp.asarray(TOKENS), jnp.asarray(LOSS_MASK))
    assert float(same) == float(base)
    # ...while changing a position that predicts a supervised token changes it.
    changed[0, 2, 5] = -10.0
    other, _ = losses.next_token_loss(jnp.asarray(changed), jnp.asarray(TOKENS), jnp.asarray(LOSS_MASK))
    assert float(other) > float(base) + 1.0


def test_next_token_loss_position_zero_is_never_supervised():
    """A mask bit on position 0 is dropped: nothing predicts the first token."""
    logits = next_token_logits()
    mask = LOSS_MASK.copy()
    mask[:, 0] = 1
    a, ma = losses.next_token_loss(jnp.asarray(logits), jnp.asarray(TOKENS), jnp.asarray(mask))
    b, _ = losses.next_token_loss(jnp.asarray(logits), jnp.asarray(TOKENS), jnp.asarray(LOSS_MASK))
    assert float(a) == float(b) and float(ma["supervised_tokens"]) == 5


def test_next_token_loss_with_label_smoothing():
    logits = next_token_logits()
    eps = 0.2
    logp = np_log_softmax(logits)
    per = []
    for b, t in zip(*np.nonzero(LOSS_MASK)):
        target = (1 - eps) * np.eye(V)[TOKENS[b, t]] + eps / V
        per.append(-(target * logp[b, t - 1]).sum())
    loss, _ = losses.next_token_loss(jnp.asarray(logits), jnp.asarray(TOKENS), jnp.asarray(LOSS_MASK), eps)
    assert float(loss) == pytest.approx(np.mean(per), rel=1e-5)


def test_next_token_loss_empty_mask_gives_zero():
    logits = next_token_logits()
    loss, metrics = losses.next_token_loss(jnp.asarray(logits), jnp.asarray(TOKENS), jnp.zeros((2, 5), jnp.int32))
    assert float(loss) == 0.0
    assert float(metrics["supervised_tokens"]) == 0.0
    assert float(metrics["token_accuracy"]) == 0.0
    assert np.isfinite(float(loss))


# ---------------------------------------------------------------------------------------- pooling

HIDDEN = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)


def test_pool_last_right_padded():
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32)
    got = np.asarray(losses.pool(jnp.asarray(HIDDEN), jnp.asarray(mask), "last"))
    np.testing.assert_array_equal(got, np.stack([HIDDEN[0, 2], HIDDEN[1, 4]]))


def test_pool_last_left_padded():
    mask = np.array([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]], np.int32)
    got = np.asarray(losses.pool(jnp.asarray(HIDDEN), jnp.asarray(mask), "last"))
    np.testing.assert_array_equal(got, np.stack([HIDDEN[0, 4], HIDDEN[1, 4]]))


def test_pool_last_mixed_and_bool_mask():
    mask = np.array([[0, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)
    got = np.asarray(losses.pool(jnp.asarray(HIDDEN, jnp.bfloat16), jnp.asarray(mask), "last"))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.stack([HIDDEN[0, 2], HIDDEN[1, 0]]))


def test_pool_mean():
    mask = np.array([[1, 1, 0, 0, 0], [0, 1, 1, 1, 1]], np.int32)
    got = np.asarray(losses.pool(jnp.asarray(HIDDEN), jnp.asarray(mask), "mean"))
    expected = np.stack([HIDDEN[0, :2].mean(0), HIDDEN[1, 1:].mean(0)])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # by hand: row 0 mean of [0,1,2] and [3,4,5]
    np.testing.assert_allclose(got[0], [1.5, 2.5, 3.5])


def test_pool_bad_mode_raises():
    with pytest.raises(ValueError, match="max"):
        losses.pool(jnp.asarray(HIDDEN), jnp.ones((2, 5)), "max")


# ---------------------------------------------------------------------------------------- classification


def test_classification_loss():
    loss, metrics = losses.classification_loss(jnp.asarray(LOGITS), jnp.asarray(LABELS))
    expected = -np_log_softmax(LOGITS)[np.arange(3), LABELS].mean()
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(metrics["loss"]) == float(loss)
    # argmax per row: 0, 3, 1 vs labels 0, 3, 2 -> 2/3
    assert float(metrics["accuracy"]) == pytest.approx(2 / 3)
    eps = 0.1
    smoothed, _ = losses.classification_loss(jnp.asarray(LOGITS), jnp.asarray(LABELS), eps)
    target = (1 - eps) * np.eye(4)[LABELS] + eps / 4
    assert float(smoothed) == pytest.approx(-(target * np_log_softmax(LOGITS)).sum(-1).mean(), rel=1e-6)


# ---------------------------------------------------------------------------------------- CLIP


def np_clip_loss(img, txt, logit_scale):
    img = img / np.linalg.norm(img, axis=-1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=-1, keepdims=True)
    logits = np.exp(logit_scale) * img.astype(np.float64) @ txt.T.astype(np.float64)
    n = np.arange(len(img))
    i2t = -np_log_softmax(logits)[n, n].mean()
    t2i = -np_log_softmax(logits.T)[n, n].mean()
    return (i2t + t2i) / 2, (logits.argmax(-1) == n).mean()


def test_clip_contrastive_loss_vs_numpy():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((5, 8)).astype(np.float32) * 3
    txt = img + 0.8 * rng.standard_normal((5, 8)).astype(np.float32)
    scale = np.float32(np.log(10.0))
    loss, metrics = losses.clip_contrastive_loss(jnp.asarray(img), jnp.asarray(txt), jnp.asarray(scale))
    expected, acc = np_clip_loss(img, txt, scale)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(metrics["image_to_text_accuracy"]) == pytest.approx(acc)


def test_clip_contrastive_loss_2x2_closed_form():
    """images e1, e2 (unnormalised: 3 e1, 2 e2); texts (1, 1)/sqrt2 (given as (5, 5)) and e2; temperature s.
    logits = s [[1/r, 0], [1/r, 1]] with r = sqrt 2.
    image->text: rows [s/r, 0] (label 0), [s/r, s] (label 1): log(1 + e^{-s/r}), log(1 + e^{s/r - s})
    text->image: rows [s/r, s/r] (label 0), [0, s] (label 1):  log 2,            log(1 + e^{-s})."""
    s = 4.0
    r = math.sqrt(2)
    img = jnp.array([[3.0, 0.0], [0.0, 2.0]])
    txt = jnp.array([[5.0, 5.0], [0.0, 1.0]])
    loss, metrics = losses.clip_contrastive_loss(img, txt, jnp.asarray(math.log(s)))
    i2t = (math.log1p(math.exp(-s / r)) + math.log1p(math.exp(s / r - s))) / 2
    t2i = (math.log(2) + math.log1p(math.exp(-s))) / 2
    assert float(loss) == pytest.approx((i2t + t2i) / 2, rel=1e-5)
    assert float(metrics["image_to_text_accuracy"]) == 1.0
    # identical pairs of orthogonal embeddings: loss = log(1 + e^{-s}) in both directions
    eye, _ = losses.clip_contrastive_loss(jnp.eye(2) * 7, jnp.eye(2), jnp.asarray(math.log(s)))
    assert float(eye) == pytest.approx(math.log1p(math.exp(-s)), rel=1e-5)
    # swapping the pairs: every row's label is now the wrong one -> log(1 + e^{s})
    swapped, m = losses.clip_contrastive_loss(jnp.eye(2), jnp.eye(2)[::-1], jnp.asarray(math.log(s)))
    assert float(swapped) == pytest.approx(math.log1p(math.exp(s)), rel=1e-5)
    assert float(m["image_to_text_accuracy"]) == 0.0
