"""The toy world over several seeds (`config.seeds`, `make run-seeds`): WORKDIR/report.md with each accuracy's
mean and 95% interval over seeds, and a verdict per finding that counts "reproduced" only where every seed
shows it beyond two standard errors.

Each seed is a whole new world (its own rendering, long tail, homes, initialisations); its own report and
summary are in WORKDIR/seed_K/.  A seed "shows" a finding when its per-seed report (report.py) marks it
"reproduced": the claim holds and every gap it rests on exceeds two standard errors of a difference of two
binomial accuracies, sqrt(p1 (1 - p1) / n + p2 (1 - p2) / n) over the n test images (n questions for the
knowledge questions; Spearman's p < 0.05 for the frequency finding).  The evaluations share their images, so
this unpaired error is conservative (a paired one would be smaller).
"""

from __future__ import annotations

import json
import os

import numpy as np
from scipy import stats

from vlmcls_jax.toyworld.report import NOISE, QUICK_WARNING, binomial_interval

ACCURACIES = (   # (summary key, what it is)
    ("clip", "CLIP zero-shot"), ("vlm_open", "VLM open world"), ("vlm_closed", "VLM closed world"),
    ("scoring_sum", "VLM probabilistic inference"), ("probe_last", "probe, last layer, last token"),
    ("probe_mean", "probe, last layer, mean"), ("after_projector_open", "open world after projector fine-tuning"),
    ("after_mixture_open", "open world after the classification + instruction mixture"),
    ("knowledge_before", "knowledge questions, VLM"), ("knowledge_after", "knowledge questions, after the mixture"))


def interval(values, n: int | None = None) -> tuple[float, float, float]:
    """(mean, low, high): Student's t 95% interval over seeds (N unused); with one seed, the Clopper-Pearson
    95% interval of that accuracy over its N test examples (N None: no interval, (v, nan, nan))."""
    values = np.asarray(values, np.float64)
    mean = float(values.mean())
    if len(values) > 1:
        sem = stats.sem(values)
        if sem == 0:
            return mean, mean, mean
        low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)
        return mean, float(low), float(high)
    if n is None:
        return mean, float("nan"), float("nan")
    return (mean, *binomial_interval(mean, n))


def verdict(states: list[str]) -> str:
    """Across seeds: reproduced only if every seed shows it beyond noise."""
    if all(s == "reproduced" for s in states):
        return "reproduced"
    if any(s == "not reproduced" for s in states):
        return "not reproduced"
    return NOISE


def write(workdir: str, summaries: list[dict], quick: bool = False) -> dict:
    """WORKDIR/report.md and WORKDIR/summary.json from the per-seed summaries (report.write's)."""
    k = len(summaries)
    seeds = [s["seed"] for s in summaries]
    lines = [f"# Toy world over {k} seeds ({', '.join(map(str, seeds))})", ""]
    if quick:
        lines += [QUICK_WARNING, ""]
    lines += ["Each seed's own report: " + ", ".join(f"[seed {s}](seed_{s}/report.md)" for s in seeds)
              + f". Total time {sum(s['seconds'] for s in summaries) / 60:.1f} min.", "",
              "## Accuracies (mean and 95% interval over seeds, Student's t)" if k > 1 else
              "## Accuracies (one seed: 95% Clopper-Pearson interval over its test examples)", "",
              "| | mean % | 95% interval % | per seed % |", "| --- | --- | --- | --- |"]
    agg = {}
    for key, label in ACCURACIES:
        vals = [s[key] for s in summaries]
        n = summaries[0]["knowledge_questions" if key.startswith("knowledge") else "examples"]
        mean, low, high = interval(vals, n)
        agg[key] = {"mean": mean, "low": low, "high": high, "per_seed": vals}
        lines.append(f"| {label} | {100 * mean:.1f} | {100 * low:.1f} to {100 * high:.1f} | "
                     + ", ".join(f"{100 * v:.1f}" for v in vals) + " |")
    r = [s["spearman_r"] for s in summaries]
    lines += ["", f"Spearman r (per-class open-world accuracy vs class frequency): mean {np.mean(r):.2f}, per seed "
              + ", ".join(f"{v:.2f}" for v in r) + ".", "",
              "## Which of the study's findings the miniature reproduces, over seeds", "",
              "| finding | verdict | per seed: state (numbers) |", "| --- | --- | --- |"]
    verdicts = []
    for i, claim in enumerate(summaries[0]["claims"]):
        states = [s["findings"][i] for s in summaries]
        verdicts.append(verdict(states))
        lines.append(f"| {claim} | {verdicts[-1]} | " + "; ".join(
            f"seed {s['seed']}: {s['findings'][i]} ({s['evidence'][i]})" for s in summaries) + " |")
    n = summaries[0]["examples"]
    lines += ["", f"A finding is \"reproduced\" only where every seed shows it beyond two standard errors: every "
              f"gap it rests on exceeds twice the binomial standard error of a difference of two accuracies, "
              f"sqrt(p1 (1 - p1) / n + p2 (1 - p2) / n), with n = {n} test images "
              f"({summaries[0]['knowledge_questions']} knowledge questions); the frequency finding needs Spearman "
              "p < 0.05 in every seed. The evaluations share their images, so this unpaired error is conservative. "
              "XLA's floating point differs between CPUs, so the numbers move a little between machines; the "
              "verdicts rest on gaps well beyond that."]
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    out = {"seeds": seeds, "accuracies": agg, "claims": summaries[0]["claims"], "verdicts": verdicts}
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(out, f, indent=2)
    return out


def from_folders(workdir: str, seeds: list[int], quick: bool = False) -> dict:
    """Re-aggregates the finished seeds under WORKDIR/seed_K/ (e.g. seeds run as separate processes)."""
    summaries = []
    for s in seeds:
        path = os.path.join(workdir, f"seed_{s}", "summary.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: seed {s} has no summary (did its run finish?)")
        summaries.append(json.load(open(path)))
    return write(workdir, summaries, quick)
