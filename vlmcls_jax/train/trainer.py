"""The training job: config -> mesh -> sharded model (+ LoRA) -> grain batches -> jitted step -> metrics and
checkpoints.  `python -m vlmcls_jax.main --config configs/NAME.py --workdir DIR` with `job = "train"`.

A restarted run with the same workdir resumes from its newest complete checkpoint (parameters, optimizer
state, step and data-iterator position), so its loss trajectory continues exactly.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
from flax import nnx
from transformers import AutoTokenizer

from vlmcls_jax import checkpoint, fingerprint
from vlmcls_jax import sharding as shd
from vlmcls_jax.config_check import check_job_config
from vlmcls_jax.convert import hf_config
from vlmcls_jax.convert.companions import require_tokenizer
from vlmcls_jax.convert.families import family_of
from vlmcls_jax.convert.hf import checkpoint_provenance, load_weights, resolve_checkpoint, safetensors_files, save_hf
from vlmcls_jax.data.finetune_data import caption_records, classification_records, concat_records, mix_records
from vlmcls_jax.data.image_check import screen_images, write_skipped
from vlmcls_jax.data.pipeline import EncodeRecord, make_train_iterator, read_records
from vlmcls_jax.data.preprocess import ClipPreprocessConfig
from vlmcls_jax.fileio import append_jsonl, write_atomic
from vlmcls_jax.train.guard import GuardConfig
from vlmcls_jax.train.lora import apply_lora
from vlmcls_jax.train.objectives import make_objective
from vlmcls_jax.train.optimizer import ParamGroup, check_groups, make_optimizer, warmup_cosine
from vlmcls_jax.train.preemption import Preemption
from vlmcls_jax.train.step import init_train_state, jit_train_step, split_model

BATCH_KEYS = ("input_ids", "attention_mask", "loss_mask", "pixel_values")


def load_model(config, mesh):
    """The model named by `config.model.checkpoint` (HF folder or hub id), loaded into its shardings."""
    source = resolve_checkpoint(config.model.checkpoint, config.model.revision)
    cfg = model_config(config, hf_config.load_config(source, jnp.dtype(config.model.dtype),
                                                     jnp.dtype(config.model.param_dtype)))
    model = load_weights(cfg, safetensors_files(source), shardings=shd.path_shardings(cfg, mesh))
    return model, source


def model_config(config, cfg):
    """The checkpoint's model config `cfg` as the train job builds it (refusals, `config.model.remat` and
    `scan_layers`): shared by `load_model` and `vlmcls_jax.plan`, which starts from a preset instead."""
    refusal = family_of(cfg).training_refusal(cfg)
    if refusal:
        raise ValueError(f"{config.model.checkpoint}: {refusal}")
    return hf_config.with_decoder_options(cfg, remat=config.model.remat, scan_layers=config.model.scan_layers)


def add_lora(model, config) -> None:
    """`config.lora` (rank > 0): adapters on the LLM's linear layers, in place."""
    if config.lora.rank > 0:
        apply_lora(model, rank=config.lora.rank, alpha=config.lora.alpha, dropout=config.lora.dropout,
                   seed=config.seed, **({"targets": config.lora.targets} if config.lora.targets else {}))


def dropout_key(config) -> jax.Array:
    """The key LoRA dropout's masks come from (the step's key is this folded with the micro-step), made by
    `config.lora.dropout_prng`: "rbg" (XLA's RngBitGenerator) or "threefry2x32" (JAX's default).  Threefry's
    masks are integer arithmetic the TPU compiler spends most of a LoRA step's compile on (LLaVA-1.5-7B for
    v5e-8: 235 s against 66 s with rbg, benchmarks/RESULTS.md section 8)."""
    try:
        return jax.random.key(config.seed, impl=config.lora.dropout_prng)
    except ValueError as e:   # jax's message lists the implementations; ours names the field
        raise ValueError(f"config.lora.dropout_prng: {e}") from None


def param_groups(config) -> list[ParamGroup]:
    return [ParamGroup(name, (name,), float(lr)) for name, lr in config.learning_rates.items()]


def optimizer(config, trainable, groups, total_steps: int):
    return make_optimizer(trainable, groups, total_steps=total_steps, warmup_ratio=config.optim.warmup_ratio,
                          warmup_steps=config.optim.warmup_steps, weight_decay=config.optim.weight_decay,
                          max_grad_norm=config.optim.max_grad_norm, accumulate_steps=config.optim.accumulate_steps)


def frozen_dtype(config):
    """`config.model.frozen_in_compute_dtype` (default on): frozen parameters stored in `model.dtype`, the f32
    masters kept only for what trains; None: every parameter in `param_dtype`."""
    return config.model.dtype if config.model.frozen_in_compute_dtype else None


BATCH_NDIMS = {"input_ids": 2, "attention_mask": 2, "loss_mask": 2, "pixel_values": 4}


def step_function(config, graphdef, tx, state, frozen, mesh):
    """The jitted train step the job runs (`train.step.jit_train_step` with the config's objective and guard);
    `vlmcls_jax.plan` lowers the same function on abstract state."""
    return jit_train_step(graphdef, make_objective(config.objective.to_dict()), tx, state, frozen, mesh,
                          BATCH_NDIMS, constrain_activations=config.activation_sharding,
                          guard=GuardConfig.from_config(config.guard))


def training_records(config) -> list[dict]:
    """The records a run trains on, from `config.data` (see `data.finetune_data` for the formats):

      train_json               LLaVA-format JSON/JSONL, as it is
      classification_manifest  JSONL {"image", "label", "split"} -> the study's classification records (rows of
                               `data.split`; `data.question`, `data.answer_template`)
      caption_json             JSONL {"image", "caption"} -> caption records (`data.caption_question`)
      mix_with                 LLaVA JSON mixed with all of the above by `mix_records(seed=data.mix_seed)`

    Any of the first three concatenate (in that order, ids kept unique); `mix_with` needs at least one of them
    (the study's Table 5 mixture: ImageNet classification records + llava_v1_5_mix665k.json)."""
    data = config.data
    sources = {}
    if data.train_json:
        sources["train_json"] = read_records(data.train_json)
    if data.classification_manifest:
        sources["classification_manifest"] = classification_records(
            data.classification_manifest, data.split, question=data.question, answer_template=data.answer_template)
    if data.caption_json:
        sources["caption_json"] = caption_records(data.caption_json, question=data.caption_question)
    if not sources:
        raise ValueError("config.data needs train_json, classification_manifest or caption_json")
    if data.mix_with:
        sources["mix_with"] = read_records(data.mix_with)
        mixture = mix_records(*sources.values(), seed=data.mix_seed)
    elif len(sources) == 1:
        return next(iter(sources.values()))
    else:
        mixture = concat_records(*sources.values())
    if jax.process_index() == 0:
        print(f"training records: {mixture.summary(list(sources))}"
              + (f", shuffled with seed {data.mix_seed}" if data.mix_with else ""))
    return mixture.records


class MetricsLog:
    """Process 0 appends one JSON object per logged step to WORKDIR/metrics.jsonl, writes the same scalars
    as TensorBoard events (WORKDIR/tensorboard, via tensorboardX: no TensorFlow needed) and prints a
    progress line with throughput, an MFU estimate (when `peak_tflops` per device is given) and ETA.

    start: the step a resumed run starts from.  Steps after it were logged by the interrupted run but not
    checkpointed, so the resumed run computes them again: they are dropped from metrics.jsonl (and purged
    from TensorBoard), and every step appears once."""

    def __init__(self, workdir: str, total_steps: int, flops_per_token: float, peak_tflops: float,
                 start: int = 0):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.total, self.flops_per_token, self.peak_tflops = total_steps, flops_per_token, peak_tflops
        self.writer = None
        if jax.process_index() == 0:
            from tensorboardX import SummaryWriter
            drop_after(self.path, start)
            self.writer = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=start + 1 if start else None)

    def write(self, step: int, metrics: dict, tokens: int, images: int, seconds: float, steps_done: int) -> None:
        record = {"step": step, **{k: float(v) for k, v in metrics.items()},
                  "tokens_per_s": tokens / seconds, "images_per_s": images / seconds}
        if self.peak_tflops:
            achieved = record["tokens_per_s"] * self.flops_per_token / jax.device_count()
            record["mfu"] = achieved / (self.peak_tflops * 1e12)
        if self.writer is None:
            return
        append_jsonl(self.path, [record])
        for key, value in record.items():
            if key != "step":
                self.writer.add_scalar(key, value, step)
        self.writer.flush()
        eta = seconds / max(steps_done, 1) * (self.total - step)
        mfu = f"  mfu {record['mfu']:.1%}" if "mfu" in record else ""
        print(f"step {step}/{self.total}  loss {record['loss']:.4f}  lr {record.get('learning_rate', 0):.2e}  "
              f"{record['tokens_per_s']:.0f} tok/s  {record['images_per_s']:.1f} img/s{mfu}  "
              f"eta {eta / 60:.1f} min", flush=True)

    def close(self):
        if self.writer is not None:
            self.writer.close()


def drop_after(path: str, step: int) -> None:
    """Rewrites the metrics log `path` (if any) without its records of steps after `step` (atomically)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    keep = [line for line in lines if json.loads(line)["step"] <= step]
    if len(keep) < len(lines):
        write_atomic(path, "".join(line + "\n" for line in keep))


def _stop_if_not_training(metrics: dict, step: int, limit: int, workdir: str) -> None:
    """Raises once `limit` steps in a row were skipped by the step guard (train/guard.py)."""
    bad = int(metrics["bad_in_a_row"])
    if limit and bad >= limit:
        raise RuntimeError(
            f"step {step}: the last {bad} steps were all skipped by the step guard (loss {float(metrics['loss'])}, "
            f"grad_norm {float(metrics['grad_norm'])}; {int(metrics['skipped_total'])} skipped in all), so the run "
            f"stops (config.guard.max_consecutive_bad = {limit}). The parameters and optimizer state are those of "
            f"the last applied step; checkpoints are in {os.path.join(workdir, 'checkpoints')}. Lower the learning "
            "rate, check the data, or raise the limit.")


def run(config, workdir: str) -> dict:
    """Trains as `config` says; returns the last logged metrics."""
    config = check_job_config(config, "train")   # every field, the declared default where config has none
    if not config.model.checkpoint:
        raise ValueError("config.model.checkpoint is empty: the train job starts from a Hugging Face checkpoint; "
                         "give its folder or hub id (--config.model.checkpoint=DIR)")
    dropout_key(config)   # a misspelt config.lora.dropout_prng is named now, not after the model has loaded
    mesh = shd.make_mesh(tuple(config.mesh_shape))
    shd.check_batch_sizes(mesh, {"config.data.batch_size": config.data.batch_size})
    workdir = fingerprint.claim(workdir, fingerprint.of(config, "train"), overwrite=config.overwrite)
    os.makedirs(workdir, exist_ok=True)
    preemption = Preemption()
    opened = []   # the run's TrainCheckpoints: on an error, in-flight writes finish and failed ones are removed
    try:
        with jax.set_mesh(mesh):
            return _run(config, workdir, mesh, preemption, opened)
    except BaseException:
        for ckpts in opened:
            ckpts.close_after_failure()
        raise
    finally:
        preemption.close()


def _run(config, workdir, mesh, preemption: Preemption, opened: list):
    model, source = load_model(config, mesh)
    if not config.tokenizer:
        require_tokenizer(source)
    tokenizer = AutoTokenizer.from_pretrained(config.tokenizer or source)
    if config.lora.rank > 0:
        add_lora(model, config)
        shd.shard_model(model, mesh)

    groups = param_groups(config)
    _, trainable, _ = split_model(model, groups)
    counts = check_groups(trainable, groups)

    records = training_records(config)
    # data.on_bad_image="skip": records whose image is unreadable are left out, listed and counted.
    screened = screen_images(records, lambda r: os.path.join(config.data.image_root, r["image"]) if "image" in r
                             else None, config.data.on_bad_image)
    records = screened.kept
    if jax.process_index() == 0:
        if screened.skipped:
            write_skipped(os.path.join(workdir, "skipped_images.jsonl"), screened)
            print(f"skipping {len(screened.skipped)} records with unreadable images "
                  f"(listed in {workdir}/skipped_images.jsonl)")
        write_atomic(os.path.join(workdir, "provenance.json"), json.dumps(
            {"model": checkpoint_provenance(config.model.checkpoint, config.model.revision, source),
             "records": len(records), "skipped_images": len(screened.skipped)}, indent=2))
    processes = jax.process_count()
    local_batch = config.data.batch_size // processes
    batch_devices = mesh.shape["data"] * mesh.shape["fsdp"]
    if config.data.batch_size % batch_devices or local_batch * processes != config.data.batch_size:
        raise ValueError(f"config.data.batch_size={config.data.batch_size} must divide evenly over the "
                         f"{batch_devices} devices of the batch axes (data x fsdp) and {processes} processes")
    total_steps = config.num_steps or max(1, config.num_epochs * len(records) // config.data.batch_size
                                          // config.optim.accumulate_steps)
    preprocess = ClipPreprocessConfig.from_pretrained_dir(source) if config.data.use_checkpoint_preprocessor \
        and os.path.exists(os.path.join(source, "preprocessor_config.json")) else ClipPreprocessConfig(
            size=model.config.vision_config.image_size,
            crop_size=(model.config.vision_config.image_size,) * 2)
    encode = EncodeRecord(tokenizer, model.config.num_image_tokens, preprocess, config.data.image_root,
                          config.data.template, config.data.max_length)
    iterator = make_train_iterator(records, encode, batch_size=local_batch, seed=config.seed,
                                   buckets=tuple(config.data.buckets), pad_id=tokenizer.pad_token_id,
                                   worker_count=config.data.worker_count)

    tx = optimizer(config, trainable, groups, total_steps)
    graphdef, state, frozen = init_train_state(model, groups, tx, frozen_dtype(config))
    del model, trainable
    # checkpoint_every = 0: no training checkpoints (short runs that only need the final export).
    ckpts = None if config.checkpoint_every <= 0 else checkpoint.TrainCheckpoints(
        os.path.join(workdir, "checkpoints"), every=config.checkpoint_every, keep=config.keep_checkpoints)
    opened += [ckpts] if ckpts is not None else []
    start = 0
    if ckpts is not None and ckpts.latest_step() is not None:
        state, start = ckpts.restore(state, iterator)
        print(f"resumed from step {start} in {workdir}/checkpoints")
    print(f"training {counts} parameters for {total_steps} steps on mesh {dict(mesh.shape)}")

    guard = GuardConfig.from_config(config.guard)
    step_fn = step_function(config, graphdef, tx, state, frozen, mesh)
    schedule = warmup_cosine(max(float(v) for v in config.learning_rates.values()), total_steps,
                             config.optim.warmup_ratio, config.optim.warmup_steps)
    base_rng = dropout_key(config)
    # Training FLOPs per token ~ 6 x parameters (forward 2N, backward 4N; frozen weights still backpropagate
    # activations, so all parameters count): the usual MFU estimate, image-token compute included as tokens.
    num_params = sum(int(x.size) for x in jax.tree.leaves((state.params, frozen)))
    log = MetricsLog(workdir, total_steps, 6.0 * num_params, config.peak_tflops, start)
    accumulate = config.optim.accumulate_steps
    metrics, tokens, images, t0, done, completed = {}, 0, 0, time.time(), 0, start
    for step in range(start, total_steps):
        for micro in range(accumulate):   # optax.MultiSteps applies the update on the last micro-batch
            local = next(iterator)
            if not local["loss_mask"].any(axis=1).all():
                raise ValueError(f"step {step}: a sample has an empty loss mask")  # also refused per sample upstream
            batch = shd.global_batch({k: local[k] for k in BATCH_KEYS}, mesh)
            rng = jax.random.fold_in(base_rng, step * accumulate + micro) if config.lora.dropout > 0 else None
            previous = metrics
            state, metrics = step_fn(state, frozen, batch, rng)
            if previous:   # one call behind, so the host never waits for the step it just dispatched
                _stop_if_not_training(previous, step, guard.max_consecutive_bad, workdir)
            tokens += int(local["attention_mask"].sum()) * processes
            images += int(local["has_image"].sum()) * processes
        done, completed = done + 1, step + 1
        if (step + 1) % config.log_every == 0 or step + 1 == total_steps:
            metrics = dict(jax.device_get(metrics), learning_rate=float(schedule(step)))
            log.write(step + 1, metrics, tokens, images, time.time() - t0, done)
            tokens, images, t0, done = 0, 0, time.time(), 0
        last = step + 1 == total_steps or step + 1 == config.stop_at_step
        preempted = preemption.requested(step + 1) and not last   # (called every step: a collective on pods)
        if ckpts is not None:
            ckpts.save(step + 1, state, iterator, force=last or preempted)
        if step + 1 == config.stop_at_step:
            print(f"stopping at step {step + 1} as config.stop_at_step asks (a checkpoint was written)")
            break
        if preempted:
            print(f"stopping at step {step + 1}: asked to terminate ({preemption.signal_name or 'SIGTERM'}); "
                  + ("a checkpoint was written, run again to resume" if ckpts is not None
                     else "no checkpoint (checkpoint_every = 0)"), flush=True)
            break
    if ckpts is not None:
        ckpts.wait()
        ckpts.close()
    if metrics:
        _stop_if_not_training(metrics, completed, guard.max_consecutive_bad, workdir)
    log.close()
    if hasattr(iterator, "close"):   # grain worker processes and their shared memory
        iterator.close()
    if config.export_hf and completed == total_steps:   # every process gathers; process 0 writes
        export = os.path.join(workdir, "hf_export")
        # The export loads like the source: its tokenizer, image processor and generation config come along.
        save_hf(nnx.merge(graphdef, state.params, frozen), export, source=source)
        if jax.process_index() == 0 and config.tokenizer:
            tokenizer.save_pretrained(export)   # the tokenizer this run trained with
    return {k: float(v) for k, v in metrics.items()}
