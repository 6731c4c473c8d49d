"""Evaluation at scale: `load_for_eval` with a mesh reads every parameter straight into its sharding under the
training rules (split over "fsdp" / "tensor", not only replicated), and the jobs' generation and class scoring
with those sharded parameters equal one device's.  Eight fake CPU devices (conftest.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import train_fixtures
from vlmcls_jax import demo
from vlmcls_jax import sharding as shd
from vlmcls_jax.data.prompts import QUESTION_WORDINGS
from vlmcls_jax.eval.loading import load_for_eval
from vlmcls_jax.eval.vlm_generation import GenerationSettings, answer_batch
from vlmcls_jax.eval.vlm_scoring import class_name_tokens
from vlmcls_jax.inference import score_candidates


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded_eval")
    ckpt = train_fixtures.tiny_checkpoint(root / "ckpt")
    train_fixtures.shapes_dataset(root / "data", 8)
    return str(ckpt), [str(root / "data" / f"{i}.png") for i in range(8)]


def run_eval(loaded, images, mesh):
    """(greedy answers, class-name scores float32[8, C]) as the eval job computes them."""
    inputs = loaded.inputs.with_length_multiple(64)
    prompt = inputs.prompt(QUESTION_WORDINGS["default"], "The photo features a")
    answers = answer_batch(loaded.model, loaded.tokenizer, [inputs.prompt(QUESTION_WORDINGS["default"])] * 8,
                           images, inputs, GenerationSettings(max_new_tokens=6), mesh)
    batch = inputs.encode(loaded.tokenizer, [prompt] * 8, images, pad_to_square=False)
    sums, _ = score_candidates(loaded.model, batch["input_ids"], batch["attention_mask"],
                               class_name_tokens(loaded.tokenizer, prompt, demo.class_names()), batch["images"],
                               chunk_size=64, mesh=mesh)
    return answers, sums


def specs(model) -> dict[str, jax.sharding.PartitionSpec]:
    return {"/".join(map(str, p)): v[...].sharding.spec for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


@pytest.fixture(scope="module")
def one_device(world):
    ckpt, images = world
    return run_eval(load_for_eval(ckpt, dtype="float32"), images, None)


@pytest.mark.parametrize("mesh_shape,q_proj", [((1, 8, 1), ("fsdp", None)), ((2, 2, 2), ("fsdp", "tensor"))])
def test_sharded_parameters_generate_and_score_as_one_device(world, one_device, mesh_shape, q_proj):
    ckpt, images = world
    mesh = shd.make_mesh(mesh_shape)
    loaded = load_for_eval(ckpt, mesh, dtype="float32")
    placed = specs(loaded.model)
    # Split, not replicated: a decoder projection over fsdp (x tensor), the vocabulary over tensor.
    assert placed["language_model/model/layers/0/self_attn/q_proj/kernel"] == jax.sharding.PartitionSpec(*q_proj)
    assert sum(any(a is not None for a in s) for s in placed.values()) > len(placed) // 2
    one_device_bytes = sum(v[...].nbytes for _, v in nnx.to_flat_state(nnx.state(loaded.model, nnx.Param)))
    on_device_0 = sum(s.data.nbytes for _, v in nnx.to_flat_state(nnx.state(loaded.model, nnx.Param))
                      for s in v[...].addressable_shards if s.device == mesh.devices.flat[0])
    assert on_device_0 < one_device_bytes / 2
    answers, sums = run_eval(loaded, images, mesh)
    assert answers == one_device[0]
    np.testing.assert_allclose(sums, one_device[1], atol=2e-5)


def test_bfloat16_is_stored_and_recorded(world, one_device):
    """The jobs' default (`config.model.dtype = param_dtype = "bfloat16"`): half the bytes, the provenance
    that results.json carries says so, and scores stay within bfloat16's rounding of float32's."""
    ckpt, images = world
    mesh = shd.make_mesh((1, 1, 8))
    loaded = load_for_eval(ckpt, mesh, dtype="bfloat16", param_dtype="bfloat16")
    assert {v[...].dtype for _, v in nnx.to_flat_state(nnx.state(loaded.model, nnx.Param))} == {jnp.dtype("bfloat16")}
    assert (loaded.provenance["dtype"], loaded.provenance["param_dtype"]) == ("bfloat16", "bfloat16")
    _, sums = run_eval(loaded, images, mesh)
    np.testing.assert_allclose(sums, one_device[1], atol=0.15, rtol=0.05)
