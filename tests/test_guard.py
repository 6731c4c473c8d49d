"""The step guard (vlmcls_jax/train/guard.py): a non-finite or spiking step changes nothing and is counted."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from test_optimizer import FAST_COMPILE, text_batch
from tiny_models import LLAMA
from vlmcls_jax.models import LlamaForCausalLM
from vlmcls_jax.train import guard
from vlmcls_jax.train.objectives import make_objective
from vlmcls_jax.train.optimizer import ParamGroup, make_optimizer
from vlmcls_jax.train.step import init_train_state, split_model, train_step

BASE = make_objective("text_generation")


def poisonable(model, batch):
    """The next-token objective times batch["scale"]: scale NaN poisons the loss and every gradient."""
    loss, metrics = BASE(model, batch)
    return loss * batch["scale"], metrics


def fresh(config=guard.GuardConfig()):
    model = LlamaForCausalLM(LLAMA, rngs=nnx.Rngs(0))
    groups = [ParamGroup("all", ("all",), 1e-2)]
    tx = make_optimizer(split_model(model, groups)[1], groups, total_steps=10, warmup_ratio=0.0)
    graphdef, state, frozen = init_train_state(model, groups, tx)
    state, frozen = jax.device_put((state, frozen), jax.devices()[0])
    step = jax.jit(functools.partial(train_step, graphdef, poisonable, tx, guard=config),
                   compiler_options=FAST_COMPILE)
    return state, frozen, lambda s, batch: step(s, frozen, batch, None)


def batch(seed, scale=1.0):
    return dict(text_batch(seed=seed), scale=np.float32(scale))


def leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves((state.params, state.opt_state))]


def assert_same(a, b):
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_nonfinite_step_changes_nothing_and_is_counted():
    state, _, step = fresh()
    after_first, m1 = step(state, batch(0))
    assert float(m1["skipped"]) == 0.0
    poisoned, m2 = step(after_first, batch(1, scale=np.nan))
    assert np.isnan(float(m2["loss"]))
    assert (float(m2["skipped"]), float(m2["nonfinite"]), float(m2["skipped_total"]), float(m2["bad_in_a_row"])) \
        == (1.0, 1.0, 1.0, 1.0)
    assert_same(poisoned, after_first)                     # parameters and Adam's moments and count untouched
    resumed, m3 = step(poisoned, batch(2))
    assert (float(m3["skipped"]), float(m3["bad_in_a_row"]), float(m3["skipped_total"])) == (0.0, 0.0, 1.0)
    state, _, step = fresh()                               # the same run without the poisoned batch
    clean, _ = step(step(state, batch(0))[0], batch(2))
    assert_same(resumed, clean)                            # the schedule and moments did not advance


def test_inf_gradients_are_skipped_too():
    state, _, step = fresh()
    after, m = step(state, batch(0, scale=np.inf))
    assert float(m["skipped"]) == 1.0
    assert_same(after, state)


def test_spike_is_skipped_after_warmup_and_leaves_the_statistics():
    config = guard.GuardConfig(spike_zscore=4.0, spike_warmup=5, ema_decay=0.9)
    state = guard.GuardState.create()
    rng = np.random.default_rng(0)
    for loss in 2.0 + 0.05 * rng.standard_normal(8):
        apply, state, _ = guard.check(config, state, jnp.float32(loss), jnp.float32(1.0 + 0.1 * (loss - 2)))
        assert bool(apply)
    before = state
    apply, state, metrics = guard.check(config, state, jnp.float32(9.0), jnp.float32(1.0))
    assert not bool(apply) and float(metrics["nonfinite"]) == 0.0 and float(metrics["skipped"]) == 1.0
    np.testing.assert_array_equal(state.mean, before.mean)
    np.testing.assert_array_equal(state.second, before.second)
    apply, state, _ = guard.check(config, state, jnp.float32(2.02), jnp.float32(1.0))
    assert bool(apply) and int(state.bad_in_a_row) == 0 and int(state.skipped) == 1


def test_spike_statistics_are_bias_corrected_running_moments():
    """Hand computation: after losses 1, 3 with decay 0.5 the corrected mean is (0.5*1*0.5 + 0.5*3)/(1-0.25)."""
    config = guard.GuardConfig(spike_zscore=1.0, spike_warmup=2, ema_decay=0.5)
    state = guard.GuardState.create()
    for loss in (1.0, 3.0):
        _, state, _ = guard.check(config, state, jnp.float32(loss), jnp.float32(0.0))
    mean = (0.5 * 0.5 * 1.0 + 0.5 * 3.0) / (1 - 0.25)                 # = 2.333...
    second = (0.5 * 0.5 * 1.0 + 0.5 * 9.0) / (1 - 0.25)               # = 6.333...
    std = np.sqrt(second - mean ** 2)                                  # = 0.9428
    np.testing.assert_allclose(float(state.mean[0]) / 0.75, mean, rtol=1e-6)
    below, above = mean + 0.9 * std, mean + 1.1 * std                 # z = 0.9 applies, z = 1.1 is a spike
    assert bool(guard.check(config, state, jnp.float32(below), jnp.float32(0.0))[0])
    assert not bool(guard.check(config, state, jnp.float32(above), jnp.float32(0.0))[0])


def test_unknown_guard_field_is_an_error():
    with pytest.raises(ValueError, match="config.guard has unknown fields \\['spike_z'\\]"):
        guard.GuardConfig.from_config({"spike_z": 3.0})
