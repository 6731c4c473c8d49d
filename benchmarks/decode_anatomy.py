"""Where a decode step's time goes (issue 7, benchmark 2's missed target): the small LLaVA's language model,
batch 4, float32, one new token after a 228-token prompt.

    python benchmarks/decode_anatomy.py [--repeats 10] [--tiny]

Prints, best of `repeats`:
  products, XLA [in, out]   the step's matrix products alone (every layer's q/k/v/o, gate/up/down, the head),
                            jitted as one program over our kernels' [in, out] layout
  products, XLA [out, in]   the same products with torch's [out, in] layout (x @ W.T)
  products, PyTorch         the same products with `F.linear`
  decode step               our jitted decode step (`decode` on a prefilled cache + head + argmax)
  decode step, no head      the decoder part of it
each with the bytes of weights it reads per second.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import benchlib


def best(fn, repeats: int) -> float:
    fn()
    return min(benchlib.timed(fn) for _ in range(repeats))


def run(repeats: int = 10, tiny: bool = False) -> dict:
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    _, _, ours, *_ = next(benchlib.both_sides(("float32",), tiny))
    lm = ours.language_model
    cfg = lm.config
    B, D, F = 4, cfg.hidden_size, cfg.intermediate_size
    rng = np.random.default_rng(0)
    shapes = ([(D, D)] * 4 + [(D, F)] * 2 + [(F, D)]) * cfg.num_hidden_layers + [(D, cfg.vocab_size)]
    kernels = [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in shapes]
    weight_bytes = sum(k.nbytes for k in kernels)
    inputs = {n: jnp.asarray(rng.standard_normal((B, n)), jnp.float32) for n in (D, F)}
    products = jax.jit(lambda ks: sum((inputs[k.shape[0]] @ k).sum() for k in ks))
    transposed = [k.T.copy() for k in kernels]
    products_t = jax.jit(lambda ks: sum((inputs[k.shape[1]] @ k.T).sum() for k in ks))
    t_kernels = [torch.tensor(np.asarray(k)) for k in transposed]
    t_inputs = {n: torch.tensor(np.asarray(x)) for n, x in inputs.items()}

    def torch_products():
        with torch.inference_mode():
            return sum(torch.nn.functional.linear(t_inputs[k.shape[1]], k).sum() for k in t_kernels).item()

    graphdef, state = nnx.split(lm)
    prompt = jnp.asarray(rng.standard_normal((B, 228 if not tiny else 8, D)), jnp.float32)
    cache = jax.jit(lambda s: nnx.merge(graphdef, s).decode(
        inputs_embeds=prompt, cache=nnx.merge(graphdef, s).init_cache(B, prompt.shape[1] + 8)).cache)(state)
    token = jnp.zeros((B,), jnp.int32)

    def step(s, cache, head: bool):
        model = nnx.merge(graphdef, s)
        out = model.decode(token[:, None], attention_mask=jnp.ones((B, 1), jnp.int32), cache=cache)
        return jnp.argmax(model.logits(out.hidden[:, -1]), -1) if head else out.hidden.sum()

    with_head = jax.jit(lambda s, c: step(s, c, True))
    no_head = jax.jit(lambda s, c: step(s, c, False))
    times = {
        "products, XLA [in, out]": best(lambda: products(kernels).block_until_ready(), repeats),
        "products, XLA [out, in]": best(lambda: products_t(transposed).block_until_ready(), repeats),
        "products, PyTorch": best(torch_products, repeats),
        "decode step": best(lambda: with_head(state, cache).block_until_ready(), repeats),
        "decode step, no head": best(lambda: no_head(state, cache).block_until_ready(), repeats),
    }
    head_bytes = D * cfg.vocab_size * 4
    for name, seconds in times.items():
        read = weight_bytes - (head_bytes if name.endswith("no head") else 0)
        print(f"{name:26s} {seconds * 1e3:7.1f} ms   {read / seconds / 1e9:5.1f} GB/s of weights", flush=True)
    print(f"reference: a jitted reduction reads {benchlib.bandwidth(1 << 24 if tiny else 1 << 30) / 1e9:.1f} GB/s",
          flush=True)
    return times


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls (the best is reported)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model (the smoke test's setting)")
    args = parser.parse_args()
    run(args.repeats, args.tiny)
