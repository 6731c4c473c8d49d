"""The evaluation job: `job = "eval"` configs run the study's classification experiments on one dataset and
write WORKDIR/results.json, a Markdown and a CSV table (rows: model / setting, one column per dataset) and,
with label-set sizes, WORKDIR/label_set_size.png (the study's Figure 2 for this dataset).  A rerun with
fewer (or other) experiments adds its rows to the earlier ones (`merge_earlier`).

Experiments (config.experiments; each is one function registered below with `@experiment`, and the job runs
the listed ones in the order listed, its rows in that order):
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

import dataclasses
import json
import os
import re
from collections.abc import Callable

import jax

from vlmcls_jax import fingerprint
from vlmcls_jax import sharding as shd
from vlmcls_jax.config_check import check_job_config
from vlmcls_jax.data.image_check import screen_images, write_skipped
from vlmcls_jax.data.sources import ClassList, load_class_names, read_manifest
from vlmcls_jax.eval.api_model import api_arguments, api_usage
from vlmcls_jax.eval.candidates import SAMPLERS, study_order, study_plan
from vlmcls_jax.eval.clip_templates import TEMPLATE_SETS
from vlmcls_jax.eval.clip_zero_shot import evaluate_clip, text_classifier
from vlmcls_jax.eval.loading import Loaded, eval_mesh, load_for_eval, load_model_section
from vlmcls_jax.eval.plots import label_set_size_curve
from vlmcls_jax.eval.synonyms import load_synonyms, row_name, synonym_accuracy
from vlmcls_jax.eval.tables import headline, write_tables
from vlmcls_jax.eval.vlm_generation import GenerationSettings, evaluate_generation
from vlmcls_jax.eval.vlm_scoring import ScoringSettings, evaluate_scoring
from vlmcls_jax.fileio import write_atomic


@dataclasses.dataclass
class EvalRun:
    """What the experiments of one eval run share: the resolved config, the examples, the class names, the
    mesh, the study's candidate lists (drawn once per label-set size) and the VLM (loaded once, by the first
    experiment that asks for it); `checkpoints` collects what was loaded (results.json)."""
    config: object            # the resolved config (`check_job_config`)
    workdir: str
    split_rows: list          # the split's examples in manifest order (the study's draws are over all of them)
    examples: list            # those evaluated: the study's order, max_examples, readable images
    names: list[str]          # the class names, by label index
    mesh: object
    checkpoints: dict = dataclasses.field(default_factory=dict)
    loaded_vlm: Loaded | None = None
    _plans: dict = dataclasses.field(default_factory=dict)

    @property
    def sizes(self) -> list[int | None]:
        """The label-set sizes every experiment runs: None (all classes), then config.label_set_sizes."""
        return [None] + [int(k) for k in self.config.label_set_sizes]

    def out(self, name: str) -> str:
        return os.path.join(self.workdir, "outputs", f"{name}.jsonl")

    def study_choices(self, k: int | None):
        """The study sampler's candidate lists for label-set size k (None: the closed world over every distinct
        name), drawn over the whole split as the study did (`candidates`); None with sampling "hashed"."""
        if self.config.sampling != "study":
            return None
        if k not in self._plans:
            self._plans[k] = study_plan(self.split_rows, self.names, k or len(set(self.names)), self.config.seed)[1]
        return self._plans[k]

    def vlm(self) -> Loaded:
        """config.model, loaded on the first call (its encoding of images and prompts: `.inputs`)."""
        if self.loaded_vlm is None:
            self.loaded_vlm = load_model_section(self.config.model, self.mesh,
                                                 api=api_arguments(self.config.model, self.workdir))
            self.checkpoints["model"] = dict(self.loaded_vlm.provenance,
                                             prompt_format=self.loaded_vlm.inputs.prompt_format)
        return self.loaded_vlm

    @property
    def variant(self) -> str:
        """The prompt variant's row suffix (Table 2 top): variants get their own rows and output files, so runs
        never mix them."""
        g = self.config.generation
        return (f", wording {g.wording}" if g.wording != "default" else "") + \
               (", chain of thought" if g.chain_of_thought else "")

    def generation(self, **settings) -> GenerationSettings:
        g = self.config.generation
        return GenerationSettings(max_new_tokens=g.max_new_tokens or None, batch_size=g.batch_size,
                                  wording=g.wording, chain_of_thought=g.chain_of_thought,
                                  pad_to_square=self.config.pad_to_square, headline=g.headline, **settings)


@dataclasses.dataclass(frozen=True)
class Experiment:
    run: Callable[[EvalRun], dict]            # -> {row name: metrics}
    reads: tuple[str, ...]                    # the config fields (a "section." prefix: all of it) its rows depend
                                              # on: a run's fingerprint leaves out what none of its experiments reads
    check: Callable[[EvalRun], None] | None   # refuses a bad setting before any experiment of the run starts


# config.experiments names -> Experiment, in the order registered (the order of the module docstring)
EXPERIMENTS: dict[str, Experiment] = {}
VLM_FIELDS = ("model.", "generation.", "scoring.", "pad_to_square")   # what the VLM experiments read


def batch_fields(config) -> dict[str, int]:
    """The VLM batch sizes the run's experiments split over the mesh's batch devices, by config field (checked
    by `sharding.check_batch_sizes` here and in the plan)."""
    out = {}
    if {"open", "closed"} & set(config.experiments):
        out["config.generation.batch_size"] = config.generation.batch_size
    if "scoring" in config.experiments:
        out["config.scoring.batch_size"] = config.scoring.batch_size
    return out


def experiment(name: str, reads: tuple[str, ...], check: Callable[[EvalRun], None] | None = None):
    """Registers `fn(ev: EvalRun) -> {row: metrics}` as the experiment `name` of config.experiments: adding an
    experiment is one decorated function."""
    def register(fn):
        if name in EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is registered twice")
        EXPERIMENTS[name] = Experiment(fn, reads, check)
        return fn
    return register


def run(config, workdir: str) -> dict:
    config = check_job_config(config, "eval")   # every field, the declared default where config has none
    listed = list(dict.fromkeys(config.experiments))   # in the order listed, each once
    unknown = [name for name in listed if name not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"config.experiments: unknown {unknown}; the registered experiments are {list(EXPERIMENTS)} "
                         "(vlmcls_jax/eval/job.py, @experiment)")
    if config.sampling not in SAMPLERS:
        raise ValueError(f"config.sampling={config.sampling!r} is not one of {SAMPLERS}")
    # Data parallel over this process's devices (each process evaluates its own share of the examples).
    mesh = eval_mesh(config.mesh_shape)
    shd.check_batch_sizes(mesh, batch_fields(config))
    data = config.data
    classes = ClassList(tuple(load_class_names(data.classes)))
    split_rows = read_manifest(data.manifest, data.image_root, classes, split=data.split or None)
    workdir = fingerprint.claim(workdir, fingerprint.of(config, "eval"), overwrite=config.overwrite)
    os.makedirs(os.path.join(workdir, "outputs"), exist_ok=True)
    # "study": the study's example order (its seed's shuffle); max_examples takes the first N of that order
    examples = study_order(split_rows, config.seed) if config.sampling == "study" else split_rows
    if config.max_examples:
        examples = examples[: config.max_examples]
    # data.on_bad_image="skip": unreadable images are left out, listed and counted (denominators: the rest).
    screened = screen_images(examples, lambda e: e.image, data.on_bad_image)
    if screened.skipped:
        write_skipped(os.path.join(workdir, "skipped_images.jsonl"), screened)
        print(f"skipping {len(screened.skipped)} unreadable images (listed in {workdir}/skipped_images.jsonl)")
    ev = EvalRun(config, workdir, split_rows, screened.kept, list(classes.names), mesh)
    for name in listed:
        if EXPERIMENTS[name].check is not None:
            EXPERIMENTS[name].check(ev)
    rows: dict[str, dict] = {}
    for name in listed:
        rows.update(EXPERIMENTS[name].run(ev))

    incomplete = {row: m["missing"] for row, m in rows.items() if m.get("missing")}
    if incomplete:
        raise RuntimeError(f"examples missing from the outputs after all processes finished: {incomplete}")
    results = {"dataset": data.name, "examples": len(ev.examples), "skipped_images": len(screened.skipped),
               "rows": rows, "checkpoints": ev.checkpoints}
    if ev.loaded_vlm is not None and api_usage(ev.loaded_vlm.model):   # an API model: tokens and cost
        results["api_usage"] = api_usage(ev.loaded_vlm.model)
    results = merge_earlier(results, workdir)   # a rerun with fewer experiments keeps the other rows
    if jax.process_index() == 0:   # every process holds the same summary; one writes it
        write_results(results, workdir, config.paper_numbers)
        plotted = label_set_size_curve({row: headline(m) for row, m in results["rows"].items()},
                                       os.path.join(workdir, "label_set_size.png"),
                                       f"{data.name}: accuracy vs label-set size")
        print_summary(results, workdir, plotted)
    return results


def _check_clip(ev: EvalRun) -> None:
    if ev.config.clip.templates not in TEMPLATE_SETS:
        raise ValueError(f"config.clip.templates={ev.config.clip.templates!r} is not one of {sorted(TEMPLATE_SETS)}")


@experiment("clip", reads=("clip.",), check=_check_clip)
def clip_zero_shot(ev: EvalRun) -> dict:
    """CLIP zero-shot with config.clip.templates, on all classes and each label-set size."""
    c = ev.config
    loaded = load_for_eval(c.clip.checkpoint, ev.mesh, c.clip.revision)
    ev.checkpoints["clip"] = loaded.provenance
    classifier = text_classifier(loaded.model, loaded.tokenizer, ev.names, TEMPLATE_SETS[c.clip.templates],
                                 cache_dir=os.path.join(ev.workdir, "cache"), model_id=loaded.source, mesh=ev.mesh)
    rows = {}
    for k in ev.sizes:
        row = f"CLIP ({c.clip.templates})" + (f", {k} labels" if k else "")
        rows[row] = dict(evaluate_clip(
            loaded.model, classifier, ev.examples, ev.names, preprocess=loaded.preprocess, label_set_size=k,
            label_set_seed=c.seed, choices=ev.study_choices(k) if k else None, out_path=ev.out(slug(row)),
            mesh=ev.mesh), model=model_label(c.clip))
    return rows


def _check_vlm(ev: EvalRun) -> None:
    """The settings every VLM experiment shares."""
    if ev.config.generation.choice_order not in ("shuffled", "dataset"):
        raise ValueError(f"config.generation.choice_order={ev.config.generation.choice_order!r} is not 'shuffled' "
                         "or 'dataset'")
    if ev.config.scoring.subset not in ("study", "all"):
        raise ValueError(f"config.scoring.subset={ev.config.scoring.subset!r} is not 'study' or 'all'")


@experiment("open", reads=VLM_FIELDS, check=_check_vlm)
def open_world(ev: EvalRun) -> dict:
    """VLM generation, open world (Table 1); with config.synonyms also counted with synonyms (Table 8)."""
    c, loaded = ev.config, ev.vlm()
    synonyms = load_synonyms(c.synonyms, ev.names) if c.synonyms else None
    name = slug("open" + ev.variant)
    rows = {"VLM open world" + ev.variant: dict(evaluate_generation(
        loaded.model, loaded.tokenizer, ev.examples, ev.names, ev.out(name), ev.generation(), loaded.inputs,
        mesh=ev.mesh), model=model_label(c.model))}
    if synonyms:   # Table 8: the same answers, right when they name any synonym of the class
        rows[row_name("VLM open world" + ev.variant, c.data.name)] = dict(synonym_accuracy(
            ev.out(name), ev.examples, synonyms), model=model_label(c.model))
    return rows


@experiment("closed", reads=VLM_FIELDS, check=_check_vlm)
def closed_world(ev: EvalRun) -> dict:
    """VLM generation, closed world, shuffled choices (Table 1), on all classes and each label-set size."""
    c, loaded = ev.config, ev.vlm()
    order = c.generation.choice_order == "dataset"
    closed = ev.variant + (", dataset order" if order else "")
    rows = {}
    for k in ev.sizes:
        settings = ev.generation(closed_world=True, choice_seed=None if order else c.seed, label_set_size=k,
                                  label_set_seed=c.seed, choices=None if order and not k else ev.study_choices(k))
        rows["VLM closed world" + closed + (f", {k} labels" if k else "")] = dict(evaluate_generation(
            loaded.model, loaded.tokenizer, ev.examples, ev.names, ev.out(slug(f"closed_{k or 'all'}" + closed)),
            settings, loaded.inputs, mesh=ev.mesh), model=model_label(c.model))
    return rows


def _check_scoring(ev: EvalRun) -> None:
    _check_vlm(ev)
    ev.vlm().inputs.scoring_prefix   # an API model (no token probabilities) stops here, before any request


@experiment("scoring", reads=VLM_FIELDS, check=_check_scoring)
def probabilistic(ev: EvalRun) -> dict:
    """VLM probabilistic inference, sum / avg / cfg (Table 2 bottom), on all classes and each label-set size."""
    c, loaded = ev.config, ev.vlm()
    sc = c.scoring
    # The study's probabilistic inference ran on the first 1000 of its seed's shuffle
    # (inference_analysis/main.py:141-144); subset "all": every example.
    scored = ev.examples
    if sc.subset == "study":
        keep = {e.id for e in study_order(ev.split_rows, c.seed)[: sc.subset_size]}
        scored = [e for e in ev.examples if e.id in keep]
    rows = {}
    for k in ev.sizes:
        settings = ScoringSettings(prefix=loaded.inputs.scoring_prefix, choices=ev.study_choices(k) if k else None,
                                   batch_size=sc.batch_size, chunk_size=sc.chunk_size, cfg_alpha=sc.cfg_alpha,
                                   wording=c.generation.wording, label_set_size=k, label_set_seed=c.seed,
                                   name_tokens=sc.name_tokens, pad_to_square=c.pad_to_square)
        # Scores do not depend on k: every k reuses the first run's file (resume finds all examples).
        wording = f", wording {c.generation.wording}" if c.generation.wording != "default" else ""
        wording += ", study name tokens" if settings.name_tokens == "study" else ""
        rows["VLM probabilistic" + wording + (f", {k} labels" if k else "")] = dict(evaluate_scoring(
            loaded.model, loaded.tokenizer, scored, ev.names, ev.out(slug("scoring" + wording)),
            settings, loaded.inputs, mesh=ev.mesh), model=model_label(c.model))
    return rows


def slug(text: str) -> str:
    """An output file name for a row: "closed_all, wording identify" -> "closed_all_wording_identify"."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def model_label(model_config) -> str:
    """A model's name in the tables: `label` when set, else the checkpoint's last path component."""
    return model_config.label or os.path.basename(os.path.normpath(model_config.checkpoint))


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
