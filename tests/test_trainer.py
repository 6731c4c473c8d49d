"""The training job end to end on a tiny model: runs, resumes exactly, moves between meshes, exports."""

import json
import os
import signal

import numpy as np
import pytest

import train_fixtures
from configs import train_tiny
from vlmcls_jax.convert import load_hf
from vlmcls_jax.train import trainer


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


def test_same_seed_and_config_give_identical_metrics(world, uninterrupted, tmp_path):
    trainer.run(config(world), str(tmp_path))
    timing = ("tokens_per_s", "images_per_s", "mfu")

    def records(workdir):
        return [{k: v for k, v in json.loads(line).items() if k not in timing}
                for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert records(tmp_path) == records(uninterrupted)     # every metric of every logged step, bit for bit


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


def test_a_workdir_of_another_setting_is_refused_or_left_for_a_fresh_subfolder(world, uninterrupted, tmp_path):
    """Another checkpoint in a finished run's workdir: refused in one line before anything loads (no
    "resumed from step 8", provenance.json untouched); with overwrite, a fresh subfolder."""
    other = train_fixtures.tiny_checkpoint(tmp_path / "other")
    before = (uninterrupted / "provenance.json").read_text()
    with pytest.raises(ValueError, match=r"holds outputs of another setting \(lora.rank 4 -> 8; "
                                         r"model.checkpoint .*/ckpt\" -> .*/other\""):
        trainer.run(config(world, **{"lora.rank": 8, "model.checkpoint": str(other)}), str(uninterrupted))
    assert (uninterrupted / "provenance.json").read_text() == before
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "fingerprint.json").write_text((uninterrupted / "fingerprint.json").read_text())
    trainer.run(config(world, seed=1, num_steps=1, log_every=1, checkpoint_every=0, export_hf=False,
                       overwrite=True), str(tmp_path / "run"))
    assert sorted(losses(tmp_path / "run" / "fresh-1")) == [1]


def test_unknown_trainable_group_is_an_error(world, tmp_path):
    with pytest.raises(ValueError, match="match no parameter"):
        trainer.run(config(world, learning_rates={"^no_such_module/": 1e-3}), str(tmp_path))


def test_an_empty_checkpoint_unknown_prng_or_unsplittable_batch_is_named_before_the_workdir_is_touched(world, tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=r"^config\.model\.checkpoint is empty"):
        trainer.run(config(world, **{"model.checkpoint": ""}), str(workdir))
    with pytest.raises(ValueError, match=r"^config\.lora\.dropout_prng: .*rbg"):
        trainer.run(config(world, **{"lora.dropout_prng": "philox"}), str(workdir))
    # a batch of 4 over the 8 test devices' fsdp axis cannot split
    with pytest.raises(ValueError, match=r"^config\.data\.batch_size=4: a batch splits over the 8 batch devices"):
        trainer.run(config(world, **{"data.batch_size": 4, "mesh_shape": (1, -1, 1)}), str(workdir))
    assert not workdir.exists()


def test_gradient_accumulation_counts_optimizer_updates(world, tmp_path):
    trainer.run(config(world, **{"optim.accumulate_steps": 2, "num_steps": 2, "log_every": 1}), str(tmp_path))
    assert sorted(losses(tmp_path)) == [1, 2]


def test_a_run_that_only_skips_steps_stops_with_a_message(world, tmp_path):
    """A learning rate of 1e30 sends the weights to inf after the first update; every later step is
    non-finite and skipped, and after two in a row the run stops saying why."""
    with pytest.raises(RuntimeError, match=r"the last 2 steps were all skipped by the step guard.*"
                                           r"config.guard.max_consecutive_bad = 2"):
        trainer.run(config(world, learning_rates={"projector": 1e30}, **{"optim.warmup_ratio": 0.0,
                                                                          "guard.max_consecutive_bad": 2}),
                    str(tmp_path))
    logged = losses(tmp_path) if (tmp_path / "metrics.jsonl").exists() else {}
    assert all(step <= 4 for step in logged)     # it stopped early, not after all 8 steps


def test_sigterm_writes_a_checkpoint_and_the_rerun_resumes_exactly(world, uninterrupted, tmp_path, monkeypatch):
    """SIGTERM (sent here right after step 2 is logged) makes the run checkpoint and stop after that step,
    instead of dying; running again resumes from there on the uninterrupted run's trajectory."""
    write = trainer.MetricsLog.write

    def write_then_terminate(self, step, *args):
        write(self, step, *args)
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(trainer.MetricsLog, "write", write_then_terminate)
    handler = signal.getsignal(signal.SIGTERM)
    trainer.run(config(world, checkpoint_every=100), str(tmp_path))
    assert sorted(losses(tmp_path)) == [2]
    assert max(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == 2
    assert signal.getsignal(signal.SIGTERM) is handler                 # the run's handler is removed afterwards
    monkeypatch.undo()
    trainer.run(config(world, checkpoint_every=100), str(tmp_path))
    resumed, full = losses(tmp_path), losses(uninterrupted)
    assert [resumed[s] for s in (4, 6, 8)] == [full[s] for s in (4, 6, 8)]


def test_ctrl_c_checkpoints_and_stops_like_sigterm(world, tmp_path, capsys):
    """Ctrl-C (SIGINT) during training: the run finishes its step, writes a checkpoint and stops (no
    KeyboardInterrupt, no lost steps); the previous SIGINT handler is back afterwards."""
    write = trainer.MetricsLog.write

    def write_then_interrupt(self, step, *args):
        write(self, step, *args)
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
    handler = signal.getsignal(signal.SIGINT)
    trainer.MetricsLog.write = write_then_interrupt
    try:
        trainer.run(config(world, checkpoint_every=100, export_hf=False), str(tmp_path))
    finally:
        trainer.MetricsLog.write = write
    assert "stopping at step 2: asked to terminate (SIGINT (Ctrl-C))" in capsys.readouterr().out
    assert max(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == 2
    assert signal.getsignal(signal.SIGINT) is handler


def test_metrics_of_steps_after_the_resumed_checkpoint_are_dropped(tmp_path):
    """A run killed after logging step 4 but before checkpointing it resumes from step 2 and logs 4 again:
    the log keeps each step once."""
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (2, 4)))
    trainer.drop_after(str(log), 2)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [2]
    trainer.drop_after(str(tmp_path / "absent.jsonl"), 2)    # a first run has no log yet


def test_records_with_unreadable_images_are_skipped_counted_and_recorded(world, tmp_path):
    """data.on_bad_image="skip": the record whose image is broken is left out, listed and counted in
    WORKDIR/provenance.json beside what was loaded.  ("error", the default, raises naming the file when
    the pipeline reaches it: `preprocess.load_image`, tested in test_preprocess.py.)"""
    ckpt, manifest, images = world
    broken = tmp_path / "images"
    broken.mkdir()
    for image in images.iterdir():
        (broken / image.name).write_bytes(image.read_bytes())
    (broken / "3.png").write_bytes(b"")
    trainer.run(config((ckpt, manifest, broken), num_steps=1, checkpoint_every=0, export_hf=False, log_every=1,
                       **{"data.on_bad_image": "skip"}), str(tmp_path / "skip"))
    provenance = json.loads((tmp_path / "skip" / "provenance.json").read_text())
    assert provenance == {"model": {"checkpoint": str(ckpt), "revision": None, "folder": str(ckpt), "commit": None},
                          "records": 23, "skipped_images": 1}
    skipped = json.loads((tmp_path / "skip" / "skipped_images.jsonl").read_text())
    assert skipped["image"] == str(broken / "3.png") and "empty" in skipped["error"]


def test_sigkill_mid_checkpoint_write_then_resume_on_the_same_trajectory(world, uninterrupted, tmp_path):
    """SIGKILL (no handler, no cleanup, as when a machine dies) right after step 4's asynchronous checkpoint
    write starts: its temporary folder is left behind and never taken as a checkpoint; the rerun resumes
    from step 2, is killed again as step 6's write starts (orbax finishes step 4's first), and the third
    run resumes from 4 or 6 and ends on the uninterrupted run's losses, bit for bit."""
    import subprocess
    import sys
    ckpt, manifest, images = world
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(kill_at):
        out = subprocess.run([sys.executable, os.path.join(repo, "tests", "kill_worker.py"), str(tmp_path), str(ckpt),
                              str(manifest), str(images), kill_at], cwd=repo, capture_output=True, text=True,
                             timeout=600, env=dict(os.environ, PYTHONPATH=repo))
        assert out.returncode == (0 if kill_at == "never" else -signal.SIGKILL), out.stdout + out.stderr
        return out.stdout

    def complete_steps():
        return sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())

    def resumed_from(stdout):
        return int(stdout.split("resumed from step ")[1].split()[0])

    run("save:4")
    assert 2 in complete_steps() and max(complete_steps()) <= 4
    half_written = 4 not in complete_steps()      # the usual case: the write was still in flight
    assert half_written == (tmp_path / "checkpoints" / "4.orbax-checkpoint-tmp").exists()
    second = run("save:6")
    assert resumed_from(second) == (2 if half_written else 4)
    assert 4 in complete_steps()
    third = run("never")
    assert resumed_from(third) in (4, 6) and "finished" in third
    assert complete_steps()[-3:] == [4, 6, 8] and not list((tmp_path / "checkpoints").glob("*tmp*"))
    resumed, full = losses(tmp_path), losses(uninterrupted)
    assert [resumed[s] for s in (2, 4, 6, 8)] == [full[s] for s in (2, 4, 6, 8)]
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8]       # steps logged again after a resume appear once
