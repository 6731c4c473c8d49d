"""The command line as a user meets it: `--help`, quiet logs, and user errors as one line with exit status 2
(a misspelt override named with the right field, a corrupt image naming its manifest line and the skip
option, a failed run leaving no temporary checkpoint folder behind); internal errors keep their traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import train_fixtures
from vlmcls_jax import main

REPO = Path(__file__).resolve().parents[1]


def cli(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    return subprocess.run([sys.executable, "-m", "vlmcls_jax.main", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_help_exits_0_and_lists_jobs_configs_and_overrides():
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    for job in ("eval", "probe", "train", "imagewikiqa", "toyworld", "demo"):
        assert re.search(rf"^  {job} ", result.stdout, re.M), job
    assert "table1.py" in result.stdout and "train_tiny.py" in result.stdout
    assert "--config.generation.max_new_tokens=8" in result.stdout and "--verbosity" in result.stdout


def test_a_misspelt_override_is_one_line_naming_the_right_field():
    result = cli("--config", "configs/table1.py:flowers", "--workdir", "/nonexistent/run",
                 "--config.generation.max_new_token=8")
    assert result.returncode == main.USER_ERROR_EXIT
    assert result.stderr.splitlines() == [
        "error: --config.generation.max_new_token=8: config.generation.max_new_token is not a field of this "
        "config (did you mean --config.generation.max_new_tokens?)"]


def _raise(error):
    raise error


def test_user_errors_are_ours_or_about_paths_internal_errors_are_not():
    import ml_collections

    from vlmcls_jax.config_check import check_config
    from vlmcls_jax.defaults import train_config

    config = ml_collections.ConfigDict({"num_stepz": 1})
    for error_of, user in [(lambda: check_config(config, train_config()), True),
                           (lambda: open("/nonexistent/file"), True),
                           (lambda: _raise(PermissionError(13, "Permission denied", "/root/x")), True),
                           (lambda: int("x"), False),                # a ValueError raised outside our code
                           (lambda: _raise(RuntimeError("bug")), False),
                           (lambda: [][1], False)]:
        with pytest.raises(Exception) as caught:
            error_of()
        assert main.is_user_error(caught.value) == user, caught.value
    with pytest.raises(ValueError) as caught:
        check_config(ml_collections.ConfigDict({"num_stepz": 1, "seeed": 2}), train_config())
    assert "\n" not in main.one_line(caught.value) and "num_stepz" in main.one_line(caught.value)


def _value_error_raised_in(path):
    """The ValueError that a config file at PATH raises (its traceback names PATH)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("def get_config():\n    raise ValueError('config.data.name must be set')\n")
    namespace = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    with pytest.raises(ValueError) as caught:
        namespace["get_config"]()
    return caught.value


def test_a_value_error_in_the_users_config_is_a_user_error_one_in_another_configs_folder_is_not(tmp_path):
    """The user's own config file (named by --config) is theirs; another library's `configs/` folder is not
    ours: its ValueError is a bug and keeps its traceback."""
    mine = tmp_path / "mine" / "configs" / "my_run.py"
    assert main.is_user_error(_value_error_raised_in(mine), str(mine))
    assert not main.is_user_error(_value_error_raised_in(tmp_path / "lib" / "configs" / "x.py"), str(mine))


def test_a_tiny_training_run_is_quiet_and_a_corrupt_image_ends_in_one_line(tmp_path):
    """Manifest line 4's image is truncated; with a checkpoint every step, writes are in flight when the
    pipeline reaches it.  The run prints its key facts and progress only (no orbax INFO lines, no backend
    chatter), then one error line naming the manifest line and the skip option; exit status 2; no
    temporary checkpoint folder is left."""
    ckpt = train_fixtures.tiny_checkpoint(tmp_path / "ckpt")
    manifest = train_fixtures.shapes_dataset(tmp_path / "data", 24)
    bad = tmp_path / "data" / "3.png"
    bad.write_bytes(bad.read_bytes()[:100])
    workdir = tmp_path / "run"
    result = cli("--config", "configs/train_tiny.py", "--workdir", workdir, f"--config.model.checkpoint={ckpt}",
                 f"--config.data.classification_manifest={manifest}", f"--config.data.image_root={tmp_path / 'data'}",
                 "--config.checkpoint_every=1", "--config.log_every=1", "--config.export_hf=False")
    assert result.returncode == main.USER_ERROR_EXIT, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("train job, model ") and lines[0].endswith(f"outputs in {workdir}")
    assert lines[1].startswith("training ") and all(line.startswith("step ") for line in lines[2:]), lines
    assert len(lines) <= 2 + 8
    # orbax's own warning when a save waits for the previous one (a loaded machine) is not ours to silence
    stderr = [line for line in result.stderr.splitlines() if "Waiting for previous save to complete" not in line]
    assert stderr == [
        f"error: record manifest.jsonl:4: Cannot decode image file '{bad}': OSError: image file is truncated; fix or "
        "remove it, or run with --config.data.on_bad_image=skip to leave out records whose image is unreadable "
        "(they are listed and counted)"], result.stderr
    assert not list((workdir / "checkpoints").glob("*orbax-checkpoint-tmp*"))
