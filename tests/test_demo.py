"""The demo job end to end: `vlmcls_jax.demo.run` with configs/demo.py, and the `vlmcls_jax.main` command line."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vlmcls_jax import demo

REPO = Path(__file__).resolve().parents[1]
CONFIG_FILE = REPO / "configs" / "demo.py"
FIELDS = {"image", "label", "generation", "generation_correct", "scored_prediction", "scored_correct",
          "class_log_likelihoods"}


def demo_config(**changes):
    """configs/demo.py's get_config(), imported from its file (no ml_collections config_flags)."""
    spec = importlib.util.spec_from_file_location("demo_config_under_test", CONFIG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for key, value in changes.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    config = demo_config(num_images=4, max_new_tokens=4)
    records = demo.run(config, str(workdir))
    return config, workdir, records


def test_demo_writes_one_record_per_image(demo_run):
    config, workdir, returned = demo_run
    lines = (workdir / "demo_results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4 == config.num_images
    assert records == json.loads(json.dumps(returned))           # the file holds what run() returned
    assert not (workdir / "demo_results.jsonl.tmp").exists()
    names = demo.class_names()
    assert [r["image"] for r in records] == [0, 1, 2, 3]
    for r in records:
        assert set(r) == FIELDS
        assert r["label"] in names
        assert isinstance(r["generation"], str)
        assert r["generation_correct"] == (r["label"].lower() in r["generation"].lower())
        likelihoods = r["class_log_likelihoods"]
        assert list(likelihoods) == names                         # one value per class, in class order
        values = np.array(list(likelihoods.values()))
        assert np.isfinite(values).all() and (values < 0).all()
        assert r["scored_prediction"] == names[int(np.argmax(values))]
        assert r["scored_prediction"] == max(likelihoods, key=likelihoods.get)
        assert r["scored_correct"] == (r["scored_prediction"] == r["label"])
    # Different images give different scores (the image reaches the language model).
    assert len({json.dumps(r["class_log_likelihoods"]) for r in records}) == 4


def test_demo_checkpoint_loads_in_transformers(demo_run):
    import torch
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    config, workdir, _ = demo_run
    checkpoint = workdir / "hf_checkpoint"
    model, info = LlavaForConditionalGeneration.from_pretrained(checkpoint, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info.get("mismatched_keys"), info
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    assert len(tokenizer) == model.config.text_config.vocab_size
    assert tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_index
    assert tokenizer.pad_token_id == model.config.text_config.pad_token_id
    assert tokenizer.eos_token_id == model.config.text_config.eos_token_id
    assert model.config.vision_config.image_size == config.image_size
    # The saved tokenizer splits the class names as the demo scored them (round trip).
    ids = tokenizer("USER: <image>\nWhat type of object is in this photo?\nASSISTANT: The photo features a red circle")
    assert tokenizer.decode(ids["input_ids"], skip_special_tokens=True).endswith("The photo features a red circle")
    assert torch.isfinite(next(model.parameters())).all()


def test_main_command_line(tmp_path):
    """The documented command exits 0 and prints the accuracy lines.  XLA's backend optimisation is turned
    off in the child (halves its compile time on CPU; this checks the wiring, not numbers)."""
    workdir = tmp_path / "cli"
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    result = subprocess.run(
        [sys.executable, "-m", "vlmcls_jax.main", "--config", "configs/demo.py", "--workdir", str(workdir),
         "--config.num_images=2", "--config.max_new_tokens=2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "generation accuracy (substring match):" in result.stdout and "/2" in result.stdout, result.stdout
    assert "class-scoring accuracy:" in result.stdout, result.stdout
    # Quiet by default: the key facts, the demo's own lines and where its outputs went; no library logs.
    assert len(result.stdout.splitlines()) <= 12 and not result.stderr.strip(), result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith("demo job done in ") and str(workdir) in result.stdout
    records = [json.loads(line) for line in (workdir / "demo_results.jsonl").read_text().splitlines()]
    assert len(records) == 2
    assert all(math.isfinite(v) for r in records for v in r["class_log_likelihoods"].values())
