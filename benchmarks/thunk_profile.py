"""Where XLA:CPU spends a program's time (issue 22, item 2: "show with a profile what limits it"): a per-op profile
of our forward pass, one decode step, or the class scoring of the 1000 ImageNet names, read from XLA:CPU's own
per-thunk trace events, on the small LLaVA of the other benchmarks.

    python benchmarks/thunk_profile.py [--dtypes bfloat16] [--repeats 3] [--tiny] [--decode | --scoring] [--top 25]

The program runs `repeats` times under `jax.profiler.trace` (a Perfetto trace); every event XLA:CPU's thunk
executor records names its HLO module and op.  Times are summed per (module, op kind, output shape) and divided
by the calls: thunk time, so with the two cores busy at once the column adds up to about twice the wall time.  The
output shapes come from the optimised HLO, which XLA writes only when told at start-up (`XLA_FLAGS`), so run as a
script each run gets them; imported into a process whose XLA has started, the shape column reads "?".
Op kinds: `ynn_fusion` / `dot` / `onednn...` are calls into a library (YNNPACK, oneDNN, Eigen: the matrix
products, and any elementwise work YNNPACK fused into them, such as a softmax); the rest are XLA's own loops
(`*_fusion`: elementwise work, copies, transposes, converts, reductions).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

LIBRARY_OPS = ("ynn_fusion", "dot", "onednn", "custom-call")


def op_shapes(hlo_dir: str | None) -> dict[str, list[dict]]:
    """{module name: [{op name: output shape} of each module of that name]} from XLA's dumped optimised HLO
    (empty without a dump; several programs may share a name, e.g. jit__lambda)."""
    modules = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(hlo_dir, "*.cpu_after_optimizations.txt"))) if hlo_dir else []:
        name = re.match(r"module_\d+\.(.+)\.cpu_after_optimizations\.txt$", os.path.basename(path)).group(1)
        with open(path) as f:
            found = re.findall(r"^\s*(?:ROOT )?%([\w.-]+) = (.+?) [\w-]+\(", f.read(), re.M)
        modules[name].append({op: re.sub(r"\{[^}]*\}", "", shape) for op, shape in found})
    return modules


def shapes_of(times: collections.Counter, modules: dict[str, list[dict]]) -> dict:
    """{(module, op): output shape} for the traced ops, each module name resolved to the dumped module of that name
    that holds the most of its traced ops."""
    shapes = {}
    for name in {module for module, _ in times}:
        ops = {op for module, op in times if module == name}
        best = max(modules.get(name, [{}]), key=lambda table: len(ops & table.keys()))
        shapes.update({(name, op): best[op] for op in ops if op in best})
    return shapes


def thunk_times(trace_dir: str, calls: int) -> collections.Counter:
    """{(module, op): microseconds per call} from the Perfetto trace jax.profiler wrote under trace_dir."""
    path = sorted(glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True))[-1]
    with gzip.open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    times = collections.Counter()
    for e in events:
        args = e.get("args") or {}
        if e.get("ph") == "X" and "hlo_module" in args and "hlo_op" in args:
            times[(args["hlo_module"], args["hlo_op"])] += e["dur"] / calls
    return times


def program(dtype: str, tiny: bool, decode: bool, scoring: bool):
    """One call of the program to profile (compiled and run once already)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    import benchlib

    _, _, ours, ids, pixels, *_ = next(benchlib.both_sides((dtype,), tiny))
    if decode:
        import decode_anatomy

        lm = ours.language_model   # one token after the prompt, 8 free cache slots, as decode_anatomy.py times it
        fn = decode_anatomy.decode_steps(lm, ids.shape[0], lm.config.hidden_size, ids.shape[1] + 8,
                                         np.random.default_rng(0))["decode step"]
    elif scoring:
        import class_scoring
        from vlmcls_jax.data.prompts import OPEN_QUESTION, SCORING_PREFIX, llava_prompt, tokenize_prompts
        from vlmcls_jax.eval.vlm_scoring import class_name_tokens
        from vlmcls_jax.inference import score_candidates

        with tempfile.TemporaryDirectory() as folder:
            tok = benchlib.llama2_tokenizer(folder)
        prompt = llava_prompt(OPEN_QUESTION, SCORING_PREFIX)
        names = class_scoring.class_names(20 if tiny else None)
        candidates = class_name_tokens(tok, prompt, names)
        batch = tokenize_prompts(tok, [prompt], ours.config.num_image_tokens)
        px = jnp.asarray(pixels[:1], dtype)
        fn = lambda: score_candidates(ours, batch["input_ids"], batch["attention_mask"], candidates, px)
    else:
        graphdef, state = nnx.split(ours)
        forward = jax.jit(lambda state, ids, px: nnx.merge(graphdef, state)(ids, pixel_values=px)[0])
        j_ids, j_px = jnp.asarray(ids, jnp.int32), jnp.asarray(pixels, dtype)
        fn = lambda: forward(state, j_ids, j_px).block_until_ready()
    fn()
    return fn


def run(dtypes=("bfloat16",), repeats: int = 3, tiny: bool = False, decode: bool = False, scoring: bool = False,
        top: int = 25, hlo_dir: str | None = None) -> dict:
    """-> {dtype: Counter{(module, op kind, shape): microseconds of thunk time per call}}; prints a table each."""
    import jax

    what = "one decode step" if decode else "class scoring of the names" if scoring else "the forward pass"
    results = {}
    for dtype in dtypes:
        fn = program(dtype, tiny, decode, scoring)
        with tempfile.TemporaryDirectory() as trace_dir:
            with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
                for _ in range(repeats):
                    fn()
            times = thunk_times(trace_dir, repeats)
        shapes = shapes_of(times, op_shapes(hlo_dir))
        grouped = collections.Counter()
        for (module, op), us in times.items():
            grouped[(module, re.sub(r"\.\d+$", "", op), shapes.get((module, op), "?"))] += us
        total = sum(grouped.values())
        library = sum(us for (_, kind, _), us in grouped.items() if kind.startswith(LIBRARY_OPS))
        results[dtype] = grouped
        print(f"\n{dtype}, {what}: {total / 1e3:.1f} ms of thunk time a call (both cores), "
              f"{100 * library / max(total, 1e-9):.0f}% of it in library calls ({', '.join(LIBRARY_OPS)})")
        print("| ms a call | share | module | op kind | output |\n| ---: | ---: | --- | --- | --- |")
        for (module, kind, shape), us in grouped.most_common(top):
            print(f"| {us / 1e3:.2f} | {100 * us / total:.1f}% | {module} | {kind} | {shape} |")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", default="bfloat16", help="comma-separated: float32, bfloat16")
    parser.add_argument("--repeats", type=int, default=3, help="profiled calls (times are per call)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model (the smoke test's setting)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--decode", action="store_true", help="one decode step on a prefilled cache, batch 4")
    which.add_argument("--scoring", action="store_true", help="score_candidates over ImageNet's 1000 names")
    parser.add_argument("--top", type=int, default=25, help="rows printed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as hlo_dir:
        # Before JAX starts (XLA reads XLA_FLAGS once): the optimised HLO of every program, for the shapes.
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={hlo_dir} --xla_dump_hlo_as_text"
        run(tuple(args.dtypes.split(",")), args.repeats, args.tiny, args.decode, args.scoring, args.top, hlo_dir)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
