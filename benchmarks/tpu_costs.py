"""Accelerator efficiency read from the TPU compiler's own cost analysis (issue 22, items 3 and 4), for
LLaVA-1.5-7B in bfloat16 on a v5e-8 (`v5e:2x4`), compiled here through libtpu (no TPU needed):

  decode step     one greedy decode step (the body of `inference.generate._generate`'s while loop: the model's
                  `decode` of one token per row against the KV cache, `logits`, argmax; the cache donated),
                  the eval job's batch 8, tensor parallel over 8 chips (`mesh_shape=(1, 1, 8)`, as the eval job
                  is planned in the README), at the open-world and closed-world (1000 names) prompt lengths.
                  XLA's bytes accessed per chip, and the HBM traffic read from the optimised HLO
                  (`plan.hbm_traffic`: XLA's count includes on-chip copies), against the bytes it must read: the
                  language model's weights (the embedding table only at the looked-up rows) and the whole KV
                  cache, per chip as placed.  Target <= 1.2x.
  class scoring   the job's calls (`inference.scoring._prefill` then `_score_rows` per chunk) for ImageNet's
                  1000 names tokenised in context by the real Llama-2 tokenizer (tests/data/tokenizers) after
                  the study's prompt, packed as the job packs them (`token_tree.pack`, chunk_size 1024).  XLA's
                  FLOPs over the calls against the ideal: the prompt once (vision tower, projector, decoder,
                  the head at its last position) plus each name's tokens but its last through the decoder
                  (attending to the prompt) and the head at each (hand count, `plan.flops` conventions).
                  Target <= 1.15x.  Then the roofline time to score 50,000 images (max of XLA's FLOPs / peak
                  and XLA's bytes accessed / bandwidth per call).  Target < 2 h.
  train step      the recipes' steps (configs/finetune_projector.py and finetune_lora.py: remat, scanned layers,
                  64 x 768 per call, FSDP over 8).  XLA counts a `while` (scan) body once, so the whole step's
                  FLOPs and bytes come from the step compiled unrolled with few vision-tower and decoder layers
                  (`train_figures`: a cost linear in both layer counts), once with remat (hardware FLOPs, what the
                  chip does) and once without (model FLOPs, comparable to the hand count).  Against the hand count
                  (`plan.flops.train_step_flops`: forward of everything, gradients with respect to activations
                  of every part after the first that trains, 2 x trained parameters per token for weight
                  gradients; for LoRA the usual "6N per trained token" plus the frozen weights' forward and
                  activation gradients).  Target within 10%.  The roofline MFU: hand FLOPs / (max(hardware
                  FLOPs / peak, bytes / bandwidth) x peak).  Target >= 55%.  The full-size scanned step is
                  compiled too, for its memory.

    python benchmarks/tpu_costs.py [--topology v5e:2x4] [--skip lora,full] [--json out.json]

Every figure is a real compile; nothing runs.  On this shared 2-core machine the decode and scoring parts took 25
minutes, the projector's train part 14 minutes (LoRA's not run yet: RESULTS.md section 9).  `--report FILE.json` prints a saved run's table
(benchmarks/tpu_costs_v5e8.json, tpu_costs_v5e8_train.json: the figures of RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

CHECKPOINT = "llava-hf/llava-1.5-7b-hf"
IMAGES = 50000                 # ImageNet's validation images
NEW_TOKENS = 64                # the study's max_new_tokens without chain of thought (main.py:146)
GIB = 2 ** 30
TARGETS = {"decode": 1.2, "scoring": 1.15, "train": 0.10, "mfu": 0.55, "hours": 2.0}


def costs(compiled) -> dict:
    """Per-chip figures of one compiled program: XLA's FLOPs and bytes accessed, memory_analysis's bytes."""
    cost = compiled.cost_analysis() or {}
    cost = cost[0] if isinstance(cost, list) else cost
    mem = compiled.memory_analysis()
    return {"flops": float(cost.get("flops", 0.0)), "bytes": float(cost.get("bytes accessed", 0.0)),
            "args": mem.argument_size_in_bytes, "temp": mem.temp_size_in_bytes,
            "out": max(0, mem.output_size_in_bytes - mem.alias_size_in_bytes)}


def timed_compile(label: str, lower):
    from vlmcls_jax.models.layers import compiling_for

    start = time.perf_counter()
    with compiling_for("tpu"):
        compiled = lower().compile()
    print(f"  compiled {label} in {time.perf_counter() - start:.0f} s", flush=True)
    return compiled


def shard_bytes(tree) -> float:
    """Bytes one chip holds of a tree of ShapeDtypeStructs carrying shardings (the largest shard)."""
    import jax

    total = 0
    for leaf in jax.tree.leaves(tree):
        shape = leaf.sharding.shard_shape(leaf.shape) if getattr(leaf, "sharding", None) is not None else leaf.shape
        total += math.prod(shape) * np.dtype(leaf.dtype).itemsize
    return float(total)


def eval_setup(target, mesh_shape=(1, 1, 8)):
    from vlmcls_jax import defaults
    from vlmcls_jax.plan import job_mesh
    from vlmcls_jax.plan.programs import eval_model

    c = defaults.eval_config("imagenet")
    c.model.checkpoint, c.mesh_shape = CHECKPOINT, mesh_shape
    mesh = job_mesh(c, target)
    cfg, model = eval_model(c, mesh)
    return c, mesh, cfg, model


# ------------------------------------------------------------------------------------------------ decoding


def decode_step_figures(target, cfg, model, mesh, batch: int, prompt: int) -> dict:
    """The decode step's bytes accessed per chip against the language model's weights + the KV cache."""
    import functools

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from vlmcls_jax.inference.scoring import _prefill
    from vlmcls_jax.plan.hbm_traffic import hbm_traffic
    from vlmcls_jax.plan.programs import batch_spec, image_specs

    graphdef, state = nnx.split(model)
    slots = prompt + NEW_TOKENS
    ids = batch_spec(mesh, (batch, prompt), jnp.int32)
    # The cache as the job's prefill leaves it (its layout and sharding are the compiler's choice there).
    prefill = timed_compile(f"prefill {batch} x {prompt} ({slots} slots)",
                            lambda: _prefill.lower(graphdef, state, ids, ids, image_specs(cfg, mesh, batch),
                                                   num_slots=slots))
    cache_info = _prefill.lower(graphdef, state, ids, ids, image_specs(cfg, mesh, batch), num_slots=slots).out_info[0]
    cache = jax.tree.map(lambda info, sh: jax.ShapeDtypeStruct(info.shape, info.dtype, sharding=sh),
                         cache_info, prefill.output_shardings[0])

    @functools.partial(jax.jit, static_argnames=("graphdef",), donate_argnames=("cache",))
    def decode_step(graphdef, state, tok, cache):
        """`_generate`'s loop body: one token per row through the decoder, the head, argmax."""
        model = nnx.merge(graphdef, state)
        step = model.decode(tok[:, None], attention_mask=jnp.ones((tok.shape[0], 1), jnp.int32), cache=cache)
        return jnp.argmax(model.logits(step.hidden[:, -1]), axis=-1).astype(jnp.int32), step.cache

    tok = batch_spec(mesh, (batch,), jnp.int32)
    compiled = timed_compile("decode step", lambda: decode_step.lower(graphdef, state, tok, cache))
    step, hbm = costs(compiled), hbm_traffic(compiled.as_text())
    # What a step must read, per chip as placed: every language-model weight but the embedding table (one row
    # per token), the output head, and the whole cache (keys and values of every slot, as the step reads them).
    lm = {path: v for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
          if str(path[0]) == "language_model" and "embed_tokens" not in [str(p) for p in path]}
    weights = shard_bytes([v.get_value() if hasattr(v, "get_value") else v.value for v in lm.values()])
    kv = shard_bytes([leaf for leaf in jax.tree.leaves(cache) if leaf.ndim >= 4])
    return {"batch": batch, "prompt": prompt, "slots": slots, "xla_bytes": step["bytes"], "weights": weights,
            "cache": kv, "ratio": step["bytes"] / (weights + kv), "args": step["args"], "temp": step["temp"],
            "xla_flops": step["flops"], "hbm_read": hbm.read, "hbm_written": hbm.written,
            "hbm_ratio": hbm.total / (weights + kv)}


# ------------------------------------------------------------------------------------------------ scoring


def imagenet_candidates(cfg):
    """(prompt ids padded as the job pads them, real prompt length, the 1000 names' ids after the prompt)."""
    import json as _json

    from benchlib import llama2_tokenizer
    from vlmcls_jax.data.prompts import OPEN_QUESTION, SCORING_PREFIX, llava_prompt
    from vlmcls_jax.data.study import class_list_path
    from vlmcls_jax.eval.vlm_scoring import class_name_tokens
    from vlmcls_jax.plan.programs import LENGTH_MULTIPLE, round_up

    with tempfile.TemporaryDirectory() as folder:
        tok = llama2_tokenizer(folder)
    with open(class_list_path("imagenet")) as f:
        names = _json.load(f)
    prompt = llava_prompt(OPEN_QUESTION, SCORING_PREFIX)
    real = len(tok(prompt)["input_ids"]) - 1 + cfg.num_image_tokens     # <image> expands to the image tokens
    return round_up(real, LENGTH_MULTIPLE), real, class_name_tokens(tok, prompt, names)


def scoring_figures(target, cfg, model, mesh, batch: int, chunk_size: int = 1024) -> dict:
    """XLA's FLOPs of the job's scoring calls for one batch of prompts against the ideal; roofline time."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from vlmcls_jax.inference import token_tree
    from vlmcls_jax.inference.scoring import _bucket, _prefill, _score_rows
    from vlmcls_jax.plan import flops
    from vlmcls_jax.plan.programs import batch_spec, image_specs

    padded, real, candidates = imagenet_candidates(cfg)
    lengths = np.array([len(c) for c in candidates])
    tree = token_tree.pack(candidates, width=max(16, _bucket(int(lengths.max()) - 1)))
    R, W = tree.tokens.shape
    calls = -(-R // max(1, chunk_size // W))
    per_call = -(-R // calls)
    Ks = [-(-int(((tree.target_row >= s) & (tree.target_row < s + per_call)).sum()) // 128) * 128
          for s in range(0, R, per_call)]

    graphdef, state = nnx.split(model)
    ids = batch_spec(mesh, (batch, padded), jnp.int32)
    imgs = image_specs(cfg, mesh, batch)
    prefill = timed_compile(f"scoring prefill {batch} x {padded}",
                            lambda: _prefill.lower(graphdef, state, ids, ids, imgs, num_slots=padded))
    cache_info = _prefill.lower(graphdef, state, ids, ids, imgs, num_slots=padded).out_info[0]
    cache = jax.tree.map(lambda info, sh: jax.ShapeDtypeStruct(info.shape, info.dtype, sharding=sh),
                         cache_info, prefill.output_shardings[0])
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    spec = lambda shp, dt: jax.ShapeDtypeStruct(shp, jnp.dtype(dt), sharding=rep)
    rows = {}
    for K in sorted(set(Ks)):      # one compile per distinct target count (the job compiles the same shapes)
        rows[K] = costs(timed_compile(f"score rows {per_call} x {W}, {K} targets", lambda: _score_rows.lower(
            graphdef, state, cache, spec((per_call, W), jnp.int32), spec((per_call, W), jnp.int32),
            spec((per_call, W, W), jnp.bool_), spec((K,), jnp.int32), spec((K,), jnp.int32),
            spec((K,), jnp.int32))))
    pre = costs(prefill)
    n = target.num_devices
    xla = pre["flops"] + sum(rows[K]["flops"] for K in Ks)          # per chip, one batch of prompts
    shape = flops.model_shape(model)
    fed = int((lengths - 1).sum())
    ideal = (flops.prefill_flops(shape, batch, real)
             + batch * fed * (2.0 * (shape.params["llm"] + shape.params["head"])
                              + 4.0 * real * shape.width * shape.layers))
    ran = flops.prefill_flops(shape, batch, padded) + sum(
        flops.score_rows_flops(shape, batch, per_call, W, padded, K) for K in Ks)
    chip = target.chip
    roof = lambda c: max(c["flops"] / (chip.peak_tflops * 1e12), c["bytes"] / (chip.hbm_gbps * 1e9))
    seconds = roof(pre) + sum(roof(rows[K]) for K in Ks)
    return {"batch": batch, "prompt": real, "prompt_padded": padded, "names": len(candidates), "fed_ideal": fed,
            "nodes": int(np.trace(tree.mask, axis1=1, axis2=2).sum()), "rows": R, "width": W, "calls": calls,
            "targets": Ks, "xla_flops": xla * n, "ideal_flops": ideal, "hand_flops_run": ran,
            "ratio": xla * n / ideal, "seconds_per_batch": seconds,
            "hours": seconds * math.ceil(IMAGES / batch) / 3600, "prefill": pre, "rows_costs": rows}


# ------------------------------------------------------------------------------------------------ training


def train_config(recipe: str):
    import importlib

    from vlmcls_jax.plan import job_config

    module = importlib.import_module(f"configs.{recipe}")
    return job_config(module.get_config("imagenet"))


def train_figures(target, recipe: str, full: bool) -> dict:
    """Whole-step FLOPs and bytes from small unrolled compiles (with and without remat): a step's cost is
    a + v x b + l x c in its v vision-tower and l decoder layers, so with C(v, l) compiled at (2, 1), (3, 1) and
    (2, 2):  C(V, L) = C(2, 1) + (V - 2) x (C(3, 1) - C(2, 1)) + (L - 1) x (C(2, 2) - C(2, 1))  (two vision
    layers at least: LLaVA reads the penultimate one)."""
    from vlmcls_jax.plan import job_mesh
    from vlmcls_jax.plan.programs import base_model_config, train_programs

    config = train_config(recipe)
    mesh = job_mesh(config, target)
    base = base_model_config(config.model.checkpoint, config.model.dtype, config.model.param_dtype)
    V, L = base.vision_config.num_hidden_layers, base.text_config.num_hidden_layers
    out = {"recipe": recipe, "batch": config.data.batch_size}
    for remat in (True, False):
        c = train_config(recipe)
        c.model.remat, c.model.scan_layers = remat, False
        C = {}
        for v, layers in ((2, 1), (3, 1), (2, 2)):
            (program,) = train_programs(c, mesh, decoder_layers=layers, vision_layers=v)
            C[v, layers] = costs(timed_compile(f"{recipe} step, {v} vision + {layers} decoder layers unrolled, "
                                               f"remat={remat}", program.lower))
        whole = {k: C[2, 1][k] + (V - 2) * (C[3, 1][k] - C[2, 1][k]) + (L - 1) * (C[2, 2][k] - C[2, 1][k])
                 for k in ("flops", "bytes")}
        out["remat" if remat else "no_remat"] = whole
    (program,) = train_programs(config, mesh)
    n = target.num_devices
    out["tokens"] = program.tokens
    out["hand_flops"] = program.hand_flops / n                        # per chip
    out["model_ratio"] = out["no_remat"]["flops"] / out["hand_flops"]
    chip = target.chip
    peak, bw = chip.peak_tflops * 1e12, chip.hbm_gbps * 1e9
    seconds = max(out["remat"]["flops"] / peak, out["remat"]["bytes"] / bw)
    out.update(seconds=seconds, mfu=out["hand_flops"] / (seconds * peak),
               bound="compute" if out["remat"]["flops"] / peak >= out["remat"]["bytes"] / bw else "memory")
    if full:
        out["full"] = costs(timed_compile(f"{recipe} step as the recipe runs it (scanned)", program.lower))
    return out


# ------------------------------------------------------------------------------------------------ report


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def report(r: dict, topology: str) -> str:
    lines = [f"TPU-compiler figures, LLaVA-1.5-7B bfloat16, {topology} (compiled through libtpu on this CPU)", "",
             "| figure | value | target | |", "| --- | ---: | --- | --- |"]
    for d in r["decode"]:
        need = f"{d['weights'] / GIB:.2f} + {d['cache'] / GIB:.2f} GiB per chip"
        lines.append(f"| decode step bytes accessed / (weights + KV cache), batch {d['batch']}, prompt {d['prompt']} "
                     f"+ {NEW_TOKENS} ({d['xla_bytes'] / GIB:.2f} GiB vs {need}; XLA counts on-chip copies too) | "
                     f"{d['ratio']:.2f}x | <= {TARGETS['decode']}x | {verdict(d['ratio'] <= TARGETS['decode'])} |")
        if "hbm_ratio" in d:
            lines.append(f"| decode step HBM traffic / (weights + KV cache), the same step (`plan.hbm_traffic`: "
                         f"{d['hbm_read'] / GIB:.2f} GiB read + {d['hbm_written'] / GIB:.2f} GiB written vs {need}) | "
                         f"{d['hbm_ratio']:.2f}x | <= {TARGETS['decode']}x | "
                         f"{verdict(d['hbm_ratio'] <= TARGETS['decode'])} |")
    s = r.get("scoring")
    if s:
        lines.append(f"| scoring FLOPs / ideal, 1000 ImageNet names, batch {s['batch']} (XLA {s['xla_flops']:.3e}, "
                     f"ideal {s['ideal_flops']:.3e}; our hand count of the calls {s['hand_flops_run']:.3e}) | "
                     f"{s['ratio']:.3f}x | <= {TARGETS['scoring']}x | {verdict(s['ratio'] <= TARGETS['scoring'])} |")
        lines.append(f"| time to score 1000 names x 50,000 images (roofline, {s['seconds_per_batch'] * 1e3:.1f} ms "
                     f"per batch of {s['batch']}) | {s['hours']:.2f} h | < {TARGETS['hours']} h | "
                     f"{verdict(s['hours'] < TARGETS['hours'])} |")
    for t in r["train"]:
        err = t["model_ratio"] - 1
        lines.append(f"| {t['recipe']} step: XLA model FLOPs (no remat) / hand count, per chip "
                     f"({t['no_remat']['flops']:.3e} / {t['hand_flops']:.3e}) | {t['model_ratio']:.3f}x | "
                     f"within {TARGETS['train']:.0%} | {verdict(abs(err) <= TARGETS['train'])} |")
        lines.append(f"| {t['recipe']} step: roofline MFU (hardware FLOPs with remat {t['remat']['flops']:.3e}, "
                     f"bytes {t['remat']['bytes'] / GIB:.1f} GiB per chip; {t['bound']}-bound, "
                     f"{t['seconds']:.2f} s per call of {t['batch']} rows) | {t['mfu']:.1%} | "
                     f">= {TARGETS['mfu']:.0%} | "
                     f"{verdict(t['mfu'] >= TARGETS['mfu'])} |")
        if "full" in t:
            f = t["full"]
            lines.append(f"| {t['recipe']} step as the recipe compiles it (scanned): per chip | "
                         f"{(f['args'] + f['temp'] + f['out']) / GIB:.1f} GiB | fits 16 GiB | "
                         f"{verdict((f['args'] + f['temp'] + f['out']) / GIB <= 16)} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", default="v5e:2x4")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: decode, scoring, "
                        "projector, lora, full (the full-size scanned train step's memory)")
    parser.add_argument("--scoring_batch", type=int, default=1, help="prompts per prefill (the job's default: 1)")
    parser.add_argument("--json", default="", help="also write every figure here (after each part)")
    parser.add_argument("--report", default="", help="only print the report of a --json file written before")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if args.report:
        with open(args.report) as f:
            r = json.load(f)
        print(report(r, r["topology"]))
        return
    from vlmcls_jax.plan import chips

    target = chips.tpu_target(args.topology)
    from vlmcls_jax.plan.programs import prompt_length

    r = {"topology": args.topology, "decode": [], "train": []}

    def done():   # the figures so far (a long run that fails later keeps them)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(r, f, indent=1, default=float)

    if not {"decode", "scoring"} <= skip:
        _, mesh, cfg, model = eval_setup(target)
        if "decode" not in skip:
            for dataset in (None, "imagenet"):      # open world; closed world with the 1000 names in the prompt
                r["decode"].append(decode_step_figures(target, cfg, model, mesh, 8, prompt_length(cfg, dataset)))
                done()
        if "scoring" not in skip:
            r["scoring"] = scoring_figures(target, cfg, model, mesh, args.scoring_batch)
            done()
    for recipe in ("finetune_projector", "finetune_lora"):
        if recipe.split("_")[1] not in skip:
            r["train"].append(train_figures(target, recipe, full="full" not in skip))
            done()
    print(report(r, args.topology))

if __name__ == "__main__":
    main()
