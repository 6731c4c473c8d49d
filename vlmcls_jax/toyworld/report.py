"""WORKDIR/report.md for the toy world: every table and plot, and which of the study's findings the miniature
reproduces, judged from the numbers as they came out (nothing here is fixed in advance)."""

from __future__ import annotations

import json
import math
import os

import jax
from scipy import stats

from vlmcls_jax.analysis.correlation import frequency_accuracy_summary
from vlmcls_jax.analysis.frequency import FrequencyCounter
from vlmcls_jax.eval.tables import headline
from vlmcls_jax.toyworld.knowledge import QUESTION

QA_ROW = "ImageWikiQA (chain of thought)"   # the imagewikiqa job's row


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def binomial_interval(accuracy: float, n: int) -> tuple[float, float]:
    """The Clopper-Pearson 95% interval of an accuracy over N examples (scipy's exact binomial interval)."""
    ci = stats.binomtest(int(round(accuracy * n)), n).proportion_ci(0.95)
    return float(ci.low), float(ci.high)


def _with_interval(accuracy: float, n: int) -> str:
    low, high = binomial_interval(accuracy, n)
    return f"{_pct(accuracy)} ({_pct(low)} to {_pct(high)})"


def _frequency(workdir: str, paths: dict, base: dict) -> dict:
    """Class-name counts in the VLM's training text (captions + instructions, every turn), joined with the
    VLM's open-world per-class accuracy.  Names at a sentence's edges count here (`count_edges=True`): the
    world's answers are often just the class name, which the study's rule would never count."""
    names = json.load(open(paths["classes"]))
    counter = FrequencyCounter(names, count_edges=True)
    counter.add(paths["captions"])
    counter.add(paths["instructions"])
    counts = counter.result()
    outputs = os.path.join(workdir, "eval", "VLM", "outputs", "open.jsonl")
    summary = frequency_accuracy_summary(outputs, counts, plot_path=os.path.join(workdir, "frequency.png"),
                                         title="toy world: open-world accuracy vs class frequency",
                                         edges=(0, 1, 3, 10, 30, 100, 300, 1000, 10 ** 6))
    summary["counts"] = counts.by_name
    return summary


NOISE = "reproduced, within sampling noise"
QUICK_WARNING = ("**Warning: this is the quick setting (few steps, small towers, 2 test images per class). Its "
                 "accuracies are near chance and its findings table means nothing; it only shows the machinery "
                 "runs end to end. `make run` gives the real numbers.**")


def _finding(claim: str, holds: bool, evidence: str, gaps=(), n: int = 0) -> str:
    """A findings-table row.  gaps: (higher, lower) accuracy pairs the claim rests on, each measured on `n`
    examples; a claim that holds but has a gap under two standard errors of a difference of two independent
    accuracies is reported as within sampling noise."""
    state = "reproduced" if holds else "not reproduced"
    if holds and any(hi - lo <= 2 * math.sqrt((hi * (1 - hi) + lo * (1 - lo)) / n) for hi, lo in gaps):
        state = NOISE
    return f"| {claim} | {state} | {evidence} |"


def write(workdir: str, config, paths: dict, clip_log: dict, base: dict, probes: dict, finetuned: list[dict],
          knowledge: list[dict], timings: dict, total_seconds: float) -> dict:
    rows = base["rows"]
    clip = headline(rows["CLIP (study)"])         # the study's substring rule on CLIP's predicted name
    open_acc = rows["VLM open world"]["substring_accuracy"]
    closed = rows["VLM closed world"]["substring_accuracy"]
    scoring = rows["VLM probabilistic"]
    probe = probes["rows"]["llm:-1/last"]["val_selected"]["test_accuracy"]
    probe_mean = probes["rows"]["llm:-1/mean"]["val_selected"]["test_accuracy"]
    freq = _frequency(workdir, paths, base)
    after = {r["rows"]["VLM open world"]["model"]: r["rows"] for r in finetuned}
    proj_name, mix_name = list(after)

    lines = [f"# Toy world report (seed {config.seed})", ""]
    if config.get("setting") == "quick":
        lines += [QUICK_WARNING, ""]
    lines += [
             f"{len(json.load(open(paths['classes'])))} classes, {paths['images']} rendered images, "
             f"{config.image_size} px; total time {total_seconds / 60:.1f} min on {jax.device_count()} "
             f"{jax.devices()[0].platform} device(s). Stage times (s): "
             + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + ".", "",
             f"CLIP training loss: {clip_log['losses'][0]:.3f} -> {clip_log['losses'][-1]:.3f} over "
             f"{clip_log['steps']} steps.", "",
             "## Table 1 / Table 2: CLIP vs the VLM (test split, balanced)", "",
             "| model | setting | accuracy % (95% Clopper-Pearson interval over the test images) |",
             "| --- | --- | --- |"]
    for setting, m in rows.items():
        value = headline(m)
        lines.append(f"| {m['model']} | {setting} | {_with_interval(value, base['examples'])} |")
    lines += ["", f"Probabilistic inference rules: sum {_pct(scoring['sum_accuracy'])}, avg "
              f"{_pct(scoring['avg_accuracy'])}, cfg {_pct(scoring['cfg_accuracy'])} "
              f"(the study's calibration, alpha 2).", "",
              "![label-set size](eval/VLM/label_set_size.png)", "",
              "## Table 3 left: linear probes on the VLM's features", "",
              "| feature | test accuracy % (epoch chosen on validation) | best-on-test % (study's protocol) |",
              "| --- | --- | --- |"]
    for feature, r in probes["rows"].items():
        lines.append(f"| {feature} | {_pct(r['val_selected']['test_accuracy'])} | "
                     f"{_pct(r['best_on_test']['test_accuracy'])} |")
    lines += ["", "## Figure 3: per-class accuracy vs class frequency in the VLM's training text", "",
              f"Spearman r = {freq['spearman_r']:.3f} (p = {freq['spearman_p']:.2g}), Pearson r = "
              f"{freq['pearson_r']:.3f} (p = {freq['pearson_p']:.2g}) over {freq['classes_used']} classes.", "",
              "![frequency](frequency.png)", "",
              "## Table 3 right / Table 5: fine-tuning with classification data", "",
              "| model | open world % | probabilistic (sum) % |", "| --- | --- | --- |",
              f"| VLM | {_pct(open_acc)} | {_pct(scoring['sum_accuracy'])} |"]
    for name, r in after.items():
        lines.append(f"| {name} | {_pct(r['VLM open world']['substring_accuracy'])} | "
                     f"{_pct(r['VLM probabilistic']['sum_accuracy'])} |")
    qa = [(r["rows"][QA_ROW]["model"], r["rows"][QA_ROW]) for r in knowledge]
    gain = knowledge[-1]["gain_over_baseline"]["points"]
    lines += ["", "## Table 5 analogue: knowledge questions (ImageWikiQA's format and protocol)", "",
              f"\"{QUESTION}\" about every test image, four options, the study's chain-of-thought prompt and "
              "answer parser; the answer needs the class (recognition) and its home (a fact the decoder learned "
              "from text-only instructions, balanced over classes).", "",
              "| model | accuracy % | parsed by letter / bracket / text / random |", "| --- | --- | --- |"]
    for name, r in qa:
        lines.append(f"| {name} | {_pct(r['accuracy'])} | "
                     + " / ".join(str(r["parsed_by"][h]) for h in ("letter", "bracket", "text", "random")) + " |")
    lines += ["", f"Gain from the classification + instruction mixture: {gain:+.1f} points (the study: "
              f"+{knowledge[-1]['gain_over_baseline']['study_points']:.1f} on ImageWikiQA)."]
    proj_open = after[proj_name]["VLM open world"]["substring_accuracy"]
    n = base["examples"]
    mix_open = after[mix_name]["VLM open world"]["substring_accuracy"]
    findings = [
        _finding("The VLM classifies worse than the CLIP it is built on", open_acc < clip and closed < clip,
                 f"CLIP {_pct(clip)} vs VLM open {_pct(open_acc)}, closed {_pct(closed)}",
                 [(clip, open_acc), (clip, closed)], n),
        _finding("Probabilistic inference helps but does not close the gap",
                 open_acc < scoring["sum_accuracy"] < clip,
                 f"open {_pct(open_acc)}, scoring {_pct(scoring['sum_accuracy'])}, CLIP {_pct(clip)}",
                 [(scoring["sum_accuracy"], open_acc), (clip, scoring["sum_accuracy"])], n),
        _finding("The class is in the VLM's hidden states (probes beat its answers)", max(probe, probe_mean) > open_acc,
                 f"probe last {_pct(probe)}, mean {_pct(probe_mean)} vs open {_pct(open_acc)}",
                 [(max(probe, probe_mean), open_acc)], n),
        _finding("Per-class accuracy follows class frequency in the training text",
                 freq["spearman_r"] > 0 and freq["spearman_p"] < 0.05,
                 f"Spearman r {freq['spearman_r']:.2f}, p {freq['spearman_p']:.2g}"),
        _finding("Classification data closes most of the gap (projector fine-tuning)",
                 proj_open > open_acc and proj_open >= 0.8 * clip,
                 f"open {_pct(open_acc)} -> {_pct(proj_open)} (CLIP {_pct(clip)})", [(proj_open, open_acc)], n),
        _finding("Mixed into the instruction data, classification data still helps", mix_open > open_acc,
                 f"open {_pct(open_acc)} -> {_pct(mix_open)}", [(mix_open, open_acc)], n),
        _finding("... and lifts knowledge questions about the objects (ImageWikiQA)", gain > 0,
                 f"{_pct(qa[0][1]['accuracy'])} -> {_pct(qa[-1][1]['accuracy'])} ({gain:+.1f} points)",
                 [(qa[-1][1]["accuracy"], qa[0][1]["accuracy"])], qa[0][1]["questions"]),
    ]
    lines += ["", "## Which of the study's findings the miniature reproduces", "",
              "| finding | here | numbers |", "| --- | --- | --- |", *findings, "",
              f"\"Within sampling noise\": some gap the finding rests on is under two standard errors of a "
              f"difference of two accuracies on {n} test images (the evaluations share their images, so this is "
              "conservative). The world is tiny and the models are trained from scratch in minutes, so these are "
              "the numbers of one seed (`make run-seeds` runs three), not evidence about real VLMs."]
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    summary = {"clip": clip, "vlm_open": open_acc, "vlm_closed": closed, "scoring_sum": scoring["sum_accuracy"],
               "probe_last": probe, "probe_mean": probe_mean, "spearman_r": freq["spearman_r"],
               "after_projector_open": proj_open, "after_mixture_open": mix_open,
               "knowledge_before": qa[0][1]["accuracy"], "knowledge_after": qa[-1][1]["accuracy"],
               "seconds": total_seconds, "seed": config.seed, "examples": n,
               "knowledge_questions": qa[0][1]["questions"],
               "claims": [f.split(" | ")[0].removeprefix("| ") for f in findings],
               "findings": [f.split(" | ")[1] for f in findings],
               "evidence": [f.split(" | ")[2].removesuffix(" |") for f in findings]}
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary
