"""One prepared run for a lent accelerator (issue 16, item 7): a 7B-shaped LLaVA-1.5 with random bfloat16 weights
built on the device, then measured, each figure beside the plan's prediction for the same program on the same
device (`vlmcls_jax.plan.compile_row`: XLA's memory analysis of the compiled program, the hand-counted FLOPs and
the chip table's peak and bandwidth):

    forward      the eval prefill (`inference.scoring._prefill`): batch x (576 image + 64 text) tokens
    generate     greedy decoding (`inference.generate.generate`), every row to max_new_tokens (no EOS id)
    scoring      1000 class-name candidates (`inference.score_candidates`), token-tree packed
    train step   projector fine-tuning (`train.trainer.step_function`: AdamW, f32 masters for the projector,
                 frozen weights in bfloat16, remat, scanned layers) on batch x 640 tokens

    python benchmarks/accelerator_check.py                 # on the GPU / TPU: about 5 minutes for 7B on an H100
    python benchmarks/accelerator_check.py --tiny          # a tiny model on the CPU: checks the script runs

Prints one table (measured vs predicted: seconds, tokens/s or images/s, MFU, peak memory) and writes it as JSON
with --out.  The chip's specs come from `plan.chips` by the device kind (H100, A100, TPU v4 / v5e / v5p / v6e);
on other devices (the CPU) the predictions and MFU are left out.  Budget: each program is run `--repeats` times
after one warm-up call; the whole script stops timing new programs after `--budget_s` seconds.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import benchlib  # noqa: F401  (puts the repository on sys.path)


def chip_for(device):
    from vlmcls_jax.plan.chips import CHIPS
    kind = device.device_kind.lower()
    table = {"h100": "h100", "a100": "a100", "v5 lite": "v5e", "v5e": "v5e", "v5p": "v5p", "v5": "v5p",
             "v6 lite": "v6e", "v6e": "v6e", "v4": "v4"}
    return next((CHIPS[name] for key, name in table.items() if key in kind), None)


def model_config(tiny: bool):
    import dataclasses

    import jax.numpy as jnp

    from vlmcls_jax.models.presets import preset
    cfg = preset("llava-hf/llava-1.5-7b-hf", jnp.bfloat16, jnp.bfloat16)
    if tiny:
        cfg = dataclasses.replace(
            cfg, vision_config=dataclasses.replace(cfg.vision_config, hidden_size=32, intermediate_size=64,
                                                   num_hidden_layers=2, num_attention_heads=4, image_size=56,
                                                   patch_size=14),
            text_config=dataclasses.replace(cfg.text_config, hidden_size=64, intermediate_size=128,
                                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                            vocab_size=32064))
    return dataclasses.replace(cfg, text_config=dataclasses.replace(cfg.text_config, scan_layers=True))


def peak_bytes(device) -> float | None:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return None if not stats else float(stats.get("peak_bytes_in_use", 0.0))


def timed(fn, repeats: int) -> float:
    fn()                                            # warm-up (compile)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run(tiny: bool = False, batch: int = 8, new_tokens: int = 32, repeats: int = 3, budget_s: float = 420.0,
        train_batch: int = 8, chip_name: str = "") -> list[dict]:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from vlmcls_jax import defaults
    from vlmcls_jax import sharding as shd
    from vlmcls_jax.inference import generate, score_candidates
    from vlmcls_jax.models import LlavaForConditionalGeneration
    from vlmcls_jax.plan import compile_row, flops, programs
    from vlmcls_jax.plan.chips import Target
    from vlmcls_jax.train import trainer
    from vlmcls_jax.train.optimizer import trainable_filter
    from vlmcls_jax.train.step import init_train_state, split_model

    start_all = time.perf_counter()
    device = jax.devices()[0]
    from vlmcls_jax.plan.chips import CHIPS
    chip = CHIPS[chip_name] if chip_name else chip_for(device)
    target = Target(f"1 x {device.device_kind}", chip, [device], device.platform) if chip else None
    mesh = shd.make_mesh((1, 1, 1), devices=[device])
    cfg = model_config(tiny)
    t0 = time.perf_counter()
    model = shd.create_sharded(lambda: LlavaForConditionalGeneration(cfg, rngs=nnx.Rngs(0)), mesh)
    jax.block_until_ready(nnx.state(model))
    built = time.perf_counter() - t0
    print(f"{device.device_kind}: built a {sum(x.size for x in jax.tree.leaves(nnx.state(model))) / 1e9:.2f}B-parameter "
          f"LLaVA (bfloat16) in {built:.0f} s; chip specs: {chip}", flush=True)

    rng = np.random.default_rng(0)
    image_tokens, s = cfg.num_image_tokens, cfg.vision_config.image_size
    T = programs.round_up(image_tokens + 48, 64)
    ids = rng.integers(3, 32000, (batch, T)).astype(np.int32)
    ids[:, 1:1 + image_tokens] = cfg.image_token_index
    mask = np.ones_like(ids)
    pixels = rng.standard_normal((batch, s, s, 3)).astype(np.float32)
    rows = []

    def record(name, seconds, work, unit, program=None, extra_flops=None):
        row = {"program": name, "measured_s": seconds, f"measured_{unit}": work / seconds,
               "peak_gib": (peak_bytes(device) or 0) / 2 ** 30 or None}
        if program is not None and target is not None:
            predicted = compile_row(program, target)
            total = extra_flops if extra_flops is not None else program.hand_flops
            row.update(predicted_s=predicted.seconds, **{f"predicted_{unit}": work / predicted.seconds},
                       predicted_peak_gib=predicted.peak_gib, fits=predicted.fits,
                       measured_mfu=total / seconds / (chip.peak_tflops * 1e12),
                       predicted_mfu=predicted.mfu)
        rows.append(row)
        print(json.dumps(row), flush=True)

    def over_budget():
        if time.perf_counter() - start_all > budget_s:
            print(f"budget of {budget_s:.0f} s reached: the remaining programs are not timed", flush=True)
            return True
        return False

    # forward: the eval prefill
    from vlmcls_jax.inference.scoring import _prefill
    graphdef, state = nnx.split(model)
    put = lambda *a: shd.put_batch(a, mesh)
    d_ids, d_mask, d_px = put(ids, mask, pixels)
    fwd = lambda: jax.block_until_ready(_prefill(graphdef, state, d_ids, d_mask, {"pixel_values": d_px}, num_slots=T))
    prefill_program = programs.Program(
        "forward", lambda: _prefill.lower(graphdef, state, d_ids, d_mask, {"pixel_values": d_px}, num_slots=T),
        flops.prefill_flops(flops.model_shape(model), batch, T), batch * T)
    record(f"forward (prefill {batch} x {T})", timed(fwd, repeats), batch * T, "tokens_per_s", prefill_program)

    if not over_budget():
        gen = lambda: generate(model, ids, mask, pixels, max_new_tokens=new_tokens, eos_token_id=-1, mesh=mesh)
        program = programs.generation_program("generate", cfg, model, mesh, batch, T, new_tokens, batch)
        record(f"generate ({batch} x {T} + {new_tokens})", timed(gen, repeats), batch * new_tokens,
               "tokens_per_s", program)

    if not over_budget():   # 1000 candidates with ImageNet-like lengths and shared first tokens
        lengths = rng.choice([1, 2, 2, 3, 3, 4, 5], 1000)
        firsts = rng.integers(3, 32000, 300)
        candidates = [[int(rng.choice(firsts))] + rng.integers(3, 32000, n - 1).tolist() for n in lengths]
        score = lambda: score_candidates(model, ids, mask, candidates, pixels, chunk_size=1024, mesh=mesh)
        progs = programs.scoring_programs("scoring", cfg, model, mesh, batch, T, 1000, 1024, batch)
        total_flops = sum(p.hand_flops * p.calls for p in progs)
        seconds = timed(score, repeats)
        row = {"program": f"class scoring ({batch} images x 1000 names)", "measured_s": seconds,
               "measured_images_per_s": batch / seconds, "peak_gib": (peak_bytes(device) or 0) / 2 ** 30 or None}
        if target is not None:   # predicted: the prefill and the score-rows calls, each compiled for this device
            predicted = sum(compile_row(p, target).seconds * p.calls for p in progs)
            row.update(predicted_s=predicted, predicted_images_per_s=batch / predicted,
                       measured_mfu=total_flops / seconds / (chip.peak_tflops * 1e12))
        rows.append(row)
        print(json.dumps(row), flush=True)

    if not over_budget():   # projector fine-tuning step, the trainer's own pieces
        del state
        config = defaults.train_config()
        config.model.remat, config.model.scan_layers = True, True
        config.learning_rates = {"projector": 2e-5}
        config.data.batch_size = train_batch
        tcfg = model_config(tiny)
        tcfg = trainer.model_config(config, presets_with(tcfg, jnp.bfloat16, jnp.float32))
        tmodel = shd.create_sharded(lambda: LlavaForConditionalGeneration(tcfg, rngs=nnx.Rngs(0)), mesh)
        del model
        groups = trainer.param_groups(config)
        tx = trainer.optimizer(config, split_model(tmodel, groups)[1], groups, total_steps=1000)
        shape = flops.model_shape(tmodel, trainable_filter(groups))
        graphdef, tstate, frozen = init_train_state(tmodel, groups, tx, trainer.frozen_dtype(config))
        del tmodel
        step = trainer.step_function(config, graphdef, tx, tstate, frozen, mesh)
        B = train_batch
        tb_ids = np.resize(ids, (B, T))
        batch_arrays = shd.global_batch({"input_ids": tb_ids, "attention_mask": np.ones_like(tb_ids),
                                         "loss_mask": (np.arange(T) >= T - 16)[None].repeat(B, 0).astype(np.int32),
                                         "pixel_values": np.resize(pixels, (B, s, s, 3))}, mesh)
        holder = {"state": tstate}
        program = programs.Program("train", lambda: step.lower(holder["state"], frozen, batch_arrays, None),
                                   flops.train_step_flops(shape, B, T), B * T)
        predicted = compile_row(program, target) if target is not None else None

        def one_step():
            holder["state"], metrics = step(holder["state"], frozen, batch_arrays, None)
            jax.block_until_ready(metrics["loss"])

        seconds = timed(one_step, repeats)
        row = {"program": f"projector train step ({B} x {T})", "measured_s": seconds,
               "measured_tokens_per_s": B * T / seconds, "peak_gib": (peak_bytes(device) or 0) / 2 ** 30 or None}
        if predicted is not None:
            row.update(predicted_s=predicted.seconds, predicted_tokens_per_s=B * T / predicted.seconds,
                       predicted_peak_gib=predicted.peak_gib, fits=predicted.fits, predicted_mfu=predicted.mfu,
                       measured_mfu=program.hand_flops / seconds / (chip.peak_tflops * 1e12))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"total {time.perf_counter() - start_all:.0f} s", flush=True)
    return rows


def presets_with(cfg, dtype, param_dtype):
    from vlmcls_jax.models.presets import with_dtype
    return with_dtype(cfg, dtype, param_dtype)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny model (CPU smoke run)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--train_batch", type=int, default=8)
    parser.add_argument("--new_tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget_s", type=float, default=420.0)
    parser.add_argument("--chip", default="", help="a key of plan.chips.CHIPS to predict for (default: by the "
                        "device kind); on the CPU only to exercise the prediction path")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    rows = run(args.tiny, args.batch, args.new_tokens, args.repeats, args.budget_s, args.train_batch, args.chip)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
