"""Step guards: skip an update whose loss or gradient is not finite, or (optionally) is a spike.

A skipped step leaves the trainable parameters and the optimizer state exactly as they were (Adam's moments
and step count do not advance, so the learning-rate schedule does not either); only the batch is consumed.
Everything happens inside the jitted step, so there is no host round trip.

A spike is a loss or gradient norm more than `spike_zscore` standard deviations above its running mean
(exponential moving averages of the value and its square over accepted steps, with decay `ema_decay`),
checked once `spike_warmup` steps have been accepted.  The trainer stops the run with a message after
`max_consecutive_bad` skipped steps in a row (a run that only skips is not training).

Metrics each step: `skipped` (1.0 if this step was skipped), `nonfinite` (1.0 if because of NaN/inf),
`skipped_total` and `bad_in_a_row` (counts so far).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct


@dataclasses.dataclass(frozen=True)
class GuardConfig:
    spike_zscore: float = 0.0         # > 0: skip steps whose loss or grad norm is this many std devs above normal
    spike_warmup: int = 20            # accepted steps before the spike test starts
    ema_decay: float = 0.99           # running mean / second moment decay
    max_consecutive_bad: int = 10     # the trainer stops after this many skipped steps in a row (0: never)

    @classmethod
    def from_config(cls, config) -> GuardConfig:
        """From a config section with any of the fields above (None or missing: the defaults)."""
        if config is None:
            return cls()
        values = dict(config)
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"config.guard has unknown fields {sorted(unknown)}; known: "
                             f"{[f.name for f in dataclasses.fields(cls)]}")
        return cls(**values)


@struct.dataclass
class GuardState:
    accepted: jax.Array       # int32[]: steps applied so far
    skipped: jax.Array        # int32[]: steps skipped so far
    bad_in_a_row: jax.Array   # int32[]: skipped steps since the last applied one
    mean: jax.Array           # float32[2]: running mean of (loss, grad norm) over accepted steps
    second: jax.Array         # float32[2]: running mean of their squares

    @classmethod
    def create(cls) -> GuardState:
        # Five distinct buffers: the train state is donated, and one buffer in two leaves cannot be.
        count = lambda: jnp.zeros((), jnp.int32)
        return cls(count(), count(), count(), jnp.zeros(2, jnp.float32), jnp.zeros(2, jnp.float32))


def check(config: GuardConfig, state: GuardState, loss: jax.Array, grad_norm: jax.Array):
    """-> (apply: bool[], new GuardState, metrics).  Pure; call inside the step."""
    values = jnp.stack([loss, grad_norm]).astype(jnp.float32)
    finite = jnp.all(jnp.isfinite(values))
    spike = jnp.asarray(False)
    if config.spike_zscore > 0:
        # Bias-corrected EMAs (as Adam's), so the statistics are usable from the first accepted steps.
        correction = 1.0 - config.ema_decay ** jnp.maximum(state.accepted, 1).astype(jnp.float32)
        mean, second = state.mean / correction, state.second / correction
        std = jnp.sqrt(jnp.maximum(second - mean ** 2, 1e-12))
        spike = (state.accepted >= config.spike_warmup) & jnp.any((values - mean) / std > config.spike_zscore)
    apply = finite & ~spike
    d = config.ema_decay
    safe = jnp.where(finite, values, 0.0)
    new = GuardState(
        accepted=state.accepted + apply.astype(jnp.int32),
        skipped=state.skipped + (~apply).astype(jnp.int32),
        bad_in_a_row=jnp.where(apply, 0, state.bad_in_a_row + 1),
        mean=jnp.where(apply, d * state.mean + (1 - d) * safe, state.mean),
        second=jnp.where(apply, d * state.second + (1 - d) * safe ** 2, state.second))
    metrics = {"skipped": (~apply).astype(jnp.float32), "nonfinite": (~finite).astype(jnp.float32),
               "skipped_total": new.skipped.astype(jnp.float32),
               "bad_in_a_row": new.bad_in_a_row.astype(jnp.float32)}
    return apply, new, metrics


def select(apply: jax.Array, new, old):
    """`new` where `apply`, else `old`, leaf by leaf (both computed; the choice is elementwise and cheap)."""
    return jax.tree.map(lambda a, b: jnp.where(apply, a, b), new, old)
