"""The evaluation job: `job = "eval"` configs run the study's classification experiments on one dataset and
write WORKDIR/results.json, a Markdown and a CSV table (rows: model / setting, one column per dataset) and,
with label-set sizes, WORKDIR/label_set_size.png (the study's Figure 2 for this dataset).

Experiments (config.experiments):
  clip         CLIP zero-shot with config.clip.templates ("single" or "imagenet80")
  open         VLM generation, open world                       (Table 1)
  closed       VLM generation, closed world, shuffled choices   (Table 1)
  scoring      VLM probabilistic inference, sum / avg / cfg     (Table 2 bottom)
With config.label_set_sizes = (100, 20, 5, 2), clip, closed and scoring also run on candidate sets of each
size (Figure 2 / Table 9), the same sets for every method.
Per-example outputs go to WORKDIR/outputs/*.jsonl; rerunning the job resumes them.  Several processes
split the examples (`eval.shards`); `config.mesh_shape` (e.g. (-1, 1, 1)) splits each VLM batch over this
process's devices too.
"""

from __future__ import annotations

import csv
import json
import os

from transformers import AutoTokenizer

from vlmcls_jax import sharding as shd
from vlmcls_jax.convert import load_hf
from vlmcls_jax.convert.hf import resolve_checkpoint
from vlmcls_jax.data.preprocess import ClipPreprocessConfig
from vlmcls_jax.data.sources import ClassList, load_class_names, read_manifest
from vlmcls_jax.eval.clip_templates import TEMPLATE_SETS
from vlmcls_jax.eval.clip_zero_shot import evaluate_clip, text_classifier
from vlmcls_jax.eval.plots import label_set_size_curve
from vlmcls_jax.eval.vlm_generation import GenerationSettings, evaluate_generation
from vlmcls_jax.eval.vlm_scoring import ScoringSettings, evaluate_scoring

EXPERIMENTS = ("clip", "open", "closed", "scoring")


def _preprocess(folder: str, image_size: int) -> ClipPreprocessConfig:
    if os.path.exists(os.path.join(folder, "preprocessor_config.json")):
        return ClipPreprocessConfig.from_pretrained_dir(folder)
    return ClipPreprocessConfig(size=image_size, crop_size=(image_size, image_size))


def run(config, workdir: str) -> dict:
    unknown = sorted(set(config.experiments) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"config.experiments: unknown {unknown}; known: {list(EXPERIMENTS)}")
    os.makedirs(os.path.join(workdir, "outputs"), exist_ok=True)
    data = config.data
    classes = ClassList(tuple(load_class_names(data.classes)))
    examples = read_manifest(data.manifest, data.image_root, classes, split=data.split or None)
    if config.get("max_examples"):
        examples = examples[: config.max_examples]
    names = list(classes.names)
    sizes = [None] + [int(k) for k in config.label_set_sizes]
    out = lambda name: os.path.join(workdir, "outputs", f"{name}.jsonl")
    rows: dict[str, dict] = {}

    if "clip" in config.experiments:
        source = resolve_checkpoint(config.clip.checkpoint)
        clip = load_hf(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
        classifier = text_classifier(clip, tokenizer, names, TEMPLATE_SETS[config.clip.templates],
                                     cache_dir=os.path.join(workdir, "cache"), model_id=source)
        preprocess = _preprocess(source, clip.config.vision_config.image_size)
        for k in sizes:
            rows[f"CLIP ({config.clip.templates})" + (f", {k} labels" if k else "")] = evaluate_clip(
                clip, classifier, examples, names, preprocess=preprocess, label_set_size=k,
                label_set_seed=config.seed)

    if {"open", "closed", "scoring"} & set(config.experiments):
        source = resolve_checkpoint(config.model.checkpoint)
        model = load_hf(source)
        mesh = shd.make_mesh(tuple(config.mesh_shape)) if config.mesh_shape else None
        if mesh is not None:   # data parallel over the mesh's batch axes; the model replicated on it
            shd.shard_model(model, mesh)
        tokenizer = AutoTokenizer.from_pretrained(source)
        preprocess = _preprocess(source, model.config.vision_config.image_size)
        gen = dict(max_new_tokens=config.generation.max_new_tokens, batch_size=config.generation.batch_size,
                   wording=config.generation.wording, chain_of_thought=config.generation.chain_of_thought)
        if "open" in config.experiments:
            rows["VLM open world"] = evaluate_generation(model, tokenizer, examples, names, out("open"),
                                                         GenerationSettings(**gen), preprocess, mesh=mesh)
        for k in sizes if "closed" in config.experiments else ():
            settings = GenerationSettings(closed_world=True, choice_seed=config.seed, label_set_size=k,
                                          label_set_seed=config.seed, **gen)
            rows["VLM closed world" + (f", {k} labels" if k else "")] = evaluate_generation(
                model, tokenizer, examples, names, out(f"closed_{k or 'all'}"), settings, preprocess, mesh=mesh)
        for k in sizes if "scoring" in config.experiments else ():
            settings = ScoringSettings(batch_size=config.scoring.batch_size, chunk_size=config.scoring.chunk_size,
                                       cfg_alpha=config.scoring.cfg_alpha,
                                       label_set_size=k, label_set_seed=config.seed)
            # Scores do not depend on k: every k reuses the first run's file (resume finds all examples).
            rows["VLM probabilistic" + (f", {k} labels" if k else "")] = evaluate_scoring(
                model, tokenizer, examples, names, out("scoring"), settings, preprocess, mesh=mesh)

    incomplete = {row: m["missing"] for row, m in rows.items() if m.get("missing")}
    if incomplete:
        raise RuntimeError(f"examples missing from the outputs after all processes finished: {incomplete}")
    results = {"dataset": data.name, "examples": len(examples), "rows": rows}
    write_results(results, workdir)
    label_set_size_curve({row: headline(m) for row, m in rows.items()},
                         os.path.join(workdir, "label_set_size.png"), f"{data.name}: accuracy vs label-set size")
    return results


def headline(metrics: dict) -> float:
    """The number a table shows for a row: the study's metric for that method."""
    for key in ("top1", "substring_accuracy", "sum_accuracy"):
        if key in metrics:
            return metrics[key]
    raise KeyError(f"no accuracy in {sorted(metrics)}")


def write_results(results: dict, workdir: str) -> None:
    """results.json, table.md and table.csv (rows: settings; column: the dataset; values: accuracy %)."""
    def atomic(name, text):
        path = os.path.join(workdir, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)

    atomic("results.json", json.dumps(results, indent=2))
    dataset = results["dataset"]
    lines = [f"| model / setting | {dataset} |", "| --- | --- |"]
    lines += [f"| {row} | {100 * headline(m):.1f} |" for row, m in results["rows"].items()]
    atomic("table.md", "\n".join(lines) + f"\n\n{results['examples']} examples; accuracy in %.\n")
    with open(os.path.join(workdir, "table.csv.tmp"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model / setting", dataset])
        writer.writerows([row, f"{100 * headline(m):.2f}"] for row, m in results["rows"].items())
    os.replace(os.path.join(workdir, "table.csv.tmp"), os.path.join(workdir, "table.csv"))
