"""Per-class accuracy against class frequency in training data: the study's Figure 3 and its correlations.

    python -m vlmcls_jax.analysis.correlation --results imagenet_llava7b.jsonl --counts imagenet_counts.json \
        --field substring_match --plot figure3.png --out figure3.json

Inputs: an evaluator's per-example JSONL (records with "label", an int class index, and a boolean metric
field the caller names, e.g. "substring_match" or "correct"; records sharing an "id" count once, the last
wins, as the evaluators' resume logic reads them) and class counts from `vlmcls_jax.analysis.frequency`.

What the study does (`data_analysis/correlation.ipynb`) and what is done here
-----------------------------------------------------------------------------
- Correlation (cell 2): `spearmanr(counts, accuracy)` and `pearsonr(counts, accuracy)` on raw counts, over
  the classes that have test examples. The same here (raw counts, not log counts); `pearson_log1p_*` is
  added, Pearson against log(1 + count), since raw-count Pearson is dominated by the few largest counts.
- The study keys accuracy and counts by class *name*, so ImageNet's two "missile" classes (and the two
  "sunglasses") are one point there; here a point is a class index (both carry the name's count). It also
  looks counts up by `name.lower()` while its counts are keyed by the name's tokens joined by spaces, so
  names that tokenise differently ("kite (bird of prey)" -> "kite ( bird of prey )", "potter's wheel")
  get 0 there (9 ImageNet names); here counts join accuracy by class index and keep their counts.
- Its pretraining + instruction counts are summed only over names found in the pretraining counts; sum
  the two files' `counts` here (the CLI takes several --counts files and adds them).
- Binning (cell 3): frequency bins [0,10), [10,20), ..., [90,100), [100,1000), [1000,10000),
  [10000,100000); a bin's accuracy is the mean over its classes, shown with its number of classes. The study
  drops classes with a count >= 100000 and draws empty bins at 0 accuracy (sum / (n + 1e-3)); here a last
  bin [100000, inf) holds such classes, means are exact and an empty bin has no point.
- Classes without examples are left out of everything and their number reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats

STUDY_BIN_EDGES = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 1000, 10000, 100000)


def per_class_accuracy(path: str | os.PathLike, num_classes: int,
                       field: str = "substring_match") -> tuple[np.ndarray, np.ndarray]:
    """Per-example JSONL -> (accuracy float64[C], NaN where a class has no example; examples int64[C]).

    Errors name the file and line: unreadable JSON, a missing or out-of-range "label", a missing `field`,
    or a `field` value that is not a boolean (0 and 1 are accepted)."""
    path = os.fspath(path)
    records: dict = {}
    try:
        f = open(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"Results file not found: {path!r}") from e
    with f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: invalid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            label, value = record.get("label"), record.get(field)
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
                raise ValueError(f"{path}:{number}: 'label' is {label!r}, not a class index in [0, {num_classes})")
            if field not in record:
                raise ValueError(f"{path}:{number}: no {field!r} field (fields: {sorted(record)})")
            if not (isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1))):
                raise ValueError(f"{path}:{number}: {field!r} is {value!r}, not a boolean")
            records[record.get("id", ("line", number))] = (label, bool(value))
    examples = np.zeros(num_classes, np.int64)
    correct = np.zeros(num_classes, np.int64)
    for label, value in records.values():
        examples[label] += 1
        correct[label] += value
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(examples > 0, correct / np.maximum(examples, 1), np.nan)
    return accuracy, examples


def _pair(fn, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(statistic, p-value); NaN for constant input (scipy warns and returns NaN there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        result = fn(x, y)
    return float(result.statistic), float(result.pvalue)


def frequency_correlation(counts: Sequence[int] | np.ndarray, accuracy: np.ndarray) -> dict:
    """Spearman and Pearson correlation of accuracy with raw counts (the study's), plus Pearson with
    log(1 + count), over classes whose accuracy is not NaN. counts: int[C]; accuracy: float[C]."""
    counts, accuracy = _check(counts, accuracy)
    used = ~np.isnan(accuracy)
    if used.sum() < 2:
        raise ValueError(f"need at least 2 classes with examples to correlate, got {int(used.sum())}")
    x, y = counts[used].astype(np.float64), accuracy[used]
    spearman_r, spearman_p = _pair(stats.spearmanr, x, y)
    pearson_r, pearson_p = _pair(stats.pearsonr, x, y)
    log_r, log_p = _pair(stats.pearsonr, np.log1p(x), y)
    return {"spearman_r": spearman_r, "spearman_p": spearman_p, "pearson_r": pearson_r, "pearson_p": pearson_p,
            "pearson_log1p_r": log_r, "pearson_log1p_p": log_p,
            "classes_used": int(used.sum()), "classes_excluded": int((~used).sum())}


def binned_accuracy(counts: Sequence[int] | np.ndarray, accuracy: np.ndarray,
                    edges: Sequence[int] = STUDY_BIN_EDGES) -> list[dict]:
    """Bins [edges[i], edges[i+1]) and a last [edges[-1], inf): [{"low", "high" (None = inf), "classes",
    "accuracy" (mean over the bin's classes; None when empty)}], over classes whose accuracy is not NaN."""
    counts, accuracy = _check(counts, accuracy)
    if list(edges) != sorted(set(edges)) or edges[0] > 0:
        raise ValueError(f"bin edges must increase strictly from 0 or below, got {list(edges)}")
    used = ~np.isnan(accuracy)
    which = np.searchsorted(np.asarray(edges), counts, side="right") - 1
    bins = []
    for i, low in enumerate(edges):
        members = used & (which == i)
        n = int(members.sum())
        bins.append({"low": int(low), "high": int(edges[i + 1]) if i + 1 < len(edges) else None, "classes": n,
                     "accuracy": float(accuracy[members].mean()) if n else None})
    return bins


def plot_binned_accuracy(bins: list[dict], path: str | os.PathLike, title: str | None = None) -> None:
    """The Figure 3 panel as PNG: mean accuracy (%) per frequency bin, each tick naming its number of classes.
    Drawn on a bare matplotlib Figure (Agg canvas), so pyplot's global backend is left alone."""
    from matplotlib.figure import Figure

    labels = [f"[{b['low']}, {b['high'] if b['high'] is not None else 'inf'})\n({b['classes']} classes)"
              for b in bins]
    ys = [100 * b["accuracy"] if b["accuracy"] is not None else math.nan for b in bins]
    fig = Figure(figsize=(max(6.0, 0.9 * len(bins)), 3.5))
    ax = fig.subplots()
    ax.plot(range(len(bins)), ys, marker="o")
    ax.set_xticks(range(len(bins)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("class frequency in training data")
    ax.set_ylabel("accuracy (%)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=120, format="png")


def frequency_accuracy_summary(results: str | os.PathLike, counts, *,
                               field: str = "substring_match", edges: Sequence[int] = STUDY_BIN_EDGES,
                               plot_path: str | os.PathLike | None = None, title: str | None = None) -> dict:
    """Per-example results + counts (int[C] or a FrequencyCounts) -> {spearman_r, spearman_p, pearson_r,
    pearson_p, pearson_log1p_r, pearson_log1p_p, classes_used, classes_excluded, field, bins}; writes the
    plot when plot_path is given."""
    counts = np.asarray(getattr(counts, "counts", counts))  # also a FrequencyCounts
    accuracy, _ = per_class_accuracy(results, len(counts), field)
    summary = frequency_correlation(counts, accuracy)
    summary["field"] = field
    summary["bins"] = binned_accuracy(counts, accuracy, edges)
    if plot_path is not None:
        plot_binned_accuracy(summary["bins"], plot_path, title)
    return summary


def _check(counts, accuracy) -> tuple[np.ndarray, np.ndarray]:
    counts, accuracy = np.asarray(counts), np.asarray(accuracy, np.float64)
    if counts.ndim != 1 or counts.shape != accuracy.shape:
        raise ValueError(f"counts {counts.shape} and accuracy {accuracy.shape} must be 1-D and the same length")
    if counts.size and (not np.issubdtype(counts.dtype, np.integer) or counts.min() < 0):
        raise ValueError("counts must be non-negative integers")
    return counts, accuracy


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmcls_jax.analysis.correlation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="per-example JSONL of an evaluator")
    parser.add_argument("--counts", nargs="+", required=True,
                        help="counts JSON files of vlmcls_jax.analysis.frequency (several are added)")
    parser.add_argument("--field", default="substring_match", help="boolean per-example metric field")
    parser.add_argument("--plot", default=None, help="PNG to write")
    parser.add_argument("--out", default=None, help="summary JSON to write")
    args = parser.parse_args(argv)

    total, names = None, None
    for path in args.counts:
        with open(path) as f:
            data = json.load(f)
        if names is not None and data["class_names"] != names:
            raise ValueError(f"{path}: its class list differs from {args.counts[0]}'s")
        names = data["class_names"]
        counts = np.asarray(data["counts"], np.int64)
        total = counts if total is None else total + counts
    summary = frequency_accuracy_summary(args.results, total, field=args.field, plot_path=args.plot)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
    print(f"spearman r={summary['spearman_r']:.3f} (p={summary['spearman_p']:.2g}), "
          f"pearson r={summary['pearson_r']:.3f} (p={summary['pearson_p']:.2g}); "
          f"{summary['classes_used']} classes used, {summary['classes_excluded']} without examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
