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
Per-example outputs go to WORKDIR/outputs/*.jsonl; rerunning the job resumes them.  results.json records
`examples` (the denominator of every row), `skipped_images` (with `config.data.on_bad_image="skip"`; listed
in WORKDIR/skipped_images.jsonl) and `checkpoints` (what was loaded, with the hub commit it resolved to).
Several processes split the VLM's examples (`eval.shards`; each process scores all of CLIP's);
`config.mesh_shape` (e.g. (-1, 1, 1)) splits each batch over this process's own devices too.  Every row
records its model's label (`config.model.label` / `config.clip.label`, by default the checkpoint's last path
component), the table's first column; `python -m vlmcls_jax.eval.tables RUN ...` merges runs on several
datasets into one table.  Any VLM family runs by changing only `config.model` (`eval.vlm_inputs`).
"""

from __future__ import annotations

import json
import os
import re

import jax

from vlmcls_jax.config_check import check_job_config
from vlmcls_jax.data.image_check import screen_images, write_skipped
from vlmcls_jax.data.sources import ClassList, load_class_names, read_manifest
from vlmcls_jax.eval.clip_templates import TEMPLATE_SETS
from vlmcls_jax.eval.clip_zero_shot import evaluate_clip, text_classifier
from vlmcls_jax.eval.loading import eval_mesh, load_for_eval
from vlmcls_jax.eval.plots import label_set_size_curve
from vlmcls_jax.eval.tables import headline, write_atomic, write_tables
from vlmcls_jax.eval.vlm_generation import GenerationSettings, evaluate_generation
from vlmcls_jax.eval.vlm_scoring import ScoringSettings, evaluate_scoring

EXPERIMENTS = ("clip", "open", "closed", "scoring")


def run(config, workdir: str) -> dict:
    check_job_config(config, "eval")
    unknown = sorted(set(config.experiments) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"config.experiments: unknown {unknown}; known: {list(EXPERIMENTS)}")
    os.makedirs(os.path.join(workdir, "outputs"), exist_ok=True)
    data = config.data
    classes = ClassList(tuple(load_class_names(data.classes)))
    examples = read_manifest(data.manifest, data.image_root, classes, split=data.split or None)
    if config.get("max_examples"):
        examples = examples[: config.max_examples]
    # data.on_bad_image="skip": unreadable images are left out, listed and counted (denominators: the rest).
    screened = screen_images(examples, lambda e: e.image, data.get("on_bad_image", "error"))
    examples = screened.kept
    if screened.skipped:
        write_skipped(os.path.join(workdir, "skipped_images.jsonl"), screened)
        print(f"skipping {len(screened.skipped)} unreadable images (listed in {workdir}/skipped_images.jsonl)")
    checkpoints = {}
    names = list(classes.names)
    sizes = [None] + [int(k) for k in config.label_set_sizes]
    out = lambda name: os.path.join(workdir, "outputs", f"{name}.jsonl")
    rows: dict[str, dict] = {}
    # Data parallel over this process's devices (each process evaluates its own share of the examples).
    mesh = eval_mesh(config.mesh_shape)

    if "clip" in config.experiments:
        if config.clip.templates not in TEMPLATE_SETS:
            raise ValueError(f"config.clip.templates={config.clip.templates!r} is not one of {sorted(TEMPLATE_SETS)}")
        label = model_label(config.clip)
        loaded = load_for_eval(config.clip.checkpoint, mesh, config.clip.get("revision"))
        checkpoints["clip"] = loaded.provenance
        clip, preprocess = loaded.model, loaded.preprocess
        classifier = text_classifier(clip, loaded.tokenizer, names, TEMPLATE_SETS[config.clip.templates],
                                     cache_dir=os.path.join(workdir, "cache"), model_id=loaded.source, mesh=mesh)
        for k in sizes:
            rows[f"CLIP ({config.clip.templates})" + (f", {k} labels" if k else "")] = dict(evaluate_clip(
                clip, classifier, examples, names, preprocess=preprocess, label_set_size=k,
                label_set_seed=config.seed, mesh=mesh), model=label)

    if {"open", "closed", "scoring"} & set(config.experiments):
        label = model_label(config.model)
        loaded = load_for_eval(config.model.checkpoint, mesh, config.model.get("revision"),
                               config.model.get("prompt_format", "auto"),
                               scan_layers=config.model.get("scan_layers", False))
        checkpoints["model"] = dict(loaded.provenance, prompt_format=loaded.inputs.prompt_format)
        model, tokenizer, inputs = loaded.model, loaded.tokenizer, loaded.inputs  # inputs: the family's encoding
        g = config.generation
        if g.choice_order not in ("shuffled", "dataset"):
            raise ValueError(f"config.generation.choice_order={g.choice_order!r} is not 'shuffled' or 'dataset'")
        gen = dict(max_new_tokens=g.max_new_tokens or None, batch_size=g.batch_size, wording=g.wording,
                   chain_of_thought=g.chain_of_thought, pad_to_square=config.pad_to_square,
                   headline=g.get("headline", "substring"))
        # Prompt variants (Table 2 top) get their own rows and output files, so runs never mix them.
        variant = (f", wording {g.wording}" if g.wording != "default" else "") + \
                  (", chain of thought" if g.chain_of_thought else "")
        if "open" in config.experiments:
            rows["VLM open world" + variant] = dict(evaluate_generation(
                model, tokenizer, examples, names, out(slug("open" + variant)), GenerationSettings(**gen), inputs,
                mesh=mesh), model=label)
        for k in sizes if "closed" in config.experiments else ():
            order = g.choice_order == "dataset"
            settings = GenerationSettings(closed_world=True, choice_seed=None if order else config.seed,
                                          label_set_size=k, label_set_seed=config.seed, **gen)
            closed = variant + (", dataset order" if order else "")
            rows["VLM closed world" + closed + (f", {k} labels" if k else "")] = dict(evaluate_generation(
                model, tokenizer, examples, names, out(slug(f"closed_{k or 'all'}" + closed)), settings, inputs,
                mesh=mesh),
                model=label)
        for k in sizes if "scoring" in config.experiments else ():
            settings = ScoringSettings(prefix=inputs.scoring_prefix,
                                       batch_size=config.scoring.batch_size, chunk_size=config.scoring.chunk_size,
                                       cfg_alpha=config.scoring.cfg_alpha, wording=config.generation.wording,
                                       label_set_size=k, label_set_seed=config.seed,
                                       pad_to_square=config.pad_to_square)
            # Scores do not depend on k: every k reuses the first run's file (resume finds all examples).
            wording = f", wording {g.wording}" if g.wording != "default" else ""
            rows["VLM probabilistic" + wording + (f", {k} labels" if k else "")] = dict(evaluate_scoring(
                model, tokenizer, examples, names, out(slug("scoring" + wording)),
                settings, inputs, mesh=mesh), model=label)

    incomplete = {row: m["missing"] for row, m in rows.items() if m.get("missing")}
    if incomplete:
        raise RuntimeError(f"examples missing from the outputs after all processes finished: {incomplete}")
    results = {"dataset": data.name, "examples": len(examples), "skipped_images": len(screened.skipped),
               "rows": rows, "checkpoints": checkpoints}
    if jax.process_index() == 0:   # every process holds the same summary; one writes it
        write_results(results, workdir)
        label_set_size_curve({row: headline(m) for row, m in rows.items()},
                             os.path.join(workdir, "label_set_size.png"), f"{data.name}: accuracy vs label-set size")
    return results


def slug(text: str) -> str:
    """An output file name for a row: "closed_all, wording identify" -> "closed_all_wording_identify"."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def model_label(model_config) -> str:
    """A model's name in the tables: `label` when set, else the checkpoint's last path component."""
    return model_config.get("label") or os.path.basename(os.path.normpath(model_config.checkpoint))


def write_results(results: dict, workdir: str) -> None:
    """results.json, table.md and table.csv (rows: model / setting; column: the dataset; values: accuracy %)."""
    write_atomic(os.path.join(workdir, "results.json"), json.dumps(results, indent=2))
    write_tables([results], workdir)
