"""Forward pass of the small LLaVA (issue 7, benchmark 1): ours (jitted Flax) vs transformers (PyTorch), on
the same random weights, batch 4, 196 image tokens + 32 text tokens, full logits on both sides.

    python benchmarks/forward.py [--dtypes float32,bfloat16] [--repeats 7] [--tiny]

The two sides alternate call by call; medians, their ratio, and achieved FLOP/s (XLA's count of the
program's floating-point operations, the same work on both sides) against the jitted matmul peak measured in
this run.  bfloat16: weights and activations in bfloat16 on both sides (ours accumulates matmuls in float32).
"""

from __future__ import annotations

import benchlib


def run(dtypes=("float32", "bfloat16"), repeats: int = 7, tiny: bool = False) -> dict:
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    results = {}
    for dtype, ref, ours, ids, pixels, t_ids, t_pixels in benchlib.both_sides(dtypes, tiny):
        graphdef, state = nnx.split(ours)
        forward = jax.jit(lambda state, ids, px: nnx.merge(graphdef, state)(ids, pixel_values=px)[0])
        j_ids, j_pixels = jnp.asarray(ids, jnp.int32), jnp.asarray(pixels, dtype)
        flops = forward.lower(state, j_ids, j_pixels).compile().cost_analysis()
        flops = (flops[0] if isinstance(flops, list) else flops)["flops"]

        def torch_forward():
            with torch.inference_mode():
                ref(input_ids=t_ids, pixel_values=t_pixels).logits.float().sum().item()

        times = benchlib.alternate({"transformers": torch_forward,
                                  "ours": lambda: forward(state, j_ids, j_pixels).block_until_ready()}, repeats)
        peak = benchlib.matmul_peak(dtype)
        results[dtype] = dict(times, ratio=times["transformers"] / times["ours"], flops=flops, peak=peak)
        r = results[dtype]
        print(f"{dtype:9s} transformers {r['transformers'] * 1e3:8.1f} ms  ours {r['ours'] * 1e3:8.1f} ms  "
              f"speed-up {r['ratio']:.2f}x   ours {flops / r['ours'] / 1e9:6.1f} GFLOP/s "
              f"({100 * flops / r['ours'] / peak:.0f}% of the {peak / 1e9:.0f} GFLOP/s matmul peak), "
              f"transformers {flops / r['transformers'] / 1e9:6.1f} GFLOP/s", flush=True)
    return results


if __name__ == "__main__":
    benchlib.cli(run, __doc__, repeats=7)
