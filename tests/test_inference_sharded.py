"""Generation and class scoring with the batch split over 8 fake devices equal the single-device results."""

import jax
import numpy as np
import pytest

from tiny_models import IMAGE_TOKEN, new_llava
from vlmcls_jax import sharding as shd
from vlmcls_jax.inference import generate, score_candidates


def prompts(B=8, T=10):
    rng = np.random.default_rng(0)
    ids = rng.integers(3, IMAGE_TOKEN, (B, T)).astype(np.int32)
    ids[:, 2:6] = IMAGE_TOKEN
    ids[::2, :2] = 0                                           # every other row left-padded by 2
    mask = (ids != 0).astype(np.int32)
    return ids, mask, rng.standard_normal((B, 28, 28, 3)).astype(np.float32)


@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (2, 4, 1)])
def test_data_parallel_inference_equals_one_device(mesh_shape):
    ids, mask, px = prompts()
    model = new_llava()
    tokens = generate(model, ids, mask, px, max_new_tokens=5)
    scores, _ = score_candidates(model, ids, mask, [[5], [6, 7], [8, 9, 10]], px, chunk_size=2)
    mesh = shd.make_mesh(mesh_shape)
    with jax.set_mesh(mesh):
        sharded = shd.shard_model(new_llava(), mesh)
        np.testing.assert_array_equal(generate(sharded, ids, mask, px, max_new_tokens=5, mesh=mesh), tokens)
        got, _ = score_candidates(sharded, ids, mask, [[5], [6, 7], [8, 9, 10]], px, chunk_size=2, mesh=mesh)
    np.testing.assert_allclose(got, scores, atol=1e-5)


def test_batch_must_split_over_the_devices():
    ids, mask, px = prompts(B=6)
    mesh = shd.make_mesh((8, 1, 1))
    with pytest.raises(ValueError, match="batch of 6 does not split over the 8 batch devices"):
        generate(new_llava(), ids, mask, px, max_new_tokens=2, mesh=mesh)
