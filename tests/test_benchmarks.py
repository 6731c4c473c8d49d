"""Each benchmark runs in a small setting (it must run, not be fast: speed is measured by the scripts)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))


def test_forward_benchmark_runs_both_sides(capsys):
    import forward
    results = forward.run(dtypes=("float32", "bfloat16"), repeats=1, tiny=True)
    for dtype in ("float32", "bfloat16"):
        r = results[dtype]
        assert r["ours"] > 0 and r["transformers"] > 0 and r["flops"] > 0 and r["peak"] > 0
        assert r["ratio"] == pytest.approx(r["transformers"] / r["ours"])
    assert "speed-up" in capsys.readouterr().out


def test_generation_benchmark_runs_both_sides(capsys):
    import generation
    results = generation.run(dtypes=("float32",), repeats=1, tiny=True)
    r = results["float32"]
    assert r["ours"] > 0 and r["transformers"] > 0 and r["weight_read"] > 0 and r["bandwidth"] > 0
    assert "new tokens/s" in capsys.readouterr().out


def test_class_scoring_benchmark_runs_all_four_and_agrees():
    """ImageNet's first 20 names with the real Llama-2 tokenizer; the script itself checks that the three
    PyTorch scorers give our scores (float32)."""
    from conftest import shared_tokenizer_file
    shared_tokenizer_file("llama2.model")            # skips, saying why, without ../shared
    import class_scoring
    r = class_scoring.run(dtypes=("float32",), repeats=1, tiny=True, subset=3)["float32"]
    assert set(r["per_image"]) == {"ours", "packed", "full forward", "token loop"}
    assert r["classes"] == 20 and r["flops"] > 0 and r["peak"] > 0
