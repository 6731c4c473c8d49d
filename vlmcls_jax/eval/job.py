"""The evaluation job: `job = "eval"` configs run the study's classification experiments on one dataset and
write WORKDIR/results.json, a Markdown and a CSV table (rows: model / setting, one column per dataset) and,
with label-set sizes, WORKDIR/label_set_size.png (the study's Figure 2 for this dataset).  A rerun with
fewer (or other) experiments adds its rows to the earlier ones (`merge_earlier`).

Experiments (config.experiments):
  clip         CLIP zero-shot with config.clip.templates ("single" or "imagenet80")
  open         VLM generation, open world                       (Table 1); with config.synonyms (a file of
               WordNet synonyms per class, `eval.synonyms`) also counted with synonyms (Table 8)
  closed       VLM generation, closed world, shuffled choices   (Table 1)
  scoring      VLM probabilistic inference, sum / avg / cfg     (Table 2 bottom)
With config.label_set_sizes = (100, 20, 5, 2), clip, closed and scoring also run on candidate sets of each
size (Figure 2 / Table 9), the same sets for every method.  config.sampling = "study" (default) draws the
closed-world choices and the candidate sets exactly as the study's main.py does and evaluates in its
example order (`eval.candidates`); "hashed" draws them per example.  config.scoring.subset = "study"
(default) scores the first scoring.subset_size (1000) examples of the study's seeded shuffle, as its
inference_analysis/main.py; "all" scores every example.  CLIP rows' headline is the study's substring rule
on the predicted name (`substring_accuracy`), index top-1 beside it; CLIP's per-example predictions go to
WORKDIR/outputs/CLIP_*.jsonl.
Per-example outputs go to WORKDIR/outputs/*.jsonl; rerunning the job resumes them.  results.json records
`examples` (the denominator of every row), `skipped_images` (with `config.data.on_bad_image="skip"`; listed
in WORKDIR/skipped_images.jsonl) and `checkpoints` (what was loaded, with the hub commit it resolved to).
Several processes split the VLM's examples (`eval.shards`; each process scores all of CLIP's);
`config.mesh_shape` (e.g. (-1, 1, 1)) splits each batch over this process's own devices too.  Every row
records its model's label (`config.model.label` / `config.clip.label`, by default the checkpoint's last path
component), the table's first column; the tables show the paper's number beside ours (`config.paper_numbers`);
`python -m vlmcls_jax.eval.tables RUN ...` merges runs on several datasets into one table.  Any VLM family runs
by changing only `config.model` (`eval.vlm_inputs`),
proprietary ones through their APIs too ("api:openai/gpt-4-turbo-2024-04-09": `eval.api_model`; results.json
gains `api_usage`).
"""

from __future__ import annotations

import json
import os
import re

import jax

from vlmcls_jax import fingerprint
from vlmcls_jax.config_check import check_job_config
from vlmcls_jax.data.image_check import screen_images, write_skipped
from vlmcls_jax.data.sources import ClassList, load_class_names, read_manifest
from vlmcls_jax.eval.api_model import api_arguments, api_usage
from vlmcls_jax.eval.candidates import SAMPLERS, study_order, study_plan
from vlmcls_jax.eval.clip_templates import TEMPLATE_SETS
from vlmcls_jax.eval.clip_zero_shot import evaluate_clip, text_classifier
from vlmcls_jax.eval.loading import eval_mesh, load_for_eval, model_dtypes
from vlmcls_jax.eval.plots import label_set_size_curve
from vlmcls_jax.eval.synonyms import load_synonyms, row_name, synonym_accuracy
from vlmcls_jax.eval.tables import headline, write_atomic, write_tables
from vlmcls_jax.eval.vlm_generation import GenerationSettings, evaluate_generation
from vlmcls_jax.eval.vlm_scoring import ScoringSettings, evaluate_scoring

EXPERIMENTS = ("clip", "open", "closed", "scoring")


def run(config, workdir: str) -> dict:
    check_job_config(config, "eval")
    unknown = sorted(set(config.experiments) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"config.experiments: unknown {unknown}; known: {list(EXPERIMENTS)}")
    data = config.data
    classes = ClassList(tuple(load_class_names(data.classes)))
    split_rows = read_manifest(data.manifest, data.image_root, classes, split=data.split or None)
    workdir = fingerprint.claim(workdir, fingerprint.of(config, "eval"), overwrite=config.get("overwrite", False))
    os.makedirs(os.path.join(workdir, "outputs"), exist_ok=True)
    sampling = config.get("sampling", "study")
    if sampling not in SAMPLERS:
        raise ValueError(f"config.sampling={sampling!r} is not one of {SAMPLERS}")
    # "study": the study's example order (its seed's shuffle); max_examples takes the first N of that order
    examples = study_order(split_rows, config.seed) if sampling == "study" else split_rows
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
    # The study sampler's candidate lists, drawn over the whole split as the study did (`candidates`);
    # k=None is the closed world over every distinct name.
    plans: dict = {}

    def study_choices(k):
        if sampling != "study":
            return None
        if k not in plans:
            plans[k] = study_plan(split_rows, names, k or len(set(names)), config.seed)[1]
        return plans[k]
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
            row = f"CLIP ({config.clip.templates})" + (f", {k} labels" if k else "")
            rows[row] = dict(evaluate_clip(
                clip, classifier, examples, names, preprocess=preprocess, label_set_size=k,
                label_set_seed=config.seed, choices=study_choices(k) if k else None, out_path=out(slug(row)),
                mesh=mesh), model=label)

    if {"open", "closed", "scoring"} & set(config.experiments):
        label = model_label(config.model)
        loaded = load_for_eval(config.model.checkpoint, mesh, config.model.get("revision"),
                               config.model.get("prompt_format", "auto"),
                               scan_layers=config.model.get("scan_layers", False), **model_dtypes(config.model),
                               api=api_arguments(config.model, workdir))
        checkpoints["model"] = dict(loaded.provenance, prompt_format=loaded.inputs.prompt_format)
        model, tokenizer, inputs = loaded.model, loaded.tokenizer, loaded.inputs  # inputs: the family's encoding
        if "scoring" in config.experiments:
            inputs.scoring_prefix   # an API model (no token probabilities) stops here, before any request
        g = config.generation
        if g.choice_order not in ("shuffled", "dataset"):
            raise ValueError(f"config.generation.choice_order={g.choice_order!r} is not 'shuffled' or 'dataset'")
        gen = dict(max_new_tokens=g.max_new_tokens or None, batch_size=g.batch_size, wording=g.wording,
                   chain_of_thought=g.chain_of_thought, pad_to_square=config.pad_to_square,
                   headline=g.get("headline", "substring"))
        # Prompt variants (Table 2 top) get their own rows and output files, so runs never mix them.
        variant = (f", wording {g.wording}" if g.wording != "default" else "") + \
                  (", chain of thought" if g.chain_of_thought else "")
        synonyms = load_synonyms(config.synonyms, names) if config.get("synonyms") else None
        if "open" in config.experiments:
            rows["VLM open world" + variant] = dict(evaluate_generation(
                model, tokenizer, examples, names, out(slug("open" + variant)), GenerationSettings(**gen), inputs,
                mesh=mesh), model=label)
            if synonyms:   # Table 8: the same answers, right when they name any synonym of the class
                rows[row_name("VLM open world" + variant, data.name)] = dict(synonym_accuracy(
                    out(slug("open" + variant)), examples, synonyms), model=label)
        for k in sizes if "closed" in config.experiments else ():
            order = g.choice_order == "dataset"
            settings = GenerationSettings(closed_world=True, choice_seed=None if order else config.seed,
                                          label_set_size=k, label_set_seed=config.seed,
                                          choices=None if order and not k else study_choices(k), **gen)
            closed = variant + (", dataset order" if order else "")
            rows["VLM closed world" + closed + (f", {k} labels" if k else "")] = dict(evaluate_generation(
                model, tokenizer, examples, names, out(slug(f"closed_{k or 'all'}" + closed)), settings, inputs,
                mesh=mesh),
                model=label)
        # The study's probabilistic inference ran on the first 1000 of its seed's shuffle
        # (inference_analysis/main.py:141-144); subset "all": every example.
        sc = config.scoring
        if sc.get("subset", "study") not in ("study", "all"):
            raise ValueError(f"config.scoring.subset={sc.subset!r} is not 'study' or 'all'")
        scored = examples
        if sc.get("subset", "study") == "study":
            keep = {e.id for e in study_order(split_rows, config.seed)[: sc.get("subset_size", 1000)]}
            scored = [e for e in examples if e.id in keep]
        for k in sizes if "scoring" in config.experiments else ():
            settings = ScoringSettings(prefix=inputs.scoring_prefix, choices=study_choices(k) if k else None,
                                       batch_size=config.scoring.batch_size, chunk_size=config.scoring.chunk_size,
                                       cfg_alpha=config.scoring.cfg_alpha, wording=config.generation.wording,
                                       label_set_size=k, label_set_seed=config.seed,
                                       name_tokens=sc.get("name_tokens", "context"),
                                       pad_to_square=config.pad_to_square)
            # Scores do not depend on k: every k reuses the first run's file (resume finds all examples).
            wording = f", wording {g.wording}" if g.wording != "default" else ""
            wording += ", study name tokens" if settings.name_tokens == "study" else ""
            rows["VLM probabilistic" + wording + (f", {k} labels" if k else "")] = dict(evaluate_scoring(
                model, tokenizer, scored, names, out(slug("scoring" + wording)),
                settings, inputs, mesh=mesh), model=label)

    incomplete = {row: m["missing"] for row, m in rows.items() if m.get("missing")}
    if incomplete:
        raise RuntimeError(f"examples missing from the outputs after all processes finished: {incomplete}")
    results = {"dataset": data.name, "examples": len(examples), "skipped_images": len(screened.skipped),
               "rows": rows, "checkpoints": checkpoints}
    if "model" in checkpoints and api_usage(model):   # an API model: tokens and cost
        results["api_usage"] = api_usage(model)
    results = merge_earlier(results, workdir)   # a rerun with fewer experiments keeps the other rows
    if jax.process_index() == 0:   # every process holds the same summary; one writes it
        write_results(results, workdir, config.paper_numbers)
        plotted = label_set_size_curve({row: headline(m) for row, m in results["rows"].items()},
                                       os.path.join(workdir, "label_set_size.png"),
                                       f"{data.name}: accuracy vs label-set size")
        print_summary(results, workdir, plotted)
    return results


def slug(text: str) -> str:
    """An output file name for a row: "closed_all, wording identify" -> "closed_all_wording_identify"."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def model_label(model_config) -> str:
    """A model's name in the tables: `label` when set, else the checkpoint's last path component."""
    return model_config.get("label") or os.path.basename(os.path.normpath(model_config.checkpoint))


def _row_source(row: str) -> str:
    """Which entry of results["checkpoints"] produced a row: CLIP's rows "clip", the VLM's "model"."""
    return "clip" if row.startswith("CLIP") else "model"


def merge_earlier(results: dict, workdir: str) -> dict:
    """`results` with the rows of WORKDIR/results.json that this run did not produce (a rerun with fewer
    experiments, or other ones, adds to the earlier rows instead of dropping them).  This run's rows replace
    earlier rows of the same name.  An earlier row is kept only when it was computed on the same examples
    (dataset, count, skipped images) by the same checkpoint (`checkpoints` entry) as this run would use;
    otherwise it is left out, and a line says which and why."""
    path = os.path.join(workdir, "results.json")
    if not os.path.exists(path):
        return results
    with open(path) as f:
        earlier = json.load(f)
    leftover = {row: m for row, m in earlier.get("rows", {}).items() if row not in results["rows"]}
    if not leftover:
        return results
    same = ("dataset", "examples", "skipped_images")
    if any(earlier.get(k) != results[k] for k in same):
        print(f"not keeping {len(leftover)} earlier rows of {path}: computed on other examples "
              f"({', '.join(f'{k} {earlier.get(k)!r}' for k in same if earlier.get(k) != results[k])})")
        return results
    checkpoints, kept, dropped = dict(results["checkpoints"]), {}, []
    for row, metrics in leftover.items():
        source = _row_source(row)
        before = earlier.get("checkpoints", {}).get(source)
        if source in results["checkpoints"] and results["checkpoints"][source] != before:
            dropped.append(row)
            continue
        if before is not None:
            checkpoints.setdefault(source, before)
        kept[row] = metrics
    if dropped:
        print(f"not keeping earlier rows {dropped} of {path}: another checkpoint produced them")
    rows = {row: results["rows"].get(row, kept.get(row)) for row in earlier["rows"]
            if row in results["rows"] or row in kept}     # the earlier order, then this run's new rows
    return dict(results, rows={**rows, **results["rows"]}, checkpoints=checkpoints)


def print_summary(results: dict, workdir: str, plotted: bool) -> None:
    """The accuracy of every row, then the files written."""
    print(f"{results['dataset']}: {results['examples']} examples"
          + (f" ({results['skipped_images']} unreadable images skipped)" if results["skipped_images"] else ""))
    width = max(len(row) for row in results["rows"]) if results["rows"] else 0
    for row, metrics in results["rows"].items():
        print(f"  {row:{width}s}  {100 * headline(metrics):5.1f}%  ({metrics['model']})")
    files = ["results.json", "table.md", "table.csv"] + (["label_set_size.png"] if plotted else [])
    print(f"wrote {', '.join(os.path.join(workdir, name) for name in files)}")
    print(f"wrote per-example outputs to {os.path.join(workdir, 'outputs')}/")


def write_results(results: dict, workdir: str, paper_numbers: bool = True) -> None:
    """results.json, table.md and table.csv (rows: model / setting; column: the dataset; values: accuracy %,
    with the paper's number beside ours unless paper_numbers is False)."""
    write_atomic(os.path.join(workdir, "results.json"), json.dumps(results, indent=2))
    write_tables([results], workdir, paper_numbers, not_run="none")   # "not run" rows: the merged table's
