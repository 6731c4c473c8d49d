"""The small LLaVA forward's matrix products alone (forward.py's model: a CLIP ViT-B/16 tower over 4 x 197
tokens, a 12-layer 768-wide Llama over 4 x 228 tokens and its 32000-word head), XLA and PyTorch alternated in
one process: what bounds our forward pass apart from everything that is not a product.

    python benchmarks/forward_products.py [--dtypes bfloat16,float32] [--repeats 3] [--xla-flags=...]

Each product is [M, K] x [K, N] with M = batch x tokens, jitted once per shape (XLA) or `F.linear` on a
contiguous [N, K] weight (PyTorch), run as many times as the forward runs it.  XLA is timed twice: accumulating
in float32 (what our layers ask for: `preferred_element_type=float32`) and in the input dtype.  Prints GFLOP/s
per side; compare with forward.py's whole-forward rates from the same machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

BATCH = 4


def shapes(layers: int = 12, vocab: int = 32000) -> list[tuple[int, int, int, int]]:
    """(M, K, N, times run) of every product of one forward."""
    clip, llm = BATCH * 197, BATCH * 228
    return [(clip, 768, 768, 4 * layers), (clip, 768, 3072, layers), (clip, 3072, 768, layers),
            (llm, 768, 768, 4 * layers), (llm, 768, 2048, 2 * layers), (llm, 2048, 768, layers),
            (llm, 768, vocab, 1)]


def run(dtypes=("bfloat16", "float32"), repeats: int = 3, layers: int = 12, vocab: int = 32000) -> dict:
    import jax
    import jax.numpy as jnp
    import torch

    prods = shapes(layers, vocab)
    flops = sum(2 * m * k * n * c for m, k, n, c in prods)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((m, k)).astype(np.float32) for m, k, _, _ in prods]
    ws = [rng.standard_normal((k, n)).astype(np.float32) * 0.02 for _, k, n, _ in prods]
    results = {}
    for name in dtypes:
        jdt, tdt = jnp.dtype(name), getattr(torch, name)
        jx, jw = [jnp.asarray(x, jdt) for x in xs], [jnp.asarray(w, jdt) for w in ws]
        tx, tw = [torch.tensor(x, dtype=tdt) for x in xs], [torch.tensor(w.T.copy(), dtype=tdt) for w in ws]

        def xla(acc):
            f = jax.jit(lambda x, w: jnp.einsum("mk,kn->mn", x, w, preferred_element_type=acc).astype(jdt))
            for x, w in zip(jx, jw):
                f(x, w).block_until_ready()           # compile every shape before timing
            def go():
                for (_, _, _, c), x, w in zip(prods, jx, jw):
                    for _ in range(c):
                        f(x, w).block_until_ready()
            return go

        def pytorch():
            with torch.no_grad():
                for (_, _, _, c), x, w in zip(prods, tx, tw):
                    for _ in range(c):
                        torch.nn.functional.linear(x, w)

        sides = {"XLA, float32 accumulation": xla(jnp.float32)}
        if jdt != jnp.float32:                        # float32 inputs: the two accumulations are one program
            sides[f"XLA, {name} accumulation"] = xla(jdt)
        sides["PyTorch F.linear"] = pytorch
        best = dict.fromkeys(sides, float("inf"))
        for _ in range(repeats):                      # round-robin, best of `repeats`
            for side, fn in sides.items():
                t = time.perf_counter()
                fn()
                best[side] = min(best[side], time.perf_counter() - t)
        results[name] = {side: {"seconds": s, "gflops": flops / s / 1e9} for side, s in best.items()}
        torch_s = best["PyTorch F.linear"]
        for side, s in best.items():
            print(f"{name:9s} {side:28s} {s * 1e3:8.1f} ms  {flops / s / 1e9:6.1f} GFLOP/s  "
                  f"PyTorch / this {torch_s / s:5.2f}x", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--xla-flags", default=None, help="XLA_FLAGS for this process (before JAX starts)")
    args = parser.parse_args()
    if args.xla_flags is not None:
        os.environ["XLA_FLAGS"] = args.xla_flags
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    run(tuple(args.dtypes.split(",")), args.repeats)


if __name__ == "__main__":
    sys.exit(main())
