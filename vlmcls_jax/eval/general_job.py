"""The general-capability job (`job = "general"`, the study's Table 13): LLaVA-1.5 before and after fine-tuning
on classification data, on TextVQA, POPE (popular, adversarial) and MM-Vet, answered by generation with
LLaVA-1.5's evaluation prompts (greedy; 128 new tokens for TextVQA and POPE, 1024 for MM-Vet, as
llava/eval/model_vqa_loader.py and model_vqa.py) and scored in the public releases' formats (`textvqa`,
`pope`, `mmvet`; MM-Vet graded by GPT-4 through `api_model`).

Writes, for each model (config.models, labelled by config.labels):
  WORKDIR/MODEL/BENCHMARK.jsonl         every answer, appended as each batch finishes (a rerun resumes)
  WORKDIR/MODEL/mmvet_graded.jsonl      each MM-Vet answer with its grader score
  WORKDIR/MODEL/COLUMN/results.json     one run per table column, mergeable by `python -m vlmcls_jax.eval.tables`
and WORKDIR/results.json (every number), WORKDIR/table.md and table.csv: rows = models, columns = TextVQA (VQA
accuracy), POPE Popular / POPE Adverse (F1, the number LLaVA-1.5 and the study report; accuracy, precision,
recall and yes-ratio are in results.json), MMVet (the GPT-4 score; per capability in results.json), with the
paper's numbers in parentheses when config.reference names a file of them (/work/shared/paper_data/
study_published.json's format: `eval.tables`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import jax

from vlmcls_jax import sharding as shd
from vlmcls_jax.config_check import check_job_config
from vlmcls_jax.eval import mmvet, shards
from vlmcls_jax.eval.api_model import api_usage, load_api
from vlmcls_jax.eval.loading import eval_mesh, load_for_eval
from vlmcls_jax.eval.pope import read_pope, score_pope
from vlmcls_jax.eval.resumable import run_resumable
from vlmcls_jax.eval.tables import write_tables
from vlmcls_jax.eval.textvqa import read_textvqa, score_textvqa
from vlmcls_jax.eval.vlm_generation import answer_batch
from vlmcls_jax.fileio import write_atomic, write_jsonl

BENCHMARKS = ("textvqa", "pope", "mmvet")
POPE_COLUMNS = {"random": "POPE Random", "popular": "POPE Popular", "adversarial": "POPE Adverse"}
SETTING = "benchmark score"
MAX_NEW_TOKENS = {"textvqa": 128, "pope": 128, "mmvet": 1024}   # model_vqa_loader.py default / model_vqa.py


@dataclasses.dataclass(frozen=True)
class AnswerSettings:
    """What `vlm_generation.answer_batch` reads."""
    max_new_tokens: int
    batch_size: int = 8
    length_multiple: int = 64
    pad_to_square: bool = True   # LLaVA-1.5's own evaluation pads to a square (image_aspect_ratio="pad")


def answer_items(model, tokenizer, inputs, items, out_path: str, settings: AnswerSettings, mesh=None) -> list[dict]:
    """Answers `textvqa.VQAItem`s, one JSONL record each ({"id", "prompt", "answers", "output"}) appended per
    batch; items already in the file are skipped.  Returns the records of all items, in order."""

    def answer(chunk):
        prompts = [inputs.prompt(i.prompt) for i in chunk]
        outputs = answer_batch(model, tokenizer, prompts, [i.image for i in chunk], inputs, settings, mesh)
        return [{"id": item.id, "prompt": item.prompt, "answers": list(item.answers), "output": output.strip()}
                for item, output in zip(chunk, outputs)]

    answered = run_resumable(items, out_path, settings.batch_size, answer, desc=os.path.basename(out_path), unit="q")
    if answered.missing:
        raise RuntimeError(f"{out_path}: {answered.missing} answers missing after all processes finished")
    return answered.records


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")


def run(config, workdir: str) -> dict:
    config = check_job_config(config, "general")   # every field, the declared default where config has none
    unknown = sorted(set(config.benchmarks) - set(BENCHMARKS))
    if unknown:
        raise ValueError(f"config.benchmarks: unknown {unknown}; known: {list(BENCHMARKS)}")
    if config.labels and len(config.labels) != len(config.models):
        raise ValueError(f"config.labels has {len(config.labels)} names for {len(config.models)} config.models")
    n = config.max_examples or None
    items = {}
    if "textvqa" in config.benchmarks:
        items["textvqa"] = read_textvqa(config.textvqa.annotations, config.textvqa.image_root,
                                        config.textvqa.questions)[:n]
    if "pope" in config.benchmarks:
        pope = []
        for split in config.pope.splits:   # max_examples: the first N of each split
            pope += read_pope(config.pope.folder, config.pope.image_root, (split,))[:n]
        items["pope"] = pope
    if "mmvet" in config.benchmarks:
        mm_items, capabilities = mmvet.read_mmvet(config.mmvet.data, config.mmvet.image_root)
        items["mmvet"] = mm_items[:n]
        grader_options = dict(config.mmvet.grader_api, temperature=0.0, max_tokens=mmvet.GRADER_MAX_TOKENS)
        grader, _ = load_api(config.mmvet.grader, grader_options, os.path.join(workdir, "grader_responses.jsonl"))
    mesh = eval_mesh(config.mesh_shape)
    shd.check_batch_sizes(mesh, {"config.batch_size": config.batch_size})
    results = {"models": {}, "checkpoints": {}}
    runs = []
    for index, checkpoint in enumerate(config.models):
        label = (config.labels[index] if config.labels else "") or os.path.basename(os.path.normpath(checkpoint))
        folder = os.path.join(workdir, slug(label))
        api_log = shards.part_path(os.path.join(folder, "api_responses.jsonl"), jax.process_index(),
                                   jax.process_count())
        loaded = load_for_eval(checkpoint, mesh, None, config.prompt_format, scan_layers=config.model.scan_layers,
                               dtype=config.model.dtype, param_dtype=config.model.param_dtype,
                               api={"options": dict(config.api), "log_path": api_log})
        results["checkpoints"][label] = loaded.provenance
        columns = {}
        for bench in config.benchmarks:
            settings = AnswerSettings(MAX_NEW_TOKENS[bench], config.batch_size, pad_to_square=config.pad_to_square)
            records = answer_items(loaded.model, loaded.tokenizer, loaded.inputs, items[bench],
                                   os.path.join(folder, f"{bench}.jsonl"), settings, mesh)
            if bench == "textvqa":
                summary = score_textvqa(records)
                columns["TextVQA"] = dict(summary, score=summary["accuracy"], score_is="VQA accuracy")
            elif bench == "pope":
                for split, metrics in score_pope(records).items():
                    columns[POPE_COLUMNS[split]] = dict(metrics, score=metrics["f1"], score_is="F1")
            elif jax.process_index() == 0:   # graded once (process 0 writes the results)
                graded = mmvet.grade(records, grader)
                write_jsonl(os.path.join(folder, "mmvet_graded.jsonl"), graded)
                scores = mmvet.capability_scores(graded, capabilities)
                columns["MMVet"] = {"score": scores["total"] / 100, "score_is": "GPT-4 score", "capabilities": scores,
                                    "questions": len(graded), "grader": config.mmvet.grader}
        results["models"][label] = columns
        if api_usage(loaded.model):
            results.setdefault("api_usage", {})[label] = api_usage(loaded.model)
        for column, metrics in columns.items():
            run_ = {"dataset": column, "examples": metrics["questions"], "rows": {SETTING: dict(metrics, model=label)}}
            runs.append(run_)
            if jax.process_index() == 0:
                os.makedirs(os.path.join(folder, slug(column)), exist_ok=True)
                write_atomic(os.path.join(folder, slug(column), "results.json"), json.dumps(run_, indent=2))
    if "mmvet" in config.benchmarks:
        results["grader_usage"] = grader.usage()
    if jax.process_index() == 0:
        write_atomic(os.path.join(workdir, "results.json"), json.dumps(results, indent=2))
        write_tables(runs, workdir, config.reference or None)
        with open(os.path.join(workdir, "table.md"), "a") as f:
            f.write("TextVQA: VQA accuracy; POPE: F1 (\"yes\" positive); MMVet: the GPT-4 grader's score "
                    "(results.json has every metric).\n")
    return results
