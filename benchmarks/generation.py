"""Greedy generation of 32 new tokens with the small LLaVA (issue 7, benchmark 2): ours vs transformers'
`generate`, batch 4, same random weights and prompt (1 + 196 image tokens + 31 text tokens).

    python benchmarks/generation.py [--dtypes float32,bfloat16] [--repeats 5] [--tiny]

EOS is never emitted (no EOS id), so both sides produce exactly 32 tokens.  Also: the time of one decode step
of ours ((generate - prefill) / 31) against the time to read every weight once at the memory bandwidth
measured in this run (a jitted reduction over a 1 GiB array), since single-token decoding is bandwidth-bound.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

import benchlib

NEW_TOKENS = 32


def bandwidth(n_bytes: int = 1 << 30, repeats: int = 5) -> float:
    """Bytes/s of a jitted sum over an n_bytes float32 array (reads it once), best of repeats."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones(n_bytes // 4, jnp.float32)
    f = jax.jit(jnp.sum)
    f(x).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        f(x).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return n_bytes / best


def run(dtypes=("float32", "bfloat16"), repeats: int = 5, tiny: bool = False) -> dict:
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    from vlmcls_jax.convert import load_hf
    from vlmcls_jax.inference.generate import generate

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        ref, cfg = benchlib.hf_llava(folder, tiny=tiny)
        ids, pixels = benchlib.inputs(cfg)
        mask = np.ones_like(ids)
        bytes_per_s = bandwidth(1 << 24 if tiny else 1 << 30)
        for dtype in dtypes:
            torch_dtype = getattr(torch, dtype)
            ref = ref.to(torch_dtype)
            t_ids, t_pixels = torch.tensor(ids), torch.tensor(pixels.transpose(0, 3, 1, 2)).to(torch_dtype)
            ours = load_hf(folder, dtype=jnp.dtype(dtype))
            weight_bytes = sum(x.nbytes for x in jax.tree.leaves(nnx.state(ours, nnx.Param)))
            j_pixels = jnp.asarray(pixels, dtype)

            def torch_generate():
                with torch.inference_mode():
                    out = ref.generate(input_ids=t_ids, pixel_values=t_pixels, attention_mask=torch.ones_like(t_ids),
                                       max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                                       eos_token_id=None, pad_token_id=0)
                assert out.shape[1] - ids.shape[1] == NEW_TOKENS

            def ours_generate(n=NEW_TOKENS):
                out = generate(ours, ids, mask, j_pixels, max_new_tokens=n, eos_token_id=[], pad_token_id=0)
                assert out.shape[1] == n

            times = benchlib.alternate({"transformers": torch_generate, "ours": ours_generate,
                                        "ours_prefill": lambda: ours_generate(1)}, repeats)
            step = (times["ours"] - times["ours_prefill"]) / (NEW_TOKENS - 1)
            read = weight_bytes / bytes_per_s
            results[dtype] = dict(times, ratio=times["transformers"] / times["ours"], decode_step=step,
                                  weight_read=read, bandwidth=bytes_per_s)
            r = results[dtype]
            print(f"{dtype:9s} transformers {len(ids) * NEW_TOKENS / r['transformers']:7.1f} new tokens/s  ours "
                  f"{len(ids) * NEW_TOKENS / r['ours']:7.1f}  speed-up {r['ratio']:.2f}x   decode step "
                  f"{step * 1e3:.1f} ms = {step / read:.2f}x the {read * 1e3:.1f} ms to read the "
                  f"{weight_bytes / 2 ** 20:.0f} MiB of weights at {bytes_per_s / 1e9:.1f} GB/s", flush=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="a tiny model (smoke test)")
    args = parser.parse_args()
    run(tuple(args.dtypes.split(",")), args.repeats, args.tiny)
