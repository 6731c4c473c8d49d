"""Accelerator specs the plan's roofline uses, and the compile targets it plans for.

A `Target` is a set of devices to build a mesh over: a TPU topology's abstract devices (`libtpu` compiles for
them on this CPU: `jax.experimental.topologies.get_topology_desc`), or, for GPUs where no compiler target is
available here, N fake CPU devices with a per-device memory budget (the programs are compiled for XLA:CPU
with the same shardings, so arguments are exact and temporaries are the CPU compiler's, an approximation).

Specs are the vendors' published per-chip figures (dense bfloat16 matmul peak, HBM capacity and bandwidth):
TPU v4 / v5e / v5p / v6e from cloud.google.com/tpu/docs/system-architecture-tpu-vm (one JAX device per chip),
H100 SXM and A100 SXM 80 GB from NVIDIA's data sheets.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    hbm_gib: float            # memory per device
    peak_tflops: float        # dense bfloat16 FLOP/s per device, in 1e12
    hbm_gbps: float           # memory bandwidth per device, in 1e9 bytes/s


CHIPS = {
    "v4": Chip("TPU v4", 32.0, 275.0, 1228.0),
    "v5e": Chip("TPU v5e", 16.0, 197.0, 819.0),
    "v5p": Chip("TPU v5p", 95.0, 459.0, 2765.0),
    "v6e": Chip("TPU v6e", 32.0, 918.0, 1640.0),
    "h100": Chip("H100 SXM 80GB", 80.0, 989.0, 3350.0),
    "a100": Chip("A100 SXM 80GB", 80.0, 312.0, 2039.0),
}


@dataclasses.dataclass
class Target:
    name: str                          # "v5e:2x4" or "8 x h100 (budget)"
    chip: Chip
    devices: Sequence                  # what the mesh is built over
    compiled_for: str                  # "TPU (libtpu)" or "XLA:CPU (budget)"

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    @property
    def platform(self) -> str:
        """What the programs are for: "tpu", or "gpu" for a budget target (compiled for XLA:CPU as a stand-in)."""
        return "tpu" if self.compiled_for.startswith("TPU") else "gpu"


def tpu_target(topology: str) -> Target:
    """`topology` as JAX spells it ("v5e:2x4" = v5e-8, "v4:2x2x1" = v4-8, "v5p:2x2x1" = v5p-8, "v5e:4x8" =
    v5e-32): its abstract devices, one per chip, compiled for by libtpu.  Raises naming the topology when libtpu
    cannot describe it."""
    from jax.experimental import topologies

    # Compiling only (no TPU is attached): let several processes load libtpu at once instead of the first one
    # holding /tmp/libtpu_lockfile and every other failing.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    kind = topology.split(":")[0].lower()
    if kind not in CHIPS or kind in ("h100", "a100"):
        raise ValueError(f"--topology {topology!r}: the chip {kind!r} is not in the plan's table "
                         f"({', '.join(k for k in CHIPS if k.startswith('v'))})")
    try:
        # v4 as a v4 VM runs JAX: megacore, one device per chip (libtpu's default is one per TensorCore);
        # v5e / v5p / v6e have one device per chip already.
        extra = {"chip_config_name": "megacore"} if kind == "v4" else {}
        desc = topologies.get_topology_desc(platform="tpu", topology_name=topology, **extra)
    except Exception as e:   # libtpu missing, or a topology it does not know
        raise ValueError(f"--topology {topology!r}: libtpu cannot describe it ({type(e).__name__}: {e})") from e
    return Target(topology, CHIPS[kind], list(desc.devices), "TPU (libtpu)")


def budget_target(devices: int, hbm_gib: float, chip: str = "h100") -> Target:
    """N devices of `hbm_gib` each (e.g. 8 x 80 for a GPU node), compiled for N fake CPU devices.  The CPU
    backend must have been given >= N devices before it started (`jax_num_cpu_devices`; the CLI does this)."""
    import jax

    cpus = jax.devices("cpu")
    if len(cpus) < devices:
        raise ValueError(f"--devices {devices}: only {len(cpus)} CPU devices; set jax_num_cpu_devices first")
    spec = dataclasses.replace(CHIPS[chip], hbm_gib=float(hbm_gib))
    return Target(f"{devices} x {chip} {hbm_gib:g} GiB (budget)", spec, cpus[:devices], "XLA:CPU (budget)")
