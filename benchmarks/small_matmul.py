"""What bounds a decode step on a CPU (issue 22, items 1-2): the weight-streaming matrix products at a small
number of rows M (the batch, one new token each), in XLA and in PyTorch, against reading the same bytes.

    python benchmarks/small_matmul.py [--repeats 7] [--rows 1,2,4,8,16,64] [--dtypes float32,bfloat16]
                                      [--xla-flags "--xla_cpu_use_xnnpack=true;--xla_cpu_use_onednn=true"]

The weights are the small LLaVA's decoder layers (12 x q/k/v/o 768 x 768 and gate/up/down 768 x 3072, in our
[in, out] layout; 113 M parameters, the head left out).  For each dtype and M it prints, best of `repeats`
rounds taken in turn: the products of one decode step jitted as one XLA program, the same with PyTorch's
`F.linear` ([out, in] weights, oneDNN), each as bytes of weights read per second and as a ratio to a jitted
reduction over the same arrays (the time merely to read them; a decode step's floor).  A decode step cannot be
faster than its products, so where the M = 4 row reads at a third of the reduction, no decode step at batch 4
gets within 1.5x of the read time.  `--xla-flags` repeats the XLA rows in a fresh process per flag set (XLA
reads XLA_FLAGS once, at start).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np

D, F, LAYERS = 768, 3072, 12
SHAPES = [(D, D)] * 4 + [(D, F)] * 2 + [(F, D)]     # q, k, v, o; gate, up; down


def weights(layers: int = LAYERS) -> list[np.ndarray]:
    """float32 [in, out] arrays of one decode step's products, head left out."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(np.float32) * 0.02 for _ in range(layers) for s in SHAPES]


def xla_programs(ws: list, dtype: str, rows: tuple[int, ...]) -> dict:
    import jax
    import jax.numpy as jnp

    dev = [jnp.asarray(w, dtype) for w in ws]
    reduction = jax.jit(lambda ws: sum(w.astype(jnp.float32).sum() for w in ws))
    out = {"reduction": lambda: reduction(dev).block_until_ready()}
    for m in rows:
        xs = {n: jnp.ones((m, n), dtype) for n in (D, F)}
        products = jax.jit(lambda xs, ws: sum(
            jnp.matmul(xs[w.shape[0]], w, preferred_element_type=jnp.float32).sum() for w in ws))
        out[f"XLA, M = {m}"] = lambda xs=xs, products=products: products(xs, dev).block_until_ready()
    return out


def torch_programs(ws: list, dtype: str, rows: tuple[int, ...]) -> dict:
    import torch

    tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    dev = [torch.from_numpy(np.ascontiguousarray(w.T)).to(tdtype) for w in ws]   # [out, in], as nn.Linear
    out = {}
    for m in rows:
        xs = {n: torch.ones((m, n), dtype=tdtype) for n in (D, F)}

        def products(xs=xs):
            with torch.inference_mode():
                return sum(torch.nn.functional.linear(xs[w.shape[1]], w).float().sum() for w in dev)
        out[f"PyTorch, M = {m}"] = products
    return out


def run(dtypes: tuple[str, ...], repeats: int, rows: tuple[int, ...], torch_side: bool = True,
        layers: int = LAYERS) -> dict:
    """-> {dtype: {program: seconds}} (the reduction's under "reduction"); prints a table per dtype."""
    from decode_anatomy import best_of_rounds

    results = {}
    for dtype in dtypes:
        ws = weights(layers)
        n_bytes = sum(w.size for w in ws) * {"float32": 4, "bfloat16": 2}[dtype]
        fns = xla_programs(ws, dtype, rows)
        if torch_side:
            fns.update(torch_programs(ws, dtype, rows))
        times = best_of_rounds(fns, repeats)
        results[dtype] = times
        read = times["reduction"]
        print(f"\n{dtype}: {n_bytes / 2**20:.0f} MiB of weights; a jitted reduction reads them in {read * 1e3:.1f} ms "
              f"({n_bytes / read / 1e9:.1f} GB/s)")
        print("| program | ms | GB/s of weights | x the read time |\n| --- | ---: | ---: | ---: |")
        for name, t in times.items():
            if name != "reduction":
                print(f"| {name} | {t * 1e3:.1f} | {n_bytes / t / 1e9:.1f} | {t / read:.2f} |")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rows", default="1,2,4,8,16,64", help="comma-separated M (rows of the products)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--xla-flags", default="", help="';'-separated XLA_FLAGS values, each run in its own process")
    parser.add_argument("--no-torch", action="store_true", help="XLA rows only")
    args = parser.parse_args()
    rows = tuple(int(m) for m in args.rows.split(","))
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    run(tuple(args.dtypes.split(",")), args.repeats, rows, torch_side=not args.no_torch)
    for flags in filter(None, args.xla_flags.split(";")):
        sys.stdout.flush()
        subprocess.run([sys.executable, __file__, "--repeats", str(args.repeats), "--rows", args.rows,
                        "--dtypes", args.dtypes, "--no-torch"], env={**os.environ, "XLA_FLAGS": flags}, check=True)


if __name__ == "__main__":
    main()
