"""Compile time against depth, with and without scanned layers (issue 7, benchmark 5).

    python benchmarks/compile_time.py [--layers 4,32] [--tiny]

The program compiled: the trainer's train step (`train.step.train_step`: loss, gradients, global-norm clip,
AdamW, step guard) of a Llama decoder 768 wide with a 32000 vocabulary (the small LLaVA's LLM), bfloat16
compute on float32 parameters, batch 4 x 228 tokens, every parameter trained; also its forward pass alone.
Parameters are abstract (shapes only), so nothing is allocated and only tracing, lowering and XLA's
compilation are timed.  Unscanned: the layers are a Python list, unrolled into the program L times; scanned
(`LlamaConfig.scan_layers`): one layer body inside `jax.lax.scan`.  The persistent compilation cache is off.

Target (issue 7): with layers scanned, compiling a 32-layer model costs at most 1.5x a 4-layer one.
"""

from __future__ import annotations

import argparse
import time

import benchlib  # noqa: F401  (puts the repository on sys.path)


def compile_seconds(layers: int, scan: bool, program: str, tiny: bool = False) -> dict:
    """Seconds to build the (abstract) model, trace + lower `program` ("train_step" or "forward") for an
    L-layer decoder, and compile it with XLA: {"build", "lower", "compile", "total"}."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from vlmcls_jax.models import LlamaConfig, LlamaForCausalLM
    from vlmcls_jax.train.guard import GuardState
    from vlmcls_jax.train.objectives import make_objective
    from vlmcls_jax.train.optimizer import ParamGroup, make_optimizer
    from vlmcls_jax.train.step import TrainState, split_model, train_step

    width, vocab, heads, tokens = (64, 256, 4, 16) if tiny else (768, 32000, 12, 228)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=width, intermediate_size=width * 8 // 3, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, dtype=jnp.bfloat16,
                      param_dtype=jnp.float32, scan_layers=scan)
    start = time.perf_counter()
    abstract = nnx.eval_shape(lambda: LlamaForCausalLM(cfg, rngs=nnx.Rngs(0)))
    built = time.perf_counter()
    tokens_spec = jax.ShapeDtypeStruct((4, tokens), jnp.int32)
    if program == "forward":
        graphdef, state = nnx.split(abstract)
        lowered = jax.jit(lambda s, ids: nnx.merge(graphdef, s)(ids)[0]).lower(state, tokens_spec)
    else:
        groups = [ParamGroup("all", ("all",), 1e-5)]
        graphdef, params, rest = split_model(abstract, groups)
        tx = make_optimizer(params, groups, total_steps=1000)
        state = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params,
                           opt_state=jax.eval_shape(tx.init, params), guard=jax.eval_shape(GuardState.create))
        batch = {"input_ids": tokens_spec, "attention_mask": tokens_spec, "loss_mask": tokens_spec}
        step = lambda state, rest, batch: train_step(graphdef, make_objective("text_generation"), tx, state, rest,
                                                     batch, None)
        lowered = jax.jit(step, donate_argnums=(0,)).lower(state, rest, batch)
    lowered_at = time.perf_counter()
    lowered.compile()
    end = time.perf_counter()
    return {"build": built - start, "lower": lowered_at - built, "compile": end - lowered_at, "total": end - start}


def run(layers=(4, 32), tiny: bool = False, programs=("train_step", "forward")) -> dict:
    """Every compile with the persistent cache off (a cached program would time a read), and the cache as it was
    afterwards: the smoke test shares its process with tests that need the cache on."""
    from vlmcls_jax.plan import without_persistent_cache

    with without_persistent_cache():
        return _run(layers, tiny, programs)


def _run(layers, tiny: bool, programs) -> dict:
    results = {}
    for program in programs:
        for scan in (False, True):
            times = {n: compile_seconds(n, scan, program, tiny) for n in layers}
            first, last = times[layers[0]], times[layers[-1]]
            ratio = last["total"] / first["total"]
            results[(program, scan)] = dict(times, ratio=ratio, compile_ratio=last["compile"] / first["compile"])
            print(f"{program:10s} {'scanned' if scan else 'unrolled':8s} " + "  ".join(
                f"{n:2d} layers {t['total']:5.1f} s (build {t['build']:.1f}, trace+lower {t['lower']:.1f}, "
                f"XLA {t['compile']:.1f})" for n, t in times.items()) +
                f"   {layers[-1]} / {layers[0]} layers: {ratio:.2f}x in all, "
                f"{results[(program, scan)]['compile_ratio']:.2f}x XLA", flush=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", default="4,32", help="comma-separated depths; the ratio is last / first")
    parser.add_argument("--tiny", action="store_true", help="a narrow model (the smoke test's setting)")
    args = parser.parse_args()
    run(tuple(int(n) for n in args.layers.split(",")), args.tiny)
