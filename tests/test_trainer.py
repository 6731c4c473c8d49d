"""The training job end to end on a tiny model: runs, resumes exactly, moves between meshes, exports."""

import json

import numpy as np
import pytest

from configs import train_tiny
from vlmcls_jax.convert import load_hf
from vlmcls_jax.train import trainer

import train_fixtures


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    ckpt = train_fixtures.tiny_checkpoint(root / "ckpt")
    manifest = train_fixtures.shapes_dataset(root / "data", 24)
    return ckpt, manifest, root / "data"


def config(world, **changes):
    ckpt, manifest, images = world
    c = train_tiny.get_config()
    c.model.checkpoint, c.data.classification_manifest, c.data.image_root = str(ckpt), str(manifest), str(images)
    for key, value in changes.items():
        target = c
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return c


def losses(workdir):
    return {r["step"]: r["loss"] for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def uninterrupted(world, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    trainer.run(config(world), str(workdir))
    return workdir


def test_training_reduces_loss_and_exports(uninterrupted, world):
    log = losses(uninterrupted)
    assert sorted(log) == [2, 4, 6, 8]
    assert log[8] < log[2]
    assert list((uninterrupted / "tensorboard").glob("events.out.tfevents.*"))
    exported = load_hf(str(uninterrupted / "hf_export"))          # LoRA merged, loads as a plain LLaVA
    assert exported.config.text_config.hidden_size == 32


def test_resume_after_stop_continues_the_same_trajectory(world, uninterrupted, tmp_path):
    trainer.run(config(world, stop_at_step=4), str(tmp_path))
    assert sorted(losses(tmp_path)) == [2, 4]
    trainer.run(config(world), str(tmp_path))                       # same workdir: resumes at step 4
    resumed, full = losses(tmp_path), losses(uninterrupted)
    assert sorted(resumed) == [2, 4, 6, 8]
    assert [resumed[s] for s in (6, 8)] == [full[s] for s in (6, 8)]   # exactly equal


def test_checkpoint_from_one_mesh_resumes_on_another(world, uninterrupted, tmp_path):
    trainer.run(config(world, stop_at_step=4, mesh_shape=(2, 2, 2)), str(tmp_path))
    trainer.run(config(world, mesh_shape=(1, 4, 2)), str(tmp_path))
    resumed, full = losses(tmp_path), losses(uninterrupted)
    np.testing.assert_allclose([resumed[s] for s in (2, 4, 6, 8)], [full[s] for s in (2, 4, 6, 8)], rtol=1e-5)


def test_unknown_trainable_group_is_an_error(world, tmp_path):
    with pytest.raises(ValueError, match="match no parameter"):
        trainer.run(config(world, learning_rates={"^no_such_module/": 1e-3}), str(tmp_path))


def test_gradient_accumulation_counts_optimizer_updates(world, tmp_path):
    trainer.run(config(world, **{"optim.accumulate_steps": 2, "num_steps": 2, "log_every": 1}), str(tmp_path))
    assert sorted(losses(tmp_path)) == [1, 2]
