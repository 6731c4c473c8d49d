"""Before a run: does each program of a job fit the accelerator, and how long will it take?

    python -m vlmcls_jax.plan --config configs/finetune_projector.py:imagenet --topology v5e:2x4
    python -m vlmcls_jax.plan --config configs/table1.py:imagenet --topology v5e:2x4 --config.mesh_shape=1,1,8
    python -m vlmcls_jax.plan --config configs/finetune_lora.py --devices 8 --hbm_gib 80     # a GPU node

The job's model and state are built abstractly (presets or the checkpoint's config.json; no weights read)
with the job's own shardings, and the programs it runs (`plan.programs`) are compiled for the target: a TPU
topology through libtpu, or N fake CPU devices for a GPU-like memory budget.  For each program the table
gives per-device arguments, temporaries and outputs from XLA's `memory_analysis()` against the device's
memory, whether it fits (a compile the TPU compiler refuses for memory is reported as "does not fit"), XLA's
FLOPs (`cost_analysis()`, which counts a loop body once) beside the hand count (`plan.flops`), a roofline
time per call from the chip table (`plan.chips`: max of FLOPs / peak and bytes touched / bandwidth), the
MFU that time implies (an upper bound: real runs reach less) and tokens/s, and for evaluation jobs the
estimated wall-clock over the whole dataset.  What to change when a program does not fit is printed below.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

from vlmcls_jax.models.layers import compiling_for
from vlmcls_jax.plan.chips import Target

GIB = 2 ** 30


@dataclasses.dataclass
class Row:
    program: str
    compile_s: float
    args_gib: float = 0.0
    temp_gib: float = 0.0
    out_gib: float = 0.0          # outputs not aliased to (donated) arguments
    peak_gib: float = 0.0
    fits: bool = False
    refused: str = ""             # the compiler's refusal, when it refused
    xla_flops: float = 0.0        # per device, XLA's count
    hand_flops: float = 0.0       # per device, our count
    seconds: float = 0.0          # roofline time per call
    mfu: float = 0.0
    tokens_per_s: float = 0.0
    calls: float = 1.0
    note: str = ""

    @property
    def total_s(self) -> float:
        return self.seconds * self.calls


def _refusal(error: Exception) -> str | None:
    text = str(error)
    if "RESOURCE_EXHAUSTED" in text or "exceeds available" in text or "Out of memory" in text:
        return next((line.strip() for line in text.splitlines() if "RESOURCE_EXHAUSTED" in line or "exceeds" in line),
                    text.splitlines()[0])[:300]
    return None


@contextlib.contextmanager
def without_persistent_cache():
    """JAX's persistent compilation cache off for the compiles inside, and as it was after.

    An executable compiled for a topology's abstract devices is written to the cache, but this process's client
    cannot load it back ("PjRtCompiler must be constructed with a Client to call DeserializeLoadedExecutable":
    a warning and a recompile on every later run), and the compile time reported must be a compile's.  JAX
    decides whether a process uses the cache once, at its first compile, so turning
    `jax_enable_compilation_cache` off later changes nothing by itself; `reset_cache()` (public:
    jax.experimental.compilation_cache) makes it decide again at the next compile, here and on the way out."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", enabled)
        compilation_cache.reset_cache()


def compile_row(program, target: Target) -> Row:
    """Compiles one program for the target and reads its memory and cost; a refusal for memory is a row that
    does not fit, any other error propagates (the persistent compilation cache is off meanwhile:
    `without_persistent_cache`)."""
    n, chip = target.num_devices, target.chip
    start = time.perf_counter()
    try:
        with without_persistent_cache(), compiling_for(target.platform):
            compiled = program.compiled()
    except Exception as e:   # noqa: BLE001  (the compiler raises XlaRuntimeError; only memory refusals are kept)
        reason = _refusal(e)
        if reason is None:
            raise
        return Row(program.name, time.perf_counter() - start, refused=reason, hand_flops=program.hand_flops / n,
                   calls=program.calls, note=program.note)
    seconds = time.perf_counter() - start
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis() or {}
    cost = cost[0] if isinstance(cost, list) else cost
    args, temp = mem.argument_size_in_bytes, mem.temp_size_in_bytes
    out = max(0, mem.output_size_in_bytes - mem.alias_size_in_bytes)
    peak = args + temp + out + mem.generated_code_size_in_bytes
    row = Row(program.name, seconds, args / GIB, temp / GIB, out / GIB, peak / GIB, peak / GIB <= chip.hbm_gib,
              xla_flops=float(cost.get("flops", 0.0)), hand_flops=program.hand_flops / n, calls=program.calls,
              note=program.note)
    peak_flops, bandwidth = chip.peak_tflops * 1e12, chip.hbm_gbps * 1e9
    if program.decode_steps:   # prefill (compute) + decode steps (reading the weights and the cache each step)
        prefill = program.hand_flops - program.decode_steps * program.decode_flops
        step = max(program.decode_flops / n / peak_flops, (args + program.decode_cache_bytes / n) / bandwidth)
        row.seconds = max(prefill / n / peak_flops, args / bandwidth) + program.decode_steps * step
    else:
        row.seconds = max(program.hand_flops / n / peak_flops, (args + temp + out) / bandwidth)
    row.mfu = program.hand_flops / n / (row.seconds * peak_flops)
    row.tokens_per_s = program.tokens / row.seconds
    return row


def job_config(config):
    """`config` checked and overlaid on its job's defaults, as the job itself sees it (`check_job_config`)."""
    from vlmcls_jax.config_check import check_job_config

    if "job" not in config:
        raise ValueError("the config has no `job` field: the plan needs to know which job's programs to compile")
    return check_job_config(config, config.job)


def plan(config, target: Target, mesh_shape=None, seq_len: int | None = None, on_row=None) -> list[Row]:
    """Rows for every program of `config`'s job on `target` (mesh: `mesh_shape`, default the config's);
    `on_row(row)` is called as each one is compiled."""
    from vlmcls_jax.plan.programs import job_programs

    config = job_config(config)
    rows = []
    for program in job_programs(config, job_mesh(config, target, mesh_shape), seq_len):
        rows.append(compile_row(program, target))
        if on_row is not None:
            on_row(rows[-1])
    return rows


def job_mesh(config, target: Target, mesh_shape=None):
    """The mesh the job builds on the target's devices: `config.mesh_shape`; an evaluation job's () is one
    device per process (`eval.loading.eval_mesh`), planned as a 1-device mesh."""
    from vlmcls_jax import sharding as shd

    shape = tuple(mesh_shape or config.mesh_shape)
    return shd.make_mesh(shape or (1, 1, 1), devices=target.devices if shape else target.devices[:1])


def advice(config, rows: list[Row], target: Target) -> list[str]:
    """What to change when a program does not fit."""
    if all(r.fits for r in rows):
        return []
    job = config.job
    mesh = tuple(config.mesh_shape)
    tips = []
    if job == "train":
        m = config.model
        if not m.remat:
            tips.append("--config.model.remat=True (recompute each decoder layer in the backward pass)")
        if not m.scan_layers and config.lora.rank == 0:
            tips.append("--config.model.scan_layers=True (also compiles far faster)")
        if mesh and mesh[0] not in (1,):
            tips.append("--config.mesh_shape=1,-1,1 (FSDP: parameters and optimizer state split over all devices)")
        per_device = config.data.batch_size / target.num_devices
        if per_device > 1:
            tips.append(f"--config.data.batch_size={config.data.batch_size // 2} "
                        f"--config.optim.accumulate_steps={2 * config.optim.accumulate_steps} (same global batch, "
                        "half the activations)")
    else:
        if not mesh or mesh[1] * mesh[2] == 1:
            tips.append(f"--config.mesh_shape=1,1,{target.num_devices} (parameters split over all devices, "
                        "tensor parallel)")
        if "float32" in (config.model.dtype, config.model.param_dtype):
            tips.append("--config.model.dtype=bfloat16 --config.model.param_dtype=bfloat16")
        tips.append("a smaller generation / scoring batch_size")
    return tips


def _fmt_flops(x: float) -> str:
    return f"{x:.2e}" if x else "-"


def header(config, target: Target) -> str:
    from vlmcls_jax.plan.programs import planned_checkpoint

    chip = target.chip
    return "\n".join([
        f"plan: job {config.job}, model {planned_checkpoint(config)}, target {target.name} "
        f"({target.num_devices} x {chip.name}: {chip.hbm_gib:g} GiB, {chip.peak_tflops:g} TFLOP/s bf16, "
        f"{chip.hbm_gbps:g} GB/s; compiled for {target.compiled_for}), mesh {dict(job_mesh(config, target).shape)}",
        "",
        "| program | compile s | args GiB | temp GiB | out GiB | peak GiB / HBM | fits | XLA FLOPs / chip | "
        "hand FLOPs / chip | roofline s / call | MFU bound | tokens/s | calls | total h |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"])


def row_line(r: Row, target: Target) -> str:
    chip = target.chip
    if r.refused:
        return (f"| {r.program} | {r.compile_s:.0f} | - | - | - | > {chip.hbm_gib:g} | **does not fit** | - | "
                f"{_fmt_flops(r.hand_flops)} | - | - | - | {r.calls:g} | - |")
    return (f"| {r.program} | {r.compile_s:.0f} | {r.args_gib:.2f} | {r.temp_gib:.2f} | {r.out_gib:.2f} | "
            f"{r.peak_gib:.2f} / {chip.hbm_gib:g} | {'yes' if r.fits else '**no**'} | "
            f"{_fmt_flops(r.xla_flops)} | {_fmt_flops(r.hand_flops)} | {r.seconds:.3g} | {r.mfu:.0%} | "
            f"{r.tokens_per_s:,.0f} | {r.calls:g} | {r.total_s / 3600:.2f} |")


def footer(config, rows: list[Row], target: Target) -> str:
    lines = []
    refused = [r for r in rows if r.refused]
    for r in refused:
        lines.append(f"\n{r.program}: the compiler refused it: {r.refused}")
    if config.job != "train" and not refused:
        lines.append(f"\nEstimated wall-clock for the whole dataset (every program x its calls): "
                     f"{sum(r.total_s for r in rows) / 3600:.2f} h (roofline: a lower bound).")
    notes = sorted({r.note for r in rows if r.note})
    if notes:
        lines.append("Notes: " + "; ".join(notes) + ".")
    tips = advice(config, rows, target)
    if tips:
        lines.append("Does not fit. To change: " + "; or ".join(tips))
    return "\n".join(lines)


def format_table(config, rows: list[Row], target: Target) -> str:
    """The whole report: header, one line per program, what to change."""
    return "\n".join([header(config, target)] + [row_line(r, target) for r in rows] + [footer(config, rows, target)])
