"""Where a decode step's time goes (issue 7, benchmark 2's missed target): the small LLaVA's language model,
batch 4, float32, one new token after a 228-token prompt.

    python benchmarks/decode_anatomy.py [--repeats 10] [--tiny]

Prints, best of `repeats` rounds (every program once per round, in turn, the bandwidth reference too):
  products, XLA [in, out]   the step's matrix products alone (every layer's q/k/v/o, gate/up/down, the head),
                            jitted as one program over our kernels' [in, out] layout
  products, XLA [out, in]   the same products with torch's [out, in] layout (x @ W.T)
  products, PyTorch         the same products with `F.linear`
  decode step               our jitted decode step (`decode` on a prefilled cache + head + argmax), the cache
                            donated, the model prepared as `generate` prepares it
  decode step, no head      the decoder part of it
  ..., scanned layers       the same with the decoder layers stacked (`scan_layers=True`)
each with the bytes of weights (and, for the steps, the KV cache of 236 slots) it reads per second, and for the
steps the ratio to the time a jitted reduction takes to read those bytes (issue 22's target: <= 1.5x).
"""

from __future__ import annotations

import argparse
import importlib

import numpy as np

import benchlib


def best_of_rounds(fns: dict, repeats: int) -> dict:
    """Warms every function up, then `repeats` rounds of one call each, in turn; -> the best seconds of each.
    Round-robin, so that every figure (and the bandwidth reference) sees the same moments of a shared machine."""
    for fn in fns.values():
        fn()
    times = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name] = min(times[name], benchlib.timed(fn))
    return times


def run(repeats: int = 10, tiny: bool = False) -> dict:
    import jax
    import jax.numpy as jnp
    import torch

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

    cache_len = (228 if not tiny else 8) + 8
    K = getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)
    cache_bytes = 2 * cfg.num_hidden_layers * B * K * cache_len * cfg.head_size * 4   # keys + values, all slots
    ref_bytes = 1 << 24 if tiny else 1 << 30
    ref = jnp.ones(ref_bytes // 4, jnp.float32)
    reduce = jax.jit(jnp.sum)
    fns = {
        "products, XLA [in, out]": lambda: products(kernels).block_until_ready(),
        "products, XLA [out, in]": lambda: products_t(transposed).block_until_ready(),
        "products, PyTorch": torch_products,
    }
    for name, model in (("", lm), (", scanned layers", scanned(lm))):
        for label, fn in decode_steps(model, B, D, cache_len, rng).items():
            fns[label + name] = fn
    fns["bandwidth reference"] = lambda: reduce(ref).block_until_ready()
    times = best_of_rounds(fns, repeats)
    bw = ref_bytes / times.pop("bandwidth reference")
    head_bytes = D * cfg.vocab_size * 4
    for name, seconds in times.items():
        step = name.startswith("decode step")
        read = weight_bytes - (head_bytes if "no head" in name else 0) + (cache_bytes if step else 0)
        ratio = f"   {seconds / (read / bw):4.2f}x the time to read them" if step else ""
        print(f"{name:42s} {seconds * 1e3:7.1f} ms   {read / seconds / 1e9:5.1f} GB/s of weights"
              f"{' + KV cache' if step else ''}{ratio}", flush=True)
    print(f"reference: a jitted reduction reads {bw / 1e9:.1f} GB/s; weights {weight_bytes / 2**20:.0f} MiB, "
          f"KV cache {cache_bytes / 2**20:.1f} MiB", flush=True)
    return times


def scanned(lm):
    """A copy of the language model with stacked, scanned decoder layers (`scan_layers=True`)."""
    import dataclasses

    from flax import nnx

    from vlmcls_jax.models.scan import stack_layers

    lm = nnx.clone(lm)
    lm.model.layers = stack_layers(list(lm.model.layers))
    lm.config = lm.model.config = dataclasses.replace(lm.config, scan_layers=True)
    return lm


def decode_steps(lm, B: int, D: int, cache_len: int, rng) -> dict:
    """Functions running one decode step on a prefilled cache, as `generate`'s loop runs it: the model
    prepared once as generation prepares it (`unrolled_for_decoding`, where it exists), the cache donated."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    gen = importlib.import_module("vlmcls_jax.inference.generate")   # (the package exports the function)

    prepare = getattr(gen, "unrolled_for_decoding", lambda m: m)     # (absent before issue 22's change)
    graphdef, state = nnx.split(prepare(nnx.clone(lm)))               # once, as generate does before its loop
    prompt = jnp.asarray(rng.standard_normal((B, cache_len - 8, D)), jnp.float32)
    prefill = jax.jit(lambda s: nnx.merge(graphdef, s).decode(
        inputs_embeds=prompt, cache=nnx.merge(graphdef, s).init_cache(B, cache_len)).cache)
    token = jnp.zeros((B,), jnp.int32)

    def step(s, cache, head: bool):
        model = nnx.merge(graphdef, s)
        out = model.decode(token[:, None], attention_mask=jnp.ones((B, 1), jnp.int32), cache=cache)
        if head:
            return jnp.argmax(model.logits(out.hidden[:, -1]), -1), out.cache
        return out.hidden.sum(), out.cache

    fns = {}
    for label, head in (("decode step", True), ("decode step, no head", False)):
        fn = jax.jit(lambda s, c, head=head: step(s, c, head), donate_argnums=1)
        holder = [prefill(state)]

        def call(fn=fn, holder=holder):
            out, holder[0] = fn(state, holder[0])
            out.block_until_ready()

        fns[label] = call
    return fns


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls (the best is reported)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model (the smoke test's setting)")
    args = parser.parse_args()
    run(args.repeats, args.tiny)
