"""Two processes on localhost joined by jax.distributed (4 fake CPU devices each, one 8-device mesh) train,
checkpoint, stop, and resume; the resumed run's losses equal an uninterrupted two-process run's."""

import json
import os
import subprocess
import sys

import portpicker

import train_fixtures

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_pair(workdir, world, stop_at):
    port = portpicker.pick_unused_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]))
    procs = [subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "multihost_worker.py"), str(port), str(i),
                               str(workdir), *map(str, world), str(stop_at)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    return outputs


def losses(workdir):
    return {r["step"]: r["loss"] for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())}


def test_two_processes_train_checkpoint_and_resume(tmp_path):
    world = (train_fixtures.tiny_checkpoint(tmp_path / "ckpt"),
             train_fixtures.shapes_dataset(tmp_path / "data", 24), tmp_path / "data")
    run_pair(tmp_path / "full", world, 0)
    run_pair(tmp_path / "resumed", world, 4)
    assert sorted(losses(tmp_path / "resumed")) == [2, 4]
    outputs = run_pair(tmp_path / "resumed", world, 0)
    assert all("resumed from step 4" in out for out in outputs)
    full, resumed = losses(tmp_path / "full"), losses(tmp_path / "resumed")
    assert [resumed[s] for s in (6, 8)] == [full[s] for s in (6, 8)]
    assert (tmp_path / "full" / "hf_export" / "model.safetensors").exists()
