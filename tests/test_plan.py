"""`vlmcls_jax.plan` compiles a small LLaVA's train step and eval programs for a real TPU target (v5e:2x2)
through libtpu on this CPU, and its figures hang together."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train_fixtures
from vlmcls_jax import defaults
from vlmcls_jax.plan import chips, compile_row, format_table, plan
from vlmcls_jax.plan.programs import Program


@pytest.fixture(scope="module")
def target():
    try:
        return chips.tpu_target("v5e:2x2")
    except ValueError as e:   # libtpu is in the test extra (setup.py); a platform without its wheel skips
        pytest.skip(f"libtpu cannot load on this machine, so nothing can be compiled for a TPU: {e}")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(train_fixtures.tiny_checkpoint(tmp_path_factory.mktemp("plan") / "llava"))


def train_config(ckpt, batch):
    c = defaults.train_config()
    c.model.checkpoint, c.data.batch_size, c.data.buckets, c.mesh_shape = ckpt, batch, (64,), (1, -1, 1)
    c.learning_rates = {"projector": 1e-3}
    return c


def test_train_step_compiles_for_tpu_and_the_figures_hang_together(target, ckpt):
    small, large = (plan(train_config(ckpt, b), target, seq_len=1024)[0] for b in (8, 16))
    for row in (small, large):
        assert row.fits and not row.refused and row.args_gib > 0 and row.seconds > 0 and 0 < row.mfu <= 1
        # Unscanned, so XLA counts every layer: its FLOPs and our hand count agree to within remat-free
        # bookkeeping (XLA also counts softmax, norms and the optimizer's elementwise work).
        assert 0.8 < row.xla_flops / row.hand_flops < 2.0, (row.xla_flops, row.hand_flops)
    assert large.temp_gib > small.temp_gib                       # twice the batch, more activations
    assert large.args_gib > small.args_gib                       # the batch is an argument too
    assert large.hand_flops == pytest.approx(2 * small.hand_flops, rel=1e-6)
    table = format_table(train_config(ckpt, 8), [small], target)
    assert "| train step (batch 8 x 1024) |" in table and "/ 16 | yes |" in table and "v5e:2x2" in table


def test_eval_and_probe_programs_compile_for_tpu(target, ckpt):
    c = defaults.eval_config("flowers")
    c.model.checkpoint, c.mesh_shape, c.experiments = ckpt, (1, 1, 4), ("open", "scoring")
    rows = plan(c, target)     # max_new_tokens 0: the study's 64; scoring: the study's 1000 images
    assert [r.program.split(":")[1].split("(")[0].strip() for r in rows] == ["generate", "prefill", "score rows"]
    assert all(r.fits and r.args_gib > 0 and r.calls > 1 for r in rows)
    assert rows[0].calls == -(-6149 // 8) and "+ 64 new" in rows[0].program   # Flowers102's test images, by 8
    assert rows[1].calls == 1000                                  # prefill, one image a call
    assert "Estimated wall-clock for the whole dataset" in format_table(c, rows, target)
    p = defaults.probe_config("flowers")
    p.model.checkpoint, p.mesh_shape = ckpt, (1, 2, 2)
    (row,) = plan(p, target)
    assert row.program.startswith("features") and row.fits


def test_the_general_job_plans_one_generation_per_benchmark_for_every_model(target, ckpt):
    """Table 13 (`job = "general"`): POPE's two splits of 3000 questions each, for both models of the run
    (released and fine-tuned: one architecture, planned once), 128 new tokens as LLaVA's model_vqa_loader."""
    c = defaults.general_config()
    c.models, c.benchmarks, c.mesh_shape = (ckpt, ckpt), ("pope",), (1, 1, 4)
    (row,) = plan(c, target)
    assert row.program.startswith("pope: generate (batch 8 x ") and "+ 128 new" in row.program and row.fits
    assert row.calls == 2 * 2 * 3000 // 8
    assert f"model {ckpt}," in format_table(c, [row], target)
    c.benchmarks = ("pope", "vqav2")
    with pytest.raises(ValueError, match=r"config\.benchmarks: unknown \['vqav2'\]"):
        plan(c, target)


def test_a_program_too_large_is_reported_as_not_fitting(target, ckpt):
    """The TPU compiler refuses a program whose temporaries exceed the chip's 16 GiB: a row that does not
    fit, with the compiler's reason and what to change, not a traceback."""
    c = train_config(ckpt, 1024)
    c.mesh_shape = (1, 1, 4)                  # no batch axis: every chip holds the whole batch's activations
    (row,) = plan(c, target, seq_len=8192)
    assert not row.fits and "RESOURCE_EXHAUSTED" in row.refused
    table = format_table(c, [row], target)
    assert "**does not fit**" in table and "--config.model.remat=True" in table
    json.dumps(row.__dict__)                  # plain figures, printable and storable


def test_compiles_for_the_target_bypass_the_persistent_cache(target, tmp_path):
    """An executable for abstract TPU devices cannot be loaded back from JAX's persistent cache (a warning and a
    recompile on every later run): the plan keeps it out, though this process already uses the cache (JAX
    decides that once, at its first compile), and the cache works as before afterwards."""
    from jax.experimental.compilation_cache import compilation_cache

    before = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs,
              jax.config.jax_enable_compilation_cache)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    compilation_cache.reset_cache()
    try:
        written = lambda name: any(f.startswith(f"jit_{name}-") for f in os.listdir(tmp_path))

        def before_plan(x):
            return x * 3 + 1

        def tpu_matmul(a):
            return a @ a.T

        def after_plan(x):
            return x * 5 - 1

        x = jnp.ones(3)
        jax.jit(before_plan).lower(x).compile()
        assert written("before_plan")                                  # this process uses the cache
        mesh = jax.sharding.Mesh(target.devices, ("x",))
        spec = jax.ShapeDtypeStruct((256, 256), jnp.float32,
                                    sharding=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x")))
        row = compile_row(Program("matmul", lambda: jax.jit(tpu_matmul).lower(spec), 2.0 * 256 ** 3, 256), target)
        assert row.fits and row.xla_flops > 0
        assert not written("tpu_matmul")                               # nothing written for the TPU program
        jax.jit(after_plan).lower(x).compile()
        assert written("after_plan")                                   # the cache is back on afterwards

        def tpu_control(a):
            return a.T @ a

        jax.jit(tpu_control).lower(spec).compile()                    # a TPU program outside the plan: written
        assert written("tpu_control")
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
        jax.config.update("jax_enable_compilation_cache", before[2])
        compilation_cache.reset_cache()


def test_hbm_traffic_counts_each_weight_byte_once_where_xla_counts_on_chip_copies_too(target):
    """Two [4096, 4096] bfloat16 products split over 4 chips (8 MiB a weight a chip): the TPU program prefetches
    one weight into on-chip memory (`copy-start`, S(1)) and streams the other from HBM; XLA's "bytes accessed"
    counts the prefetched one about three times, `hbm_traffic` counts HBM's bytes: the weights, x and the result."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from vlmcls_jax.plan.hbm_traffic import arrays, hbm_traffic

    mesh = Mesh(np.array(target.devices).reshape(1, 4), ("data", "tensor"))
    w = jax.ShapeDtypeStruct((4096, 4096), jnp.bfloat16, sharding=NamedSharding(mesh, PartitionSpec(None, "tensor")))
    x = jax.ShapeDtypeStruct((8, 4096), jnp.bfloat16, sharding=NamedSharding(mesh, PartitionSpec()))
    compiled = jax.jit(lambda x, w1, w2: jax.nn.gelu(x @ w1) @ w2.T).lower(x, w, w).compile()
    weights, activations = 2 * 4096 * 1024 * 2, 8 * 4096 * 2
    traffic = hbm_traffic(compiled.as_text())
    assert weights <= traffic.read <= weights + 2 * activations and traffic.written <= activations
    cost = compiled.cost_analysis()
    assert (cost[0] if isinstance(cost, list) else cost)["bytes accessed"] > 2 * traffic.total
    # the parser's pieces: a tuple's arrays in order, memory space from the layout
    assert [(a.nbytes, a.in_hbm) for a in arrays("(bf16[8,4]{1,0:T(8,128)(2,1)S(1)}, f32[3]{0}, u32[]{:S(2)})")] == \
        [(64, False), (12, True), (4, False)]


HAND_HLO = """HloModule m, is_scheduled=true

%fused_update (p0: bf16[4,1024], p1: bf16[1,1024], p2: s32[]) -> bf16[4,1024] {
  %p0 = bf16[4,1024]{1,0} parameter(0)
  %p1 = bf16[1,1024]{1,0} parameter(1)
  %p2 = s32[] parameter(2)
  %z = s32[] constant(0)
  ROOT %dus = bf16[4,1024]{1,0} dynamic-update-slice(%p0, %p1, %p2, %z)
}

ENTRY %main (w: bf16[1024,2048], cache: bf16[4,1024], x: bf16[1,1024], i: s32[]) -> bf16[4,1024] {
  %w = bf16[1024,2048]{1,0:T(8,128)(2,1)} parameter(0)
  %cache = bf16[4,1024]{1,0:T(8,128)(2,1)} parameter(1)
  %x = bf16[1,1024]{1,0:T(8,128)(2,1)} parameter(2)
  %i = s32[]{:T(128)S(6)} parameter(3)
  %slice-start = ((bf16[1024,2048]{1,0:T(8,128)(2,1)}), bf16[1024,512]{1,0:T(8,128)(2,1)S(1)}, s32[]{:S(2)}) slice-start(%w), slice={[0:1024], [0:512]}
  %slice-done = bf16[1024,512]{1,0:T(8,128)(2,1)S(1)} slice-done(%slice-start)
  %copy-start = (bf16[1,1024]{1,0:T(8,128)(2,1)S(1)}, bf16[1,1024]{1,0:T(8,128)(2,1)}, u32[]{:S(2)}) copy-start(%x)
  %copy-done = bf16[1,1024]{1,0:T(8,128)(2,1)S(1)} copy-done(%copy-start)
  %update = bf16[4,1024]{1,0:T(8,128)(2,1)} fusion(%cache, %copy-done, %i), kind=kLoop, calls=%fused_update
  ROOT %out = bf16[4,1024]{1,0:T(8,128)(2,1)} copy(%update)
}
"""


def test_hbm_traffic_of_hand_written_hlo():
    """By hand: the slice reads a quarter of w from HBM (1024 x 512 x 2 = 1 MiB) into on-chip memory; the copy
    reads x (2 KiB); the in-place update of the cache in HBM writes one row (2 KiB) and reads nothing else of HBM
    (its update is on chip, i is a scalar in S(6)); the final copy reads and writes the cache (8 KiB each)."""
    from vlmcls_jax.plan.hbm_traffic import hbm_traffic

    traffic = hbm_traffic(HAND_HLO)
    assert traffic.read == 1024 * 512 * 2 + 1024 * 2 + 4 * 1024 * 2
    assert traffic.written == 1024 * 2 + 4 * 1024 * 2
    assert traffic.loops == 0


def test_a_batch_that_does_not_split_over_the_data_axis_names_its_field(target, ckpt):
    """Data parallel over 2 of the 4 chips: the scoring batch of 1 cannot split, and the plan says which field
    to change instead of failing inside the compiler (the eval job checks the same before loading anything)."""
    c = defaults.eval_config("flowers")
    c.model.checkpoint, c.mesh_shape, c.experiments = ckpt, (2, 1, 2), ("open", "scoring")
    with pytest.raises(ValueError, match=r"^config\.scoring\.batch_size=1: a batch splits over the 2 batch "
                                         r"devices .* give a multiple of 2"):
        plan(c, target)
    c.scoring.batch_size = 2
    assert [r.fits for r in plan(c, target)] == [True, True, True]


def test_the_plan_command_reports_a_bad_config_in_one_line():
    """`python -m vlmcls_jax.plan` ends a config error as the jobs do: one line naming the field, exit status 2
    (here: the mixture recipe's batch of 4 over the 8 devices of its FSDP mesh)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "vlmcls_jax.plan", "--config", "configs/finetune_mixture.py",
                             "--devices", "8", "--config.data.batch_size=4"], capture_output=True, text=True,
                            cwd=os.path.join(os.path.dirname(__file__), ".."), timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: config.data.batch_size=4: a batch splits over "
                                                             "the 8 batch devices")


def test_hbm_traffic_walks_a_while_loop_body_once(target):
    """A decode-like loop (`fori_loop` of a product with one weight): the body's traffic is counted once and the
    loop is reported, so a caller can scale by its trip count."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from vlmcls_jax.plan.hbm_traffic import hbm_traffic

    mesh = Mesh(np.array(target.devices).reshape(1, 4), ("data", "tensor"))
    w = jax.ShapeDtypeStruct((4096, 4096), jnp.bfloat16, sharding=NamedSharding(mesh, PartitionSpec()))
    x = jax.ShapeDtypeStruct((8, 4096), jnp.bfloat16, sharding=NamedSharding(mesh, PartitionSpec()))
    loop = jax.jit(lambda x, w: jax.lax.fori_loop(0, 5, lambda i, h: jnp.tanh(h @ w), x))
    traffic = hbm_traffic(loop.lower(x, w).compile().as_text())
    assert traffic.loops == 1 and traffic.total > 0
