"""Model checkpoints in our own format: orbax for the parameters, JSON for the model config.

    DIR/model_config.json   config_to_dict(model.config)
    DIR/params/             orbax checkpoint of the model's nnx.Param state
    DIR/tokenizer* ...      the source checkpoint's tokenizer, image processor, generation config (if known)

`load_model` restores straight into the abstract model's shapes and dtypes (optionally with shardings),
so no random initialisation is ever materialised.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from vlmcls_jax.convert.companions import copy_companions
from vlmcls_jax.convert.hf import abstract_model
from vlmcls_jax.fileio import write_json
from vlmcls_jax.models.config_io import config_from_dict, config_to_dict
from vlmcls_jax.models.presets import with_dtype

CONFIG_FILE = "model_config.json"


def save_model(model: nnx.Module, directory: str, *, concurrent_gb: int | None = 1,
               source: str | None = None) -> None:
    """Writes the model's config and parameters under `directory` (created; must not hold a checkpoint).
    source: the Hugging Face folder the model came from: its tokenizer, image processor and generation
    config are copied beside (`convert.companions`), and travel on to an `orbax-to-hf` export.

    concurrent_gb: at most this many GB of parameters in flight at once (orbax copies each array to the
    host before writing it; unlimited, that doubles the peak memory of a conversion: 1.95x the model for a
    1.5B checkpoint against 1.54x with 1 GB, benchmarks/conversion.py).  None: orbax's default (96 GB)."""
    directory = os.path.abspath(directory)
    params = os.path.join(directory, "params")
    if os.path.exists(params):
        raise ValueError(f"{params} already exists; choose an empty directory")
    os.makedirs(directory, exist_ok=True)
    limits = {} if concurrent_gb is None else dict(save_concurrent_gb=concurrent_gb,
                                                   save_device_host_concurrent_gb=concurrent_gb)
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler(**limits)) as ckptr:
        ckptr.save(params, args=ocp.args.PyTreeSave(nnx.state(model, nnx.Param)))
    write_json(os.path.join(directory, CONFIG_FILE), config_to_dict(model.config))
    if source is not None:
        copy_companions(source, directory)


def load_config(directory: str):
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.exists(path):
        raise ValueError(f"{path} not found: not a vlmcls_jax orbax checkpoint (made by `python -m "
                         "vlmcls_jax.convert hf-to-orbax`); a Hugging Face folder is used as it is")
    with open(path) as f:
        return config_from_dict(json.load(f), where=path)


def load_model(directory: str, dtype=None, param_dtype=None, shardings=None) -> nnx.Module:
    """Restores a model saved by `save_model`; `dtype`/`param_dtype` override the saved ones.
    shardings: optional function from parameter path to `jax.sharding.Sharding`."""
    directory = os.path.abspath(directory)
    cfg = load_config(directory)
    if dtype is not None:
        cfg = with_dtype(cfg, dtype, param_dtype)
    graphdef, abstract = nnx.split(abstract_model(cfg))
    if shardings is not None:
        abstract = nnx.from_flat_state([
            (p, v.replace(jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=shardings(p))))
            for p, v in nnx.to_flat_state(abstract)])
    with ocp.StandardCheckpointer() as ckptr:
        state = ckptr.restore(os.path.join(directory, "params"), abstract)
    return nnx.merge(graphdef, state)


# orbax writes a replicated array "replica-parallel" by default: every replica writes 1/N of it, which costs
# one device-side slice (and its compile, the first time) per replica and array.  That pays for large arrays;
# for the many small ones of a LoRA or projector run (factors, norms, optimizer counters) the slicing costs
# more than the write: 8 fake CPU devices spent 11 of 26 s of a tiny run there.  Below this many bytes per
# slice, one replica writes the whole array.
MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL = 4 << 20


def _train_state_handler() -> ocp.PyTreeCheckpointHandler:
    """orbax's pytree handler with the standard leaf types, jax.Array written as described above."""
    th = ocp.type_handlers
    registry = th.create_type_handler_registry(
        (int, th.ScalarHandler()), (float, th.ScalarHandler()), (np.number, th.ScalarHandler()),
        (np.ndarray, th.NumpyHandler()), (str, th.StringHandler()),
        (jax.Array, th.ArrayHandler(min_slice_bytes_for_replica_parallel=MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL)))
    return ocp.PyTreeCheckpointHandler(type_handler_registry=registry)


class TrainCheckpoints:
    """Training checkpoints: train state (trainable params + optimizer state + step) and the data
    iterator's position, saved together every `every` steps by an orbax CheckpointManager (asynchronously,
    keeping the last `keep`).  A restore takes the shapes and shardings of the caller's current state, so a
    checkpoint written on one mesh restores onto another.  Frozen parameters are not saved: they come
    from the model's source checkpoint."""

    def __init__(self, directory: str, *, every: int, keep: int = 3, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(save_interval_steps=every, max_to_keep=keep,
                                               enable_async_checkpointing=async_save)
        import grain
        self.manager = ocp.CheckpointManager(
            os.path.abspath(directory), options=options,
            item_handlers={"state": _train_state_handler(), "data": grain.checkpoint.CheckpointHandler()})

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_iterator, *, force: bool = False) -> bool:
        import grain
        args = ocp.args.Composite(state=ocp.args.PyTreeSave(state),
                                  data=grain.checkpoint.CheckpointSave(data_iterator))
        return self.manager.save(step, args=args, force=force)

    def restore(self, state, data_iterator, step: int | None = None):
        """Returns (restored state, step); `data_iterator` is moved to the saved position in place."""
        import grain
        step = self.manager.latest_step() if step is None else step
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(target, restore_args=ocp.checkpoint_utils.construct_restore_args(target)),
            data=grain.checkpoint.CheckpointRestore(data_iterator)))
        return restored["state"], step

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()

    def close_after_failure(self) -> None:
        """For a run that failed: lets a write in flight finish (a write that fails is logged, the run's
        own error matters more), closes the manager, and removes the temporary folders of writes that did
        not complete (`*.orbax-checkpoint-tmp*`), so only complete checkpoints stay behind."""
        for finish in (self.manager.wait_until_finished, self.manager.close):
            try:
                finish()
            except Exception as e:   # noqa: BLE001
                from absl import logging
                logging.warning("closing the checkpoints of a failed run: %s", e)
        if jax.process_index() == 0:
            for tmp in glob.glob(os.path.join(self.directory, "*.orbax-checkpoint-tmp*")):
                shutil.rmtree(tmp, ignore_errors=True)
