"""Device mesh, logical-axis rules, sharded model creation and loading, and global batches.

Every parameter carries `logical_axes` (see `models/layers.py`); one rules table maps those names to the
mesh axes ("data", "fsdp", "tensor").  Switching between pure data parallel, FSDP and FSDP + tensor
parallel is a change of `mesh_shape` only:

    mesh_shape (-1, 1, 1)   data parallel: parameters replicated, batch split over every device
    mesh_shape (1, -1, 1)   FSDP: parameters split on `embed` over "fsdp", batch split over "fsdp" too
    mesh_shape (2, 2, 2)    data x FSDP x tensor (`mlp`, `heads`, `kv_heads`, `vocab` split over "tensor")

Parameters are created or loaded directly into their shardings: no device ever holds a full replica of
a parameter that the rules shard.  A dimension that a mesh axis does not divide is replicated on that
axis instead (tiny test models; `parameter_specs` reports which).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis name -> mesh axis (or axes, or None = replicated).  Parameters and activations both use it.
LOGICAL_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("vocab", "tensor"),
    ("length", None),
    ("positions", None),
    ("activation_embed", None),   # activations: split over the batch, whole along the width
)


def make_mesh(mesh_shape: Sequence[int] = (-1, 1, 1), axis_names: Sequence[str] = MESH_AXES,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh over all (or the given) devices; one entry of `mesh_shape` may be -1 (the rest of the devices).

    Raises ValueError naming `mesh_shape` when the device count does not fit, before anything compiles.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = list(mesh_shape)
    if len(shape) != len(axis_names):
        raise ValueError(f"mesh_shape {tuple(mesh_shape)} needs one entry per axis {tuple(axis_names)}")
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ValueError(f"mesh_shape {tuple(mesh_shape)}: entries must be positive, with at most one -1")
    known = int(np.prod([s for s in shape if s != -1]))
    if len(devices) % known:
        raise ValueError(f"mesh_shape {tuple(mesh_shape)} does not divide the {len(devices)} devices")
    shape = [len(devices) // known if s == -1 else s for s in shape]
    if int(np.prod(shape)) != len(devices):
        raise ValueError(f"mesh_shape {tuple(mesh_shape)} -> {tuple(shape)} uses {int(np.prod(shape))} devices, "
                         f"but there are {len(devices)}")
    # Auto axes: the compiler propagates shardings (jax.make_mesh now defaults to Explicit axes).
    return jax.make_mesh(tuple(shape), tuple(axis_names), axis_types=(AxisType.Auto,) * len(shape), devices=devices)


def logical_to_spec(logical_axes: Sequence[str | None], shape: Sequence[int] | None, mesh: Mesh,
                    rules: Sequence[tuple[str, Any]] = LOGICAL_RULES) -> PartitionSpec:
    """Logical names -> PartitionSpec.  A mesh axis is used at most once per array; a dimension it does not
    divide (when `shape` is given) stays replicated on it."""
    table = dict(rules)
    used, spec = set(), []
    for i, name in enumerate(logical_axes):
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if a in mesh.shape and mesh.shape[a] > 1 and a not in used)
        if shape is not None and axes and shape[i] % int(np.prod([mesh.shape[a] for a in axes])):
            axes = ()
        used.update(axes)
        spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*spec)


@contextlib.contextmanager
def activation_sharding(mesh: Mesh, rules=LOGICAL_RULES):
    """While active (wrap the traced function's body), the models' `constrain(x, logical_axes)` calls put
    sharding constraints on activations by the same rules table.

    Off by default (`config.activation_sharding`): with jax 0.10.2's default partitioner, Shardy, a LLaVA
    with LoRA adapters on mesh (2, 2, 2) computed wrong logits under these constraints on XLA:CPU (max abs
    diff 0.46 against the unconstrained and one-device results); with the GSPMD partitioner
    (`jax.config.update("jax_use_shardy_partitioner", False)`) the constrained result matches to 1e-7
    (tests/test_train_sharded.py).  Without constraints the compiler propagates the parameter shardings
    to activations itself, and every mesh matches one device."""
    from vlmcls_jax.models.layers import ACTIVATION_CONSTRAINT

    def constraint(x, axes):
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, logical_to_spec(axes, x.shape, mesh, rules)))

    token = ACTIVATION_CONSTRAINT.set(constraint)
    try:
        yield
    finally:
        ACTIVATION_CONSTRAINT.reset(token)


def variable_spec(var: nnx.Variable, mesh: Mesh, rules=LOGICAL_RULES) -> PartitionSpec:
    """A variable's PartitionSpec from its `logical_axes` metadata (none: replicated, e.g. RNG state)."""
    axes = var.get_metadata().get("logical_axes")
    return PartitionSpec() if axes is None else logical_to_spec(axes, var.shape, mesh, rules)


def parameter_shardings(state: nnx.State, mesh: Mesh, rules=LOGICAL_RULES) -> nnx.State:
    """The same tree as `state` (concrete or abstract) with each variable's value replaced by its
    NamedSharding: usable as jit in/out_shardings for that state."""
    return jax.tree.map(lambda v: v.replace(NamedSharding(mesh, variable_spec(v, mesh, rules))), state,
                        is_leaf=lambda x: isinstance(x, nnx.Variable))


def create_sharded(model_factory: Callable[[], nnx.Module], mesh: Mesh, rules=LOGICAL_RULES) -> nnx.Module:
    """Builds `model_factory()` with every parameter initialised directly in its sharding (one jitted init
    with `out_shardings`, so no device materialises an unsharded copy)."""
    abstract = nnx.eval_shape(model_factory)
    graphdef, abstract_state = nnx.split(abstract)
    shardings = parameter_shardings(abstract_state, mesh, rules)

    state = jax.jit(lambda: nnx.split(model_factory())[1], out_shardings=shardings)()
    return nnx.merge(graphdef, state)


def abstract_placed(abstract: nnx.Module, mesh: Mesh, rules=LOGICAL_RULES) -> nnx.Module:
    """An abstract model (`nnx.eval_shape`) whose every variable is a `jax.ShapeDtypeStruct` carrying the
    NamedSharding `create_sharded` / the loaders would give it: what a program is lowered on to compile it
    ahead of a run (`vlmcls_jax.plan`), with no memory allocated."""
    graphdef, state = nnx.split(abstract)
    placed = jax.tree.map(lambda v, s: v.replace(jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s.get_value())),
                          state, parameter_shardings(state, mesh, rules), is_leaf=lambda x: isinstance(x, nnx.Variable))
    return nnx.merge(graphdef, placed)


def shard_model(model: nnx.Module, mesh: Mesh, rules=LOGICAL_RULES) -> nnx.Module:
    """Moves every variable of `model` (in place) to its sharding under the rules; returns the model.
    For parameters added after creation (LoRA adapters, heads); already-placed arrays stay put."""
    state = nnx.state(model)
    placed = jax.tree.map(lambda x, s: jax.device_put(x, s), state, parameter_shardings(state, mesh, rules))
    nnx.update(model, placed)
    return model


def path_shardings(cfg, mesh: Mesh, rules=LOGICAL_RULES) -> Callable[[tuple], NamedSharding]:
    """For the converters' `shardings=` hook: parameter path -> its NamedSharding under the rules."""
    from vlmcls_jax.convert.hf import abstract_model
    _, state = nnx.split(abstract_model(cfg))
    table = {path: NamedSharding(mesh, variable_spec(var, mesh, rules)) for path, var in nnx.to_flat_state(state)}
    return lambda path: table[tuple(path)]


def batch_sharding(mesh: Mesh, ndim: int = 2, rules=LOGICAL_RULES) -> NamedSharding:
    """Leading (batch) dimension split over the batch axes; the rest replicated."""
    return NamedSharding(mesh, logical_to_spec(("batch",) + (None,) * (ndim - 1), None, mesh, rules))


def put_batch(arrays, mesh: Mesh | None, rules=LOGICAL_RULES):
    """Device arrays split over the batch axes of `mesh` (first dimension), or plain `jnp.asarray` on the
    default device when mesh is None.  None entries pass through.  Raises naming the size when the batch
    does not divide over the batch devices."""
    import jax.numpy as jnp
    if mesh is None:
        return tuple(None if a is None else jnp.asarray(a) for a in arrays)
    out = []
    for a in arrays:
        if a is None:
            out.append(None)
            continue
        sharding = batch_sharding(mesh, np.ndim(a), rules)
        ways = int(np.prod([mesh.shape[ax] for ax in _spec_axes(sharding.spec[0])]))
        if np.shape(a)[0] % ways:
            raise ValueError(f"batch of {np.shape(a)[0]} does not split over the {ways} batch devices of the mesh")
        out.append(jax.device_put(np.asarray(a), sharding))
    return tuple(out)


def batch_ways(mesh: Mesh | None, rules=LOGICAL_RULES) -> int:
    """How many ways a batch's leading dimension splits over `mesh` (the devices of its batch axes); 1 for None."""
    if mesh is None:
        return 1
    return int(np.prod([mesh.shape[ax] for ax in _spec_axes(batch_sharding(mesh, 1, rules).spec[0])]))


def check_batch_sizes(mesh: Mesh | None, sizes: dict[str, int]) -> None:
    """Raises naming every config field (`sizes`: {"config.x.batch_size": value}) whose batch does not split
    over the mesh's batch devices, before anything is loaded or compiled."""
    ways = batch_ways(mesh)
    bad = [f"{field}={size}" for field, size in sizes.items() if size % ways]
    if bad:
        raise ValueError(f"{', '.join(bad)}: a batch splits over the {ways} batch devices (data x fsdp) of "
                         f"mesh {dict(mesh.shape)}; give a multiple of {ways} (training: with accumulate_steps "
                         "for the same global batch), or a config.mesh_shape with fewer batch devices")


def _spec_axes(entry) -> tuple[str, ...]:
    return () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)


def global_batch(local: dict[str, np.ndarray], mesh: Mesh, rules=LOGICAL_RULES) -> dict[str, jax.Array]:
    """This process's rows -> global arrays split over the batch axes (every process passes its own rows;
    the global batch is their concatenation in process order)."""
    return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(v), rules), np.asarray(v))
            for k, v in local.items()}


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Joins the processes of a multi-host run.  Call before any other JAX call.  On TPU pods and SLURM
    clusters JAX finds the coordinates in the environment (call with no arguments); elsewhere pass them."""
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
