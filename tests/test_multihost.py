"""Two processes on localhost joined by jax.distributed (4 fake CPU devices each, one 8-device mesh) train,
checkpoint, stop, and resume; the resumed run's losses equal an uninterrupted two-process run's.  Two
processes split an evaluation and agree with a one-process run."""

import json
import os
import subprocess
import sys

import portpicker
import pytest

import train_fixtures

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_pair(workdir, *args, worker="multihost_worker.py"):
    port = portpicker.pick_unused_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]))
    procs = [subprocess.Popen([sys.executable, os.path.join(REPO, "tests", worker), str(port), str(i),
                               str(workdir), *map(str, args)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    return outputs


def losses(workdir):
    return {r["step"]: r["loss"] for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())}


def stopped_at(out):
    return int(out.split("stopping at step ")[1].split(":")[0])


def test_two_processes_train_checkpoint_and_resume(tmp_path):
    """The SIGTERM drill: a preemption notice reaches process 1 alone, after step 2; jax.distributed's
    preemption sync point makes both processes stop after the same later step and checkpoint it, and the
    resumed pair ends on the uninterrupted pair's losses."""
    world = (train_fixtures.tiny_checkpoint(tmp_path / "ckpt"),
             train_fixtures.shapes_dataset(tmp_path / "data", 24), tmp_path / "data")
    run_pair(tmp_path / "full", *world, 0)
    first = run_pair(tmp_path / "resumed", *world, "sigterm:2")
    assert "process 1: SIGTERM after step 2" in first[1]
    stop = stopped_at(first[0])
    assert stopped_at(first[1]) == stop and 2 < stop < 8, first
    assert (tmp_path / "resumed" / "checkpoints" / str(stop)).is_dir()
    outputs = run_pair(tmp_path / "resumed", *world, 0)
    assert all(f"resumed from step {stop}" in out for out in outputs)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8]    # each step once
    full, resumed = losses(tmp_path / "full"), losses(tmp_path / "resumed")
    assert [resumed[s] for s in (4, 6, 8)] == [full[s] for s in (4, 6, 8)]
    assert (tmp_path / "full" / "hf_export" / "model.safetensors").exists()


def test_two_processes_split_an_evaluation(tmp_path):
    """Each process evaluates its share (7 examples: 4 + 3) on its own 4 devices, waits at the barrier, and
    reports the summary over both parts: the same as one process evaluating everything."""
    from vlmcls_jax import demo
    from vlmcls_jax.eval import job

    llava = train_fixtures.tiny_checkpoint(tmp_path / "llava")
    clip = train_fixtures.tiny_clip_checkpoint(tmp_path / "clip")
    manifest = train_fixtures.shapes_dataset(tmp_path / "data", 7)
    (tmp_path / "classes.json").write_text(json.dumps(demo.class_names()))
    world = (llava, clip, manifest, tmp_path / "classes.json", tmp_path / "data")
    outputs = run_pair(tmp_path / "two", *world, worker="multihost_eval_worker.py")
    summaries = [json.loads(out.split("RESULT ", 1)[1].splitlines()[0]) for out in outputs]
    assert summaries[0] == summaries[1]
    parts = sorted((tmp_path / "two" / "outputs").glob("open.jsonl.part*"))
    assert [p.name for p in parts] == ["open.jsonl.part0-of-2", "open.jsonl.part1-of-2"]
    assert [len(p.read_text().splitlines()) for p in parts] == [4, 3]
    one = job.run(train_fixtures.tiny_eval_config(*world), str(tmp_path / "one"))
    assert summaries[0]["examples"] == 7 and summaries[0]["rows"].keys() == one["rows"].keys()
    for row, metrics in one["rows"].items():
        for key, value in metrics.items():
            assert summaries[0]["rows"][row][key] == (pytest.approx(value, abs=1e-6) if isinstance(value, float)
                                                      else value), (row, key)
    assert json.loads((tmp_path / "two" / "results.json").read_text()) == summaries[0]
