"""The pure train step and its jitted, sharded form; the pure eval step (a held-out loss, as the ablation notebook reads it).

    graphdef, state, frozen = init_train_state(model, groups, tx)
    train_step = jit_train_step(graphdef, objective, tx, state, frozen, mesh)
    state, metrics = train_step(state, frozen, batch, rng)

The model is split once into graph + trainable parameters + everything else (frozen parameters, RNG
state); the step merges them inside jit (trace time only), so the hot loop runs no Python per layer.
Frozen parameters are an input, never an output: they cannot change, and their buffers are not donated.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vlmcls_jax import sharding as shd
from vlmcls_jax.train import guard as guard_lib
from vlmcls_jax.train.optimizer import ParamGroup, keypath_names, trainable_filter


@struct.dataclass
class TrainState:
    step: jax.Array             # int32[]: optimizer calls so far
    params: nnx.State           # the trainable parameters
    opt_state: optax.OptState   # optimizer state of the trainable parameters only
    guard: guard_lib.GuardState  # counts and running statistics of the step guard (guard.py)


def split_model(model: nnx.Module, groups: Sequence[ParamGroup]):
    """-> (graphdef, trainable params, rest: frozen params and any other state)."""
    return nnx.split(model, trainable_filter(groups), ...)


def store_frozen_in(frozen: nnx.State, dtype) -> nnx.State:
    """The frozen floating-point parameters cast to `dtype` (the compute dtype: they are cast to it in every
    matmul anyway, so a bfloat16 run computes the same matmuls and holds half the bytes); RNG state and
    integer variables as they are.  Concrete arrays keep their shardings; abstract ones (ShapeDtypeStructs)
    keep theirs.  dtype None: `frozen` unchanged."""
    if dtype is None:
        return frozen
    dtype = jnp.dtype(dtype)

    def cast(var):
        value = var.get_value()
        if not isinstance(var, nnx.Param) or not jnp.issubdtype(value.dtype, jnp.floating) or value.dtype == dtype:
            return var
        if isinstance(value, jax.ShapeDtypeStruct):
            return var.replace(jax.ShapeDtypeStruct(value.shape, dtype, sharding=value.sharding))
        return var.replace(value.astype(dtype))

    return jax.tree.map(cast, frozen, is_leaf=lambda x: isinstance(x, nnx.Variable))


def init_train_state(model: nnx.Module, groups: Sequence[ParamGroup], tx: optax.GradientTransformation,
                     frozen_dtype=None):
    """-> (graphdef, TrainState, frozen).  Place the model first (`sharding.shard_model`): the optimizer
    state is created directly in the shardings of the parameters it mirrors (Adam's mu and nu; XLA's
    propagation alone does not guarantee that), its scalars replicated.  frozen_dtype: store the frozen
    parameters in this dtype (`store_frozen_in`; the trainer passes the compute dtype)."""
    graphdef, params, frozen = split_model(model, groups)
    frozen = store_frozen_in(frozen, frozen_dtype)
    # Commit the parameters to their devices: the step's outputs are committed, and an uncommitted input
    # would make the second call compile again.
    params = jax.tree.map(lambda x: jax.device_put(x, x.sharding), params)
    shardings = state_shardings(tx, params)
    opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
    step = jax.device_put(jnp.zeros((), jnp.int32), shardings.step)
    guard = jax.device_put(guard_lib.GuardState.create(), shardings.guard)
    return graphdef, TrainState(step=step, params=params, opt_state=opt_state, guard=guard), frozen


def abstract_train_state(model: nnx.Module, groups: Sequence[ParamGroup], tx: optax.GradientTransformation,
                         frozen_dtype=None):
    """What `init_train_state` returns, with `jax.ShapeDtypeStruct`s carrying the same shardings instead of
    arrays: nothing is allocated.  model: abstract, its variables already carrying their shardings
    (`sharding.abstract_placed`).  For lowering and compiling the step ahead of a run (`vlmcls_jax.plan`)."""
    graphdef, params, frozen = split_model(model, groups)
    frozen = store_frozen_in(frozen, frozen_dtype)
    shardings = state_shardings(tx, params)
    shapes = jax.eval_shape(lambda p: TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p),
                                                 guard=guard_lib.GuardState.create()), params)
    state = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)
    return graphdef, state, frozen


def state_shardings(tx: optax.GradientTransformation, params: nnx.State) -> TrainState:
    """The TrainState's shardings: the parameters' own (placed or abstract with shardings), the optimizer
    state's by `optimizer_shardings`, the step and guard replicated."""
    some = jax.tree.leaves(params)[0].sharding
    replicated = NamedSharding(some.mesh, PartitionSpec()) if isinstance(some, NamedSharding) else some
    guard = jax.tree.map(lambda _: replicated, jax.eval_shape(guard_lib.GuardState.create))
    return TrainState(step=replicated, params=_shardings_of(params),
                      opt_state=optimizer_shardings(tx, params, replicated), guard=guard)


def optimizer_shardings(tx: optax.GradientTransformation, params: nnx.State, default):
    """Shardings for `tx.init(params)`: a state leaf whose key path ends with a parameter's path (and has
    its shape) gets that parameter's sharding; every other leaf (counts, scalars) gets `default`."""
    by_path = {path: (var.get_value().shape, var.get_value().sharding) for path, var in nnx.to_flat_state(params)}
    longest = max(len(p) for p in by_path)

    def pick(keypath, leaf):
        names = keypath_names(keypath)
        for n in range(min(longest, len(names)), 0, -1):
            hit = by_path.get(tuple(names[-n:]))
            if hit is not None and hit[0] == leaf.shape:
                return hit[1]
        return default

    return jax.tree_util.tree_map_with_path(pick, jax.eval_shape(tx.init, params))


def train_step(graphdef, objective, tx, state: TrainState, frozen: nnx.State, batch: dict, rng: jax.Array | None,
               guard: guard_lib.GuardConfig = guard_lib.GuardConfig()):
    """One optimizer call.  rng: a key for dropout (LoRA dropout), or None for no dropout.  A step whose loss
    or gradient is not finite (or, if `guard` asks, is a spike) changes neither the parameters nor the
    optimizer state (guard.py).  Returns (new state, metrics: the objective's, loss, grad_norm and the
    guard's)."""
    def loss_fn(params):
        # copy=True: reseeding mutates RNG variables, which must be fresh ones inside this trace.
        model = nnx.merge(graphdef, params, frozen, copy=True)
        if rng is not None:
            nnx.reseed(model, dropout=rng, policy="match_shape")   # stacked streams (scanned LoRA): one key a layer
            model = nnx.view(model, deterministic=False, raise_if_not_found=False)
        return objective(model, batch)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grad_norm = optax.tree.norm(grads)
    apply, guard_state, guard_metrics = guard_lib.check(guard, state.guard, loss, grad_norm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    params, opt_state = guard_lib.select(apply, (params, opt_state), (state.params, state.opt_state))
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm, **guard_metrics)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state, guard=guard_state), metrics


def eval_step(graphdef, objective, params: nnx.State, frozen: nnx.State, batch: dict):
    """The objective's metrics without updating anything (dropout off)."""
    return objective(nnx.merge(graphdef, params, frozen), batch)[1]


def _shardings_of(tree):
    return jax.tree.map(lambda x: x.sharding, tree)


def jit_train_step(graphdef, objective, tx, state: TrainState, frozen: nnx.State, mesh: Mesh,
                   batch_ndims: dict[str, int] | None = None, constrain_activations: bool = False,
                   guard: guard_lib.GuardConfig = guard_lib.GuardConfig()):
    """`train_step` jitted with explicit shardings (taken from the already-placed state and frozen
    parameters; batches split over the batch axes) and the state's buffers donated.
    constrain_activations: also pin activations by the rules (see `sharding.activation_sharding`)."""
    state_sh = _shardings_of(state)
    frozen_sh = _shardings_of(frozen)
    replicated = NamedSharding(mesh, PartitionSpec())

    def step(state, frozen, batch, rng):
        if not constrain_activations:
            return train_step(graphdef, objective, tx, state, frozen, batch, rng, guard)
        with shd.activation_sharding(mesh):
            return train_step(graphdef, objective, tx, state, frozen, batch, rng, guard)

    batch_sh = None if batch_ndims is None else {k: shd.batch_sharding(mesh, n) for k, n in batch_ndims.items()}
    return jax.jit(step, in_shardings=(state_sh, frozen_sh, batch_sh, replicated),
                   out_shardings=(state_sh, replicated), donate_argnums=(0,))

