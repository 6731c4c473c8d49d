"""Forward pass of the small LLaVA (issue 7, benchmark 1): ours (jitted Flax) vs transformers (PyTorch), on
the same random weights, batch 4, 196 image tokens + 32 text tokens, full logits on both sides.

    python benchmarks/forward.py [--dtypes float32,bfloat16] [--repeats 7] [--tiny]

The two sides alternate call by call; medians, their ratio, and achieved FLOP/s (XLA's count of the
program's floating-point operations, the same work on both sides) against the jitted matmul peak measured in
this run.  bfloat16: weights and activations in bfloat16 on both sides (ours accumulates matmuls in float32).
"""

from __future__ import annotations

import argparse
import tempfile

import benchlib


def run(dtypes=("float32", "bfloat16"), repeats: int = 7, tiny: bool = False) -> dict:
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    from vlmcls_jax.convert import load_hf

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        ref, cfg = benchlib.hf_llava(folder, tiny=tiny)
        ids, pixels = benchlib.inputs(cfg)
        for dtype in dtypes:
            torch_dtype = getattr(torch, dtype)
            ref = ref.to(torch_dtype)
            t_ids, t_pixels = torch.tensor(ids), torch.tensor(pixels.transpose(0, 3, 1, 2)).to(torch_dtype)
            ours = load_hf(folder, dtype=jnp.dtype(dtype))
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tiny", action="store_true", help="a tiny model (smoke test)")
    args = parser.parse_args()
    run(tuple(args.dtypes.split(",")), args.repeats, args.tiny)
