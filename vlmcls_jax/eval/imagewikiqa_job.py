"""The ImageWikiQA job (`job = "imagewikiqa"`, the study's Table 5): answer the 2000 multiple-choice questions
with a VLM (chain of thought, MMMU-style parsing) and write WORKDIR/results.json, WORKDIR/table.md and
WORKDIR/per_class.csv (classname, correct, total: joinable with the class-frequency analysis).

With `config.baseline` (another run's results.json, e.g. the model before fine-tuning) the table also shows
the gain over it beside the study's reported gain of 11.8 points (its README; `study_numbers.json`).
Missing images are counted, reported and scored as wrong, never dropped from the denominator.
"""

from __future__ import annotations

import csv
import io
import json
import os
from importlib import resources

import jax

from vlmcls_jax.config_check import check_job_config
from vlmcls_jax.data.imagewikiqa import read_imagewikiqa
from vlmcls_jax.eval.loading import eval_mesh, load_for_eval
from vlmcls_jax.eval.imagewikiqa_eval import ImageWikiQASettings, evaluate_imagewikiqa
from vlmcls_jax.eval.tables import load_run, write_atomic


def study_gain() -> float:
    """The study's ImageWikiQA gain from adding classification data (points), as its README states it."""
    data = json.loads(resources.files("vlmcls_jax.eval").joinpath("study_numbers.json").read_text())
    return next(e["value"] for e in data["entries"] if e["dataset"] == "ImageWikiQA")


def run(config, workdir: str) -> dict:
    check_job_config(config, "imagewikiqa")
    os.makedirs(workdir, exist_ok=True)
    questions, report = read_imagewikiqa(config.data.questions, config.data.image_root,
                                         require_images=config.data.require_images)
    if config.get("max_examples"):
        questions = questions[: config.max_examples]
    mesh = eval_mesh(config.mesh_shape)
    loaded = load_for_eval(config.model.checkpoint, mesh, config.model.get("revision"),
                           config.model.get("prompt_format", "auto"),
                           scan_layers=config.model.get("scan_layers", False))
    model, tokenizer, preprocess = loaded.model, loaded.tokenizer, loaded.inputs
    g = config.generation
    settings = ImageWikiQASettings(chain_of_thought=g.chain_of_thought, max_new_tokens=g.max_new_tokens,
                                   seed=config.seed, batch_size=g.batch_size, pad_to_square=config.pad_to_square,
                                   protocol=g.get("protocol", "main"))
    summary = evaluate_imagewikiqa(model, tokenizer, questions, os.path.join(workdir, "outputs.jsonl"), settings,
                                   preprocess, mesh=mesh)
    if summary["missing"]:
        raise RuntimeError(f"{summary['missing']} questions missing from the outputs after all processes finished")
    label = config.model.get("label") or os.path.basename(os.path.normpath(config.model.checkpoint))
    results = {"dataset": "ImageWikiQA", "examples": summary["questions"], "load_report": report,
               "rows": {"ImageWikiQA (chain of thought)": dict(summary, model=label)},
               "checkpoints": {"model": loaded.provenance}}
    gain = None
    if config.get("baseline"):
        base = load_run(config.baseline)["rows"]["ImageWikiQA (chain of thought)"]["accuracy"]
        gain = 100 * (summary["accuracy"] - base)
        results["gain_over_baseline"] = {"baseline": config.baseline, "points": gain, "study_points": study_gain()}
    if jax.process_index() == 0:
        write_atomic(os.path.join(workdir, "results.json"), json.dumps(results, indent=2))
        lines = ["| model | ImageWikiQA accuracy | parsed by letter / bracket / text / random | missing images |",
                 "| --- | --- | --- | --- |",
                 f"| {label} | {100 * summary['accuracy']:.1f} | "
                 + " / ".join(str(summary["parsed_by"][h]) for h in ("letter", "bracket", "text", "random"))
                 + f" | {summary['missing_images']} of {summary['questions']} |"]
        if gain is not None:
            lines.append(f"\nGain over the baseline ({config.baseline}): {gain:+.1f} points "
                         f"(the study reports +{study_gain():.1f}).")
        write_atomic(os.path.join(workdir, "table.md"), "\n".join(lines) + "\n")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["classname", "correct", "total"])
        writer.writerows([name, c, t] for name, (c, t) in summary["per_class"].items())
        write_atomic(os.path.join(workdir, "per_class.csv"), buffer.getvalue())
    return results
