"""The programs a job runs, built abstractly and lowered for a target: the same jitted functions the jobs call
(the train step from `train.trainer.step_function`; `inference.generate._generate`, `inference.scoring._prefill`
/ `_score_rows`, `analysis.features._features`), on `jax.ShapeDtypeStruct`s carrying the shardings the jobs
give their arrays (`sharding.abstract_placed`: parameters by the rules; batches split over data x fsdp).

Each `Program` says how to lower itself, its hand-counted FLOPs (`plan.flops`), the tokens it processes and
how many times a run calls it (for the wall-clock estimate).  Shapes the jobs only know from the data (prompt
lengths) are estimated from the dataset's class names (`PROMPT_TEXT`), rounded up as the jobs pad them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from vlmcls_jax import sharding as shd
from vlmcls_jax.convert import hf_config
from vlmcls_jax.convert.families import BLIP2, LLAVA_NEXT, family_of
from vlmcls_jax.convert.hf import model_class
from vlmcls_jax.models.presets import PRESETS, preset
from vlmcls_jax.plan import flops

# Examples per split of the study's datasets (its data/ manifests; ImageNet: the 50,000 validation images).
DATASET_SIZES = {"imagenet": {"valid": 50000, "train": 1281167}, "flowers": {"test": 6149, "train": 2040},
                 "cars": {"test": 8041, "train": 8144}, "caltech": {"test": 4331, "train": 4346}}
# (classes, mean characters per class name) of the study's class lists (../shared/paper_data/*_classes.json).
CLASS_NAMES = {"imagenet": (1000, 10.8), "flowers": (102, 11.8), "cars": (196, 26.8), "caltech": (100, 7.7)}
CHARS_PER_TOKEN = 3.0          # Llama's SentencePiece on English class names: about 3 characters a token
PROMPT_TEXT = 48               # tokens of the template, question and answer prefix around the image
LENGTH_MULTIPLE = 64           # the eval jobs left-pad prompts to a multiple of 64 (GenerationSettings)
TREE_WIDTH = 16                # token-tree row width for class names (inference.scoring)
FED_PER_CLASS = 1.9            # tree tokens fed per class name (ImageNet: 1866 for 1000 names, scoring.py)


@dataclasses.dataclass
class Program:
    name: str
    lower: Callable[[], jax.stages.Lowered]
    hand_flops: float              # per call, all devices together
    tokens: int                    # tokens per call (processed, or generated for decode)
    calls: float = 1.0             # calls per run (eval: over the dataset; train: per optimizer step)
    decode_steps: int = 0          # > 0: a generation program (prefill + this many decode steps)
    decode_flops: float = 0.0      # per decode step
    decode_cache_bytes: float = 0.0  # KV cache bytes a decode step reads (all devices)
    note: str = ""
    compile: Callable | None = None  # how to compile it, when not `lower().compile()` (a shared, cached compile)

    def compiled(self):
        return self.compile() if self.compile is not None else self.lower().compile()


def base_model_config(checkpoint: str, dtype, param_dtype):
    """The checkpoint's model config: its config.json for a local folder, else the preset of that hub id."""
    if os.path.isdir(checkpoint):
        return hf_config.load_config(checkpoint, jnp.dtype(dtype), jnp.dtype(param_dtype or dtype))
    if checkpoint in PRESETS:
        return preset(checkpoint, jnp.dtype(dtype), jnp.dtype(param_dtype or dtype))
    raise ValueError(f"config.model.checkpoint={checkpoint!r} is neither a local folder nor a preset the plan "
                     f"knows ({', '.join(sorted(PRESETS))}); pass a folder holding its config.json")


def round_up(n: float, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def batch_spec(mesh, shape, dtype) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype), sharding=shd.batch_sharding(mesh, len(shape)))


def image_specs(cfg, mesh, batch: int, instruction_tokens: int = 32) -> dict:
    """The image inputs each family's `decode` takes (`eval.vlm_inputs.VLMInputs.encode`), as specs."""
    s = cfg.vision_config.image_size
    family = family_of(cfg)
    if family is LLAVA_NEXT:
        tiles = max((h // s) * (w // s) for h, w in cfg.image_grid_pinpoints)
        return {"pixel_values": batch_spec(mesh, (batch, 1 + tiles, s, s, 3), jnp.float32),
                "image_index": batch_spec(mesh, (batch, round_up(cfg.max_num_image_tokens, LENGTH_MULTIPLE)),
                                          jnp.int32)}
    out = {"pixel_values": batch_spec(mesh, (batch, s, s, 3), jnp.float32)}
    if family is BLIP2 and cfg.qformer_config.instruction_input:
        out["qformer_input_ids"] = batch_spec(mesh, (batch, instruction_tokens), jnp.int32)
        out["qformer_attention_mask"] = batch_spec(mesh, (batch, instruction_tokens), jnp.int32)
    return out


def image_tokens(cfg) -> int:
    return cfg.max_num_image_tokens if family_of(cfg) is LLAVA_NEXT else cfg.num_image_tokens


def prompt_length(cfg, dataset: str | None = None, label_set: int | None = None, extra_text: int = 0) -> int:
    """Tokens of an eval prompt, padded as the jobs pad it: image tokens + template (+ the closed-world list of
    `label_set` class names, or all of the dataset's) + `extra_text`."""
    text = PROMPT_TEXT + extra_text
    if dataset is not None:
        count, chars = CLASS_NAMES[dataset]
        text += int((label_set or count) * (chars + 2) / CHARS_PER_TOKEN)
    return round_up(image_tokens(cfg) + text, LENGTH_MULTIPLE)


# ------------------------------------------------------------------------------------------------ training


def train_programs(config, mesh, seq_len: int | None = None, decoder_layers: int | None = None,
                   vision_layers: int | None = None) -> list[Program]:
    """The train job's step (`trainer.step_function`) on its abstract, sharded state.  decoder_layers /
    vision_layers: the model with that many decoder / vision-tower layers instead (benchmarks/tpu_costs.py counts
    one layer's cost as the difference of two such compiles: XLA counts a scanned layer once)."""
    from vlmcls_jax.train import trainer
    from vlmcls_jax.train.optimizer import trainable_filter
    from vlmcls_jax.train.step import abstract_train_state

    shd.check_batch_sizes(mesh, {"config.data.batch_size": config.data.batch_size})
    cfg = trainer.model_config(config, base_model_config(config.model.checkpoint, config.model.dtype,
                                                         config.model.param_dtype))
    if decoder_layers:
        cfg = hf_config.with_decoder_options(cfg, num_hidden_layers=decoder_layers)
    if vision_layers:
        cfg = dataclasses.replace(cfg, vision_config=dataclasses.replace(cfg.vision_config,
                                                                         num_hidden_layers=vision_layers))

    def build():
        model = model_class(cfg)(cfg, rngs=None)
        trainer.add_lora(model, config)
        return model

    model = shd.abstract_placed(nnx.eval_shape(build), mesh)
    groups = trainer.param_groups(config)
    graphdef, params, _ = trainer.split_model(model, groups)
    tx = trainer.optimizer(config, params, groups, total_steps=1000)
    graphdef, state, frozen = abstract_train_state(model, groups, tx, trainer.frozen_dtype(config))
    step = trainer.step_function(config, graphdef, tx, state, frozen, mesh)

    B = config.data.batch_size
    T = seq_len or train_seq_len(config, cfg)
    s = cfg.vision_config.image_size
    batch = {"input_ids": batch_spec(mesh, (B, T), jnp.int32), "attention_mask": batch_spec(mesh, (B, T), jnp.int32),
             "loss_mask": batch_spec(mesh, (B, T), jnp.int32),
             "pixel_values": batch_spec(mesh, (B, s, s, 3), jnp.float32)}
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    rng = None if config.lora.dropout <= 0 or config.lora.rank <= 0 else \
        jax.ShapeDtypeStruct((), jax.eval_shape(lambda: trainer.dropout_key(config)).dtype, sharding=replicated)
    shape = flops.model_shape(model, trainable_filter(groups))
    per_step = config.optim.accumulate_steps
    return [Program(f"train step (batch {B} x {T})", lambda: step.lower(state, frozen, batch, rng),
                    flops.train_step_flops(shape, B, T), B * T, calls=per_step,
                    note=f"{per_step} call(s) per optimizer step")]


def train_seq_len(config, cfg) -> int:
    """The bucket a batch pads to: the largest one for instruction data (train_json / mix_with), else the
    smallest that holds the image tokens and a classification or caption record's text (about 128 tokens)."""
    buckets = sorted(config.data.buckets)
    if config.data.train_json or config.data.mix_with:
        return buckets[-1]
    need = image_tokens(cfg) + 128
    return next((b for b in buckets if b >= need), buckets[-1])


# ------------------------------------------------------------------------------------------------ evaluation


def planned_checkpoint(config) -> str:
    """The checkpoint the plan builds: `config.model.checkpoint`; for the general job (Table 13: the released
    model and its fine-tuned export, one architecture) the first of `config.models`."""
    return config.models[0] if config.job == "general" else config.model.checkpoint


def eval_model(config, mesh):
    """The eval / probe / ImageWikiQA / general jobs' model as `eval.loading.load_for_eval` builds it, abstract."""
    m = config.model
    cfg = hf_config.with_decoder_options(base_model_config(planned_checkpoint(config), m.dtype, m.param_dtype),
                                         scan_layers=m.scan_layers)
    return cfg, shd.abstract_placed(nnx.eval_shape(lambda: model_class(cfg)(cfg, rngs=None)), mesh)


def generation_program(name, cfg, model, mesh, batch: int, length: int, new_tokens: int, images: float) -> Program:
    from vlmcls_jax.inference.generate import _generate

    graphdef, state = nnx.split(model)
    text = getattr(cfg, "text_config", cfg)
    eos = text.eos_token_id
    eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (int(eos),))
    pad = text.pad_token_id if text.pad_token_id is not None else (eos_ids[0] if eos_ids else 0)
    ids = batch_spec(mesh, (batch, length), jnp.int32)
    imgs = image_specs(cfg, mesh, batch)
    shape = flops.model_shape(model)
    context = length + new_tokens // 2
    head_dim = text.hidden_size // text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", text.num_attention_heads)
    cache = 2 * text.num_hidden_layers * batch * (length + new_tokens) * kv_heads * head_dim * jnp.dtype(text.dtype).itemsize
    return Program(f"{name}: generate (batch {batch} x {length} + {new_tokens} new)",
                   lambda: _generate.lower(graphdef, state, ids, ids, imgs, max_new_tokens=new_tokens,
                                           eos_ids=eos_ids, pad_id=int(pad)),
                   flops.prefill_flops(shape, batch, length) + (new_tokens - 1) * flops.decode_token_flops(
                       shape, batch, context), batch * new_tokens, calls=math.ceil(images / batch),
                   decode_steps=new_tokens - 1, decode_flops=flops.decode_token_flops(shape, batch, context),
                   decode_cache_bytes=cache, note="decode loop counted once by XLA; every row runs to max_new_tokens")


def scoring_programs(name, cfg, model, mesh, batch: int, length: int, classes: int, chunk_size: int,
                     images: float) -> list[Program]:
    from vlmcls_jax.inference.scoring import _prefill, _score_rows

    graphdef, state = nnx.split(model)
    ids = batch_spec(mesh, (batch, length), jnp.int32)
    imgs = image_specs(cfg, mesh, batch)
    shape = flops.model_shape(model)
    rows_total = math.ceil(classes * FED_PER_CLASS / TREE_WIDTH)
    calls = math.ceil(rows_total / max(1, chunk_size // TREE_WIDTH))
    rows = math.ceil(rows_total / calls)
    targets = round_up(min(rows * TREE_WIDTH, classes * FED_PER_CLASS / calls), 128)
    W = TREE_WIDTH

    lower_prefill = lambda: _prefill.lower(graphdef, state, ids, ids, imgs, num_slots=length)
    compile_prefill = functools.cache(lambda: lower_prefill().compile())   # the cache's sharding: the prefill's

    def lower_rows():
        cache_spec = jax.tree.map(lambda info, sh: jax.ShapeDtypeStruct(info.shape, info.dtype, sharding=sh),
                                  lower_prefill().out_info[0], compile_prefill().output_shardings[0])
        rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        spec = lambda shp, dt: jax.ShapeDtypeStruct(shp, jnp.dtype(dt), sharding=rep)
        return _score_rows.lower(graphdef, state, cache_spec, spec((rows, W), jnp.int32), spec((rows, W), jnp.int32),
                                 spec((rows, W, W), jnp.bool_), spec((targets,), jnp.int32),
                                 spec((targets,), jnp.int32), spec((targets,), jnp.int32))

    n = math.ceil(images / batch)
    return [Program(f"{name}: prefill (batch {batch} x {length})",
                    lower_prefill, flops.prefill_flops(shape, batch, length), batch * length, calls=n,
                    compile=compile_prefill),
            Program(f"{name}: score rows ({rows} x {W} tree tokens, {calls} call(s) per batch)", lower_rows,
                    flops.score_rows_flops(shape, batch, rows, W, length, targets), batch * rows * W,
                    calls=n * calls)]


def eval_programs(config, mesh) -> list[Program]:
    """The eval job's VLM programs for config.experiments (CLIP's are not planned: a 0.4B model)."""
    from vlmcls_jax.eval.job import EXPERIMENTS, batch_fields

    unknown = sorted(set(config.experiments) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"config.experiments: unknown {unknown}; known: {list(EXPERIMENTS)}")
    shd.check_batch_sizes(mesh, batch_fields(config))
    cfg, model = eval_model(config, mesh)
    dataset = config.data.name
    from vlmcls_jax.defaults import TEST_SPLIT
    sizes = DATASET_SIZES.get(dataset, {})    # the job's split; "test" is ImageNet's validation set
    images = sizes.get(config.data.split) or sizes.get(TEST_SPLIT.get(dataset, "test"), 0)
    if config.max_examples:
        images = min(images, config.max_examples)
    g = config.generation
    cot = 16 if g.chain_of_thought else 0
    from vlmcls_jax.eval.vlm_generation import study_max_new_tokens
    new_tokens = g.max_new_tokens or study_max_new_tokens(g.chain_of_thought)   # 0: the study's 64 (CoT: 512)
    out = []
    sizes = [None] + [int(k) for k in config.label_set_sizes]
    if "open" in config.experiments:
        out.append(generation_program("open world", cfg, model, mesh, g.batch_size, prompt_length(cfg, extra_text=cot),
                                      new_tokens, images))
    for k in sizes if "closed" in config.experiments else ():
        out.append(generation_program(f"closed world{f', {k} labels' if k else ''}", cfg, model, mesh, g.batch_size,
                                      prompt_length(cfg, dataset, k, extra_text=cot), new_tokens, images))
    if "scoring" in config.experiments:   # scores do not depend on the label-set size: one run serves all
        sc = config.scoring   # subset "study": the first subset_size images of the study's shuffle (eval.job)
        scored = min(images, sc.subset_size) if sc.subset == "study" else images
        out += scoring_programs("scoring", cfg, model, mesh, sc.batch_size, prompt_length(cfg, extra_text=8),
                                CLASS_NAMES[dataset][0], sc.chunk_size, scored)
    return out


def probe_programs(config, mesh) -> list[Program]:
    """The probe job's feature extraction (`analysis.features._features`) over both splits."""
    from vlmcls_jax.analysis.features import _features

    shd.check_batch_sizes(mesh, {"config.batch_size": config.batch_size})
    cfg, model = eval_model(config, mesh)
    graphdef, state = nnx.split(model)
    B, T = config.batch_size, prompt_length(cfg)
    ids = batch_spec(mesh, (B, T), jnp.int32)
    imgs = image_specs(cfg, mesh, B)
    sizes = DATASET_SIZES.get(config.data.name, {})
    images = sum(sizes.get(s, 0) for s in (config.data.train_split, config.data.test_split))
    features = tuple(config.features)
    return [Program(f"features (batch {B} x {T})",
                    lambda: _features.lower(graphdef, state, ids, ids, imgs, features=features),
                    flops.prefill_flops(flops.model_shape(model), B, T), B * T, calls=math.ceil(images / B))]


IMAGEWIKIQA_QUESTIONS = 2000
IMAGEWIKIQA_TEXT = 160         # tokens of a question with its four options (mean of the study's 2000, rounded up)


def imagewikiqa_programs(config, mesh) -> list[Program]:
    shd.check_batch_sizes(mesh, {"config.generation.batch_size": config.generation.batch_size})
    cfg, model = eval_model(config, mesh)
    g = config.generation
    return [generation_program("ImageWikiQA", cfg, model, mesh, g.batch_size,
                               prompt_length(cfg, extra_text=IMAGEWIKIQA_TEXT), g.max_new_tokens,
                               IMAGEWIKIQA_QUESTIONS)]


# Table 13's benchmarks (eval.general_job): questions (POPE: per split) and text tokens of a prompt beside the
# image and template: the question with LLaVA's answer-format line ("Answer the question using a single word or
# phrase."), TextVQA's also with its reference OCR tokens (llava_textvqa_val_v051_ocr.jsonl), MM-Vet's bare.
GENERAL_QUESTIONS = {"textvqa": 5000, "pope": 3000, "mmvet": 218}
GENERAL_TEXT = {"textvqa": 64, "pope": 24, "mmvet": 48}


def general_programs(config, mesh) -> list[Program]:
    """The general job's generation, one program per benchmark (TextVQA, POPE's splits together, MM-Vet), for
    the first of its models; a run calls it once per model."""
    from vlmcls_jax.eval.general_job import MAX_NEW_TOKENS

    unknown = sorted(set(config.benchmarks) - set(GENERAL_QUESTIONS))
    if unknown:
        raise ValueError(f"config.benchmarks: unknown {unknown}; known: {list(GENERAL_QUESTIONS)}")
    shd.check_batch_sizes(mesh, {"config.batch_size": config.batch_size})
    cfg, model = eval_model(config, mesh)
    out = []
    for bench in config.benchmarks:
        splits = len(config.pope.splits) if bench == "pope" else 1   # max_examples: the first N of each split
        questions = splits * min(GENERAL_QUESTIONS[bench], config.max_examples or GENERAL_QUESTIONS[bench])
        out.append(generation_program(bench, cfg, model, mesh, config.batch_size,
                                      prompt_length(cfg, extra_text=GENERAL_TEXT[bench]), MAX_NEW_TOKENS[bench],
                                      questions * len(config.models)))
    return out


def job_programs(config, mesh, seq_len: int | None = None) -> list[Program]:
    job = config.job
    if job == "train":
        return train_programs(config, mesh, seq_len)
    table = {"eval": eval_programs, "probe": probe_programs, "imagewikiqa": imagewikiqa_programs,
             "general": general_programs}
    if job not in table:
        raise ValueError(f"config.job={job!r}: the plan knows {', '.join(['train', *table])}")
    return table[job](config, mesh)
