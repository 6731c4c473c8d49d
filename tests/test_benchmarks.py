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


def test_both_sides_gives_float32_weights_after_bfloat16():
    """`--dtypes bfloat16,float32` once gave the float32 transformers model the bfloat16-rounded weights (it was
    converted in place), and class_scoring.py's agreement check failed on it."""
    import numpy as np
    from flax import nnx

    import benchlib

    sides = benchlib.both_sides(("bfloat16", "float32"), tiny=True)
    ref, ours = {dtype: (ref, ours) for dtype, ref, ours, *_ in sides}["float32"]
    theirs = ref.model.language_model.layers[0].mlp.down_proj.weight.detach().numpy()
    mine = np.asarray(nnx.state(ours)["language_model"]["model"]["layers"][0]["mlp"]["down_proj"]["kernel"][...])
    np.testing.assert_array_equal(theirs.T, mine)


def test_class_scoring_benchmark_runs_all_four_and_agrees():
    """ImageNet's first 20 names with the real Llama-2 tokenizer; the script itself checks that the three
    PyTorch scorers give our scores (float32)."""
    import class_scoring
    r = class_scoring.run(dtypes=("float32",), repeats=1, tiny=True, subset=3)["float32"]
    assert set(r["per_image"]) == {"ours", "packed", "full forward", "token loop"}
    assert r["classes"] == 20 and r["flops"] > 0 and r["peak"] > 0


def test_train_step_benchmark_runs_both_sides_from_the_same_loss(capsys):
    """The script itself checks that both sides start from the same loss (same weights and batch)."""
    import train_step
    r = train_step.run(dtypes=("float32",), repeats=1, tiny=True)["float32"]
    assert r["ours"] > 0 and r["transformers"] > 0 and 0 < r["mfu"] and r["flops"] > 0
    assert "MFU" in capsys.readouterr().out


def test_step_flops_counts_the_small_llava_by_hand():
    """12 layers x (2 x 228 x 768 x (4 x 768 + 3 x 2048) + 4 x 228^2 x 768) + the 32064-word head, x3 for the
    backward; plus the frozen tower's 11 layers (feature layer -2) and patch embedding, forward only."""
    import types

    import train_step
    v = types.SimpleNamespace(image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072,
                              num_hidden_layers=12)
    t = types.SimpleNamespace(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
                              num_key_value_heads=12, vocab_size=32064)
    cfg = types.SimpleNamespace(vision_config=v, text_config=t, vision_feature_layer=-2)
    llm = 12 * (2 * 228 * 768 * (4 * 768 + 3 * 2048) + 4 * 228 ** 2 * 768) + 2 * 228 * 768 * 32064
    projector = 2 * 196 * (768 * 768 + 768 * 768)
    vision = 2 * 196 * 3 * 256 * 768 + 11 * (2 * 197 * (4 * 768 ** 2 + 2 * 768 * 3072) + 4 * 197 ** 2 * 768)
    assert train_step.step_flops(cfg, 4, 228) == 4 * (vision + 3 * (projector + llm))


def test_compile_time_benchmark_compiles_unrolled_and_scanned(capsys):
    import compile_time
    r = compile_time.run(layers=(1, 2), tiny=True, programs=("forward",))
    assert set(r) == {("forward", False), ("forward", True)}
    assert all(v[n]["total"] >= v[n]["compile"] > 0 for v in r.values() for n in (1, 2))
    assert "scanned" in capsys.readouterr().out


def test_conversion_benchmark_measures_both_directions():
    import conversion
    kinds = ("hf-to-orbax", "orbax-to-hf")                  # load_hf, orbax save, orbax restore, export
    r = conversion.run(tiny=True, kinds=kinds)
    assert r["shards"] > 1                                   # a sharded checkpoint, as the hub's
    for kind in kinds:
        assert r[kind]["seconds"] >= 0 and r[kind]["max_rss"] > 0


def test_data_pipeline_benchmark_reports_workers_and_the_step(capsys):
    import data_pipeline
    r = data_pipeline.run(images=8, batches=2, workers=(1,), tiny=True)
    assert set(r["pipeline"]) == {1} and all(v > 0 for v in r["pipeline"].values()) and r["step"] > 0
    assert "images/s" in capsys.readouterr().out


def test_decode_anatomy_times_products_and_steps(capsys):
    import decode_anatomy
    times = decode_anatomy.run(repeats=1, tiny=True)
    assert len(times) == 7 and all(t > 0 for t in times.values())
    assert {"decode step", "decode step, scanned layers"} <= set(times)
    out = capsys.readouterr().out
    assert "GB/s of weights" in out and "x the time to read them" in out


def test_small_matmul_times_both_frameworks_per_row_count(capsys):
    import small_matmul
    results = small_matmul.run(("float32", "bfloat16"), repeats=1, rows=(1, 2), layers=1)
    for times in results.values():
        assert set(times) == {"reduction", "XLA, M = 1", "XLA, M = 2", "PyTorch, M = 1", "PyTorch, M = 2"}
        assert all(t > 0 for t in times.values())
    assert "x the read time" in capsys.readouterr().out


def test_forward_products_times_xla_both_accumulations_and_pytorch(capsys):
    import forward_products
    r = forward_products.run(("bfloat16",), repeats=1, layers=1, vocab=64)["bfloat16"]
    assert set(r) == {"XLA, float32 accumulation", "XLA, bfloat16 accumulation", "PyTorch F.linear"}
    assert all(v["seconds"] > 0 and v["gflops"] > 0 for v in r.values())
    assert "PyTorch / this" in capsys.readouterr().out


def test_thunk_profile_reads_xla_cpu_per_op_times(capsys):
    """The profile the RESULTS cite: XLA:CPU's per-thunk trace events, grouped by op; the tiny forward's output
    head (its largest product) is the largest library call."""
    import thunk_profile
    grouped = thunk_profile.run(("float32",), repeats=1, tiny=True)["float32"]
    assert sum(grouped.values()) > 0
    (_, kind, _), _ = grouped.most_common(1)[0]
    assert kind.startswith(thunk_profile.LIBRARY_OPS)
    assert "of it in library calls" in capsys.readouterr().out
