"""Frozen parameters stored in the compute dtype (`config.model.frozen_in_compute_dtype`, on by default):
bfloat16 for what does not train, float32 masters for what does; a bfloat16-compute step computes the same
loss, and the abstract state the plan compiles carries the same dtypes and shardings."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from test_train_sharded import batch
from tiny_models import LLAVA, LlavaForConditionalGeneration
from vlmcls_jax import defaults
from vlmcls_jax import sharding as shd
from vlmcls_jax.models import presets
from vlmcls_jax.train import trainer
from vlmcls_jax.train.objectives import make_objective
from vlmcls_jax.train.optimizer import ParamGroup, make_optimizer
from vlmcls_jax.train.step import abstract_train_state, init_train_state, split_model, train_step

GROUPS = [ParamGroup("projector", ("projector",), 1e-3)]


def dtypes(state):
    return {jnp.dtype(v.get_value().dtype) for _, v in nnx.to_flat_state(state) if isinstance(v, nnx.Param)}


def loss_after_one_step(frozen_dtype):
    cfg = presets.with_dtype(LLAVA, jnp.bfloat16, jnp.float32)
    model = LlavaForConditionalGeneration(cfg, rngs=nnx.Rngs(0))
    tx = make_optimizer(split_model(model, GROUPS)[1], GROUPS, total_steps=10, warmup_ratio=0.0)
    graphdef, state, frozen = init_train_state(model, GROUPS, tx, frozen_dtype)
    b = batch()
    b["input_ids"] = np.where(b["input_ids"] == 99, LLAVA.image_token_index, b["input_ids"] % 60)
    step = jax.jit(functools.partial(train_step, graphdef, make_objective("text_generation"), tx))
    state, metrics = step(state, frozen, b, None)
    return float(metrics["loss"]), state, frozen


def test_frozen_parameters_are_stored_in_the_compute_dtype():
    assert defaults.train_config().model.frozen_in_compute_dtype
    assert trainer.frozen_dtype(defaults.train_config()) == "bfloat16"
    loss_bf16, state, frozen = loss_after_one_step(jnp.bfloat16)
    assert dtypes(frozen) == {jnp.dtype(jnp.bfloat16)} and dtypes(state.params) == {jnp.dtype(jnp.float32)}
    loss_f32, _, frozen32 = loss_after_one_step(None)
    assert dtypes(frozen32) == {jnp.dtype(jnp.float32)}
    # Every matmul casts its kernel to bfloat16 either way; norms and biases read the rounded values.
    np.testing.assert_allclose(loss_bf16, loss_f32, rtol=1e-2)


def test_the_abstract_state_carries_the_same_dtypes_and_shardings():
    mesh = shd.make_mesh((1, 8, 1))
    cfg = presets.with_dtype(LLAVA, jnp.bfloat16, jnp.float32)
    model = shd.abstract_placed(nnx.eval_shape(lambda: LlavaForConditionalGeneration(cfg, rngs=None)), mesh)
    tx = make_optimizer(split_model(model, GROUPS)[1], GROUPS, total_steps=10)
    _, state, frozen = abstract_train_state(model, GROUPS, tx, jnp.bfloat16)
    assert dtypes(frozen) == {jnp.dtype(jnp.bfloat16)} and dtypes(state.params) == {jnp.dtype(jnp.float32)}
    q = frozen["language_model"]["model"]["layers"][0]["self_attn"]["q_proj"]["kernel"].get_value()
    assert isinstance(q, jax.ShapeDtypeStruct) and q.sharding.spec == jax.sharding.PartitionSpec("fsdp", None)
