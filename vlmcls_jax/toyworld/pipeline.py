"""The toy-world job (`job = "toyworld"`): the whole study in miniature, offline, on a CPU.

  1. Render the world (`world.build`) and train its tokenizer on the world's text.
  2. Train a tiny CLIP contrastively on balanced image-caption pairs (`clip_training`).
  3. Build a tiny LLaVA on that vision tower (random decoder), align it on long-tailed captions (projector
     and decoder train: there is no pretrained LLM here), then instruction-tune it on long-tailed
     conversations, with the trainer job and configs full-size runs use.
  4. Evaluate as the study does (the `eval` job): CLIP vs the VLM in the open and closed world (Table 1),
     probabilistic inference (Table 2), label-set size (Figure 2); probe the VLM's features (Table 3 left,
     the `probe` job); relate per-class accuracy to class frequency in the VLM's training text (Figure 3).
  5. Fine-tune with balanced classification data (projector only, as the study's Table 3 right) and with
     classification data mixed into the instruction data (the study's Table 5 recipe); evaluate both again,
     and ask the ImageWikiQA analogue's knowledge questions (knowledge.py) before and after the mixture.
  6. Write WORKDIR/report.md with every table and plot, the seed and the time taken, and say which of the
     study's findings the miniature reproduces and which it does not, from the numbers as they came out.
With `config.seeds` > 1 the whole study runs once per seed and seeds.py summarises them (mean, 95% interval,
a verdict per finding that needs every seed).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time

from flax import nnx

from vlmcls_jax import defaults
from vlmcls_jax.analysis import probe_job
from vlmcls_jax.convert import load_hf, save_hf
from vlmcls_jax.data.prompts import CHAIN_OF_THOUGHT, QUESTION_WORDINGS, SCORING_PREFIX
from vlmcls_jax.demo import build_tokenizer
from vlmcls_jax.eval import imagewikiqa_job
from vlmcls_jax.eval import job as eval_job
from vlmcls_jax.models import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
from vlmcls_jax.toyworld import report, seeds, world
from vlmcls_jax.toyworld.clip_training import train_clip, vision_config
from vlmcls_jax.train import trainer


def _tokenizers(paths: dict, vocab_size: int):
    """(LLaVA's tokenizer: "<s> text"; CLIP's: "<s> text </s>") trained on the world's text and prompts."""
    from tokenizers import processors
    texts = world.corpus(paths) + list(QUESTION_WORDINGS.values()) + [SCORING_PREFIX, CHAIN_OF_THOUGHT,
                                                                      "USER: ASSISTANT: Choose one from"]
    # EOS must not be id 2: a CLIP text tower with EOS id 2 pools at the highest token id (transformers'
    # rule for the original CLIP vocabulary), which in a small vocabulary is some word mid-sentence.
    llava_tok = build_tokenizer(texts, vocab_size, split_punctuation=True,
                                specials=("<unk>", "<s>", "<pad>", "</s>", "<image>"))
    clip_tok = copy.deepcopy(llava_tok)
    clip_tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", llava_tok.bos_token_id), ("</s>", llava_tok.eos_token_id)])
    return llava_tok, clip_tok


def _build_llava(config, clip_dir: str, tokenizer, out_dir: str) -> None:
    """A LLaVA whose vision tower is the trained CLIP's (the projector and decoder random), saved as HF."""
    m = config.model
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=m.text_width, intermediate_size=4 * m.text_width,
                       num_hidden_layers=m.text_layers, num_attention_heads=m.heads, num_key_value_heads=m.heads,
                       max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    cfg = LlavaConfig(vision_config=vision_config(m, config.image_size), text_config=text,
                      image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    llava = LlavaForConditionalGeneration(cfg, rngs=nnx.Rngs(config.seed))
    nnx.update(llava.vision_tower, nnx.state(load_hf(clip_dir).vision_model))
    save_hf(llava, out_dir)
    tokenizer.save_pretrained(out_dir)
    shutil.copy(os.path.join(clip_dir, "preprocessor_config.json"), out_dir)


def _train(config, workdir: str, name: str, checkpoint: str, train_json: str, root: str, lrs: dict,
           epochs: float, mix_with: str = "") -> str:
    """One training stage through the trainer job; returns its exported HF checkpoint."""
    s = config.stages
    c = defaults.train_config()
    c.seed = config.seed
    c.model.checkpoint, c.model.dtype = checkpoint, "float32"
    c.learning_rates = lrs
    c.data.train_json, c.data.image_root, c.data.template = train_json, root, "llava_hf"
    if mix_with:
        c.data.mix_with = mix_with
    c.data.buckets, c.data.max_length, c.data.batch_size = (64, 96), 96, s.batch_size
    records = len(json.load(open(train_json))) + (len(json.load(open(mix_with))) if mix_with else 0)
    c.num_steps = max(1, int(round(epochs * records / s.batch_size)))
    c.optim.warmup_ratio = 0.05
    c.checkpoint_every, c.log_every = 0, s.log_every     # minutes-long stages: only the final export
    out = os.path.join(workdir, name)
    trainer.run(c, out)
    return os.path.join(out, "hf_export")


def _eval(config, workdir: str, name: str, vlm: str, clip: str | None, paths: dict, experiments) -> dict:
    c = defaults.eval_config("flowers")
    c.seed = config.seed
    c.experiments = tuple(experiments)
    c.model.checkpoint, c.model.label = vlm, name
    if clip:
        c.clip.checkpoint, c.clip.label, c.clip.templates = clip, "tiny CLIP", "study"
    c.data.name, c.data.manifest, c.data.classes = "toy world", paths["manifest"], paths["classes"]
    c.data.image_root, c.data.split = paths["root"], "test"
    c.label_set_sizes = tuple(config.label_set_sizes)
    c.generation.max_new_tokens, c.generation.batch_size = config.max_new_tokens, config.eval_batch_size
    c.scoring.batch_size, c.scoring.chunk_size = config.eval_batch_size, 64
    c.mesh_shape = (-1, 1, 1)
    return eval_job.run(c, os.path.join(workdir, "eval", name))


def _probe(config, workdir: str, vlm: str, paths: dict) -> dict:
    c = defaults.probe_config("flowers")
    c.seed = config.seed
    c.model.checkpoint = vlm
    c.data.name, c.data.manifest, c.data.classes = "toy world", paths["manifest"], paths["classes"]
    c.data.image_root, c.data.train_split, c.data.test_split = paths["root"], "probe_train", "test"
    c.features = ("llm:-1/last", "llm:-1/mean", "vision/mean")
    c.batch_size = config.eval_batch_size
    c.probe.epochs, c.probe.batch_size, c.probe.learning_rate = config.probe_epochs, 64, 3e-3
    c.mesh_shape = (-1, 1, 1)
    return probe_job.run(c, os.path.join(workdir, "probe"))


def _wikiqa(config, workdir: str, name: str, vlm: str, paths: dict, baseline: str = "") -> dict:
    """The ImageWikiQA analogue (knowledge.py) through the `imagewikiqa` job, as the study's protocol."""
    c = defaults.imagewikiqa_config()
    c.model.checkpoint, c.model.label, c.baseline = vlm, name, baseline
    c.data.questions, c.data.image_root, c.data.require_images = paths["wikiqa"], paths["root"], True
    c.generation.max_new_tokens, c.generation.batch_size = config.qa_max_new_tokens, config.eval_batch_size
    c.mesh_shape = (-1, 1, 1)
    return imagewikiqa_job.run(c, os.path.join(workdir, "wikiqa", name))


def run(config, workdir: str) -> dict:
    """`config.seeds` whole runs, seeds config.seed, config.seed + 1, ...: one seed writes its report to
    WORKDIR; several write theirs to WORKDIR/seed_K/ and the summary over seeds to WORKDIR/report.md."""
    if config.seeds < 1:
        raise ValueError(f"config.seeds must be >= 1, got {config.seeds}")
    if config.seeds == 1:
        return run_seed(config, workdir)
    summaries = []
    for k in range(config.seeds):
        one = copy.deepcopy(config)
        with one.unlocked():
            one.seed, one.seeds = config.seed + k, 1
        summaries.append(run_seed(one, os.path.join(workdir, f"seed_{one.seed}")))
    out = seeds.write(workdir, summaries, quick=config.get("setting") == "quick")
    print(f"\ntoy world over {config.seeds} seeds: {os.path.join(workdir, 'report.md')}")
    return out


def run_seed(config, workdir: str) -> dict:
    """One seed's whole study in miniature; its report in WORKDIR/report.md."""
    t0 = time.time()
    os.makedirs(workdir, exist_ok=True)
    timings = {}

    def stage(name, fn, *args, **kwargs):
        start = time.time()
        print(f"\n=== toy world: {name} ===", flush=True)
        out = fn(*args, **kwargs)
        timings[name] = time.time() - start
        return out

    sizes = world.WorldSizes(**config.world.to_dict())
    paths = stage("render the world", world.build, os.path.join(workdir, "world"), config.seed, sizes)
    llava_tok, clip_tok = _tokenizers(paths, config.vocab_size)
    clip_dir = os.path.join(workdir, "clip")
    clip_log = stage("train CLIP", train_clip, paths, clip_tok, config, clip_dir)
    init_dir = os.path.join(workdir, "llava_init")
    _build_llava(config, clip_dir, llava_tok, init_dir)
    s = config.stages
    aligned = stage("align (captions)", _train, config, workdir, "align", init_dir, paths["captions"],
                    paths["root"], {"projector": s.align_lr, "llm": s.align_lr}, s.align_epochs)
    vlm = stage("instruction tuning", _train, config, workdir, "instruct", aligned, paths["instructions"],
                paths["root"], {"projector": s.instruct_lr, "llm": s.instruct_lr}, s.instruct_epochs)
    experiments = ("clip", "open", "closed", "scoring")
    base = stage("evaluate (Table 1, 2, Figure 2)", _eval, config, workdir, "VLM", vlm, clip_dir, paths,
                 experiments)
    probes = stage("probe features (Table 3 left)", _probe, config, workdir, vlm, paths)
    qa_base = stage("knowledge questions (ImageWikiQA analogue)", _wikiqa, config, workdir, "VLM", vlm, paths)
    cls_proj = stage("fine-tune projector on classification data", _train, config, workdir, "ft_projector", vlm,
                     paths["classification"], paths["root"], {"projector": s.finetune_lr}, s.finetune_epochs)
    after_proj = stage("evaluate the projector-fine-tuned VLM", _eval, config, workdir, "VLM + classification "
                       "(projector)", cls_proj, None, paths, ("open", "scoring"))
    mixed = stage("fine-tune on classification + instruction mixture", _train, config, workdir, "ft_mixture", vlm,
                  paths["classification"], paths["root"], {"projector": s.finetune_lr, "llm": s.finetune_lr},
                  s.mixture_epochs, mix_with=paths["instructions"])
    after_mix = stage("evaluate the mixture-fine-tuned VLM", _eval, config, workdir, "VLM + classification "
                      "+ instructions", mixed, None, paths, ("open", "scoring"))
    qa_mix = stage("knowledge questions after the mixture", _wikiqa, config, workdir, "VLM + classification + "
                   "instructions", mixed, paths, baseline=os.path.join(workdir, "wikiqa", "VLM"))
    total = time.time() - t0
    summary = report.write(workdir, config, paths, clip_log, base, probes, [after_proj, after_mix],
                           [qa_base, qa_mix], timings, total)
    print(f"\ntoy world finished in {total / 60:.1f} min; report: {os.path.join(workdir, 'report.md')}")
    return summary
