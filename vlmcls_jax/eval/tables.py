"""Result tables in the study's layout: one row per (model, setting), one column per dataset, accuracy in %,
each of our numbers shown as `ours (paper)` beside the paper's.

The eval and probe jobs write their own table with `write_tables` (the ImageWikiQA job its own layout, the
paper's number beside ours too); this module's command line merges several runs (one per dataset, per model,
per job) into one table, which also lists the paper's rows that no run gives:

    python -m vlmcls_jax.eval.tables runs/table1_imagenet runs/table1_flowers runs/table1_cars \\
        runs/table1_caltech runs/table2_* runs/probe_flowers runs/imagewikiqa --out runs/tables

writes runs/tables/table.md and table.csv and prints the Markdown.  Options: `--no-paper` (our numbers only),
`--paper FILE` (another file of numbers in the same format instead of the paper's), `--not-run all|none`
(which paper rows with no run of ours to list; default: those of the paper tables our rows appear in),
`--cfg-sweep` (a row per CFG alpha 0..8, not only the best one).

The paper's numbers: `study_published.json` beside this file, shipped with the package: the numbers printed in
the tables of Zhang et al., "Why are Visually-Grounded Language Models Bad at Image Classification?", NeurIPS
2024 (arXiv 2405.18415), each with its table, row and column, and the model / setting / dataset labels our
runs write (its "source" says how it was transcribed).  A cell of ours shows the paper's number in
parentheses when the file has the same (model label, row, dataset); a paper row that no run gives is listed
as `not run (paper)`.

How one results.json row becomes table rows (`table_rows`):
  * a row with `sum_accuracy` (the eval job's probabilistic inference) gives three: "VLM probabilistic" (sum
    of the name's token log-probs), "VLM probabilistic (avg rule)" (their mean) and "VLM probabilistic (cfg
    rule, best alpha)": the best accuracy over the row's `cfg_sweep` (alpha 0..8), the alpha named in the
    table's notes.  That is the paper's "Prob (Avg) w/ CFG" row as the study's code computes it:
    inference_analysis/get_accuracy.ipynb mixes each name's token log-probs with their mean over the images,
    `(alpha * np.array(prob) + (1 - alpha) * np.array(calibrated_probs[idx])).sum()` (a sum base, whatever
    the paper's row name says), and prints the accuracy for `alpha in range(0, 9)` without fixing one; the
    paper's CFG numbers are at least its Sum numbers everywhere, as the best of that sweep (alpha = 1 is Sum)
    must be.  `cfg_sweep=True` adds "VLM probabilistic (cfg rule, alpha A)" for every alpha of the sweep.
  * a row with `best_on_test` (the probe job) gives the study's protocol under its own name (the best test
    accuracy over epochs) and, with a validation split, "{feature}, epoch chosen on validation".
  * any other row gives one, its `headline`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
from collections.abc import Sequence
from importlib import resources

from vlmcls_jax.fileio import write_atomic

PAPER_FILE = "study_published.json"            # in this package (vlmcls_jax/eval)
NOT_RUN = ("tables", "all", "none")
PROBABILISTIC = "VLM probabilistic"
BEST_ALPHA = "cfg rule, best alpha"
VALIDATION = ", epoch chosen on validation"


def headline(metrics: dict) -> float:
    """The number a table shows for a results row: the study's metric for that method (a fraction in [0, 1]).

    A row may name its metric with "headline" (a key of the row); else the first of substring_accuracy (the
    study's rule for generated text), top1 (CLIP), sum_accuracy (probabilistic inference), accuracy
    (ImageWikiQA), best_on_test.test_accuracy (a probe: the study's protocol); "score" first: a
    benchmark's own (`general_job`: F1 for POPE, the grader's score for MM-Vet)."""
    # CLIP rows carry both top1 and substring_accuracy: the study's substring rule on the predicted name is
    # their headline (issue 17 item 5)
    if "headline" in metrics:
        return metrics[metrics["headline"]]
    for key in ("score", "substring_accuracy", "top1", "sum_accuracy", "accuracy"):
        if key in metrics:
            return metrics[key]
    if "best_on_test" in metrics:
        return metrics["best_on_test"]["test_accuracy"]
    raise KeyError(f"no accuracy in {sorted(metrics)} (a row needs 'headline' or one of substring_accuracy, "
                   "top1, sum_accuracy, accuracy, best_on_test)")


def rule_row(setting: str, rule: str) -> str:
    """"VLM probabilistic, 5 labels" + "avg rule" -> "VLM probabilistic (avg rule), 5 labels"."""
    if setting.startswith(PROBABILISTIC):
        return f"{PROBABILISTIC} ({rule}){setting[len(PROBABILISTIC):]}"
    return f"{setting} ({rule})"


def best_alpha(sweep: dict[str, float]) -> tuple[str, float]:
    """(alpha as written, accuracy) of the best alpha in a cfg_sweep {"0.0": acc, ...}; a tie goes to the
    smallest alpha."""
    if not sweep:
        raise ValueError("cfg_sweep is empty: no alpha to choose")
    alpha = min(sweep, key=lambda a: (-sweep[a], float(a)))
    return f"{float(alpha):g}", sweep[alpha]


def table_rows(setting: str, metrics: dict, cfg_sweep: bool = False) -> list[tuple[str, float, str]]:
    """The table rows one results.json row gives (see the module docstring): [(row name, fraction, remark)];
    the remark (e.g. "alpha 3") goes to the table's notes."""
    if "sum_accuracy" in metrics:
        rows = [(setting, metrics["sum_accuracy"], ""), (rule_row(setting, "avg rule"), metrics["avg_accuracy"], "")]
        if "cfg_sweep" in metrics:
            alpha, value = best_alpha(metrics["cfg_sweep"])
            rows.append((rule_row(setting, BEST_ALPHA), value, f"alpha {alpha}"))
            if cfg_sweep:
                rows += [(rule_row(setting, f"cfg rule, alpha {float(a):g}"), v, "")
                         for a, v in sorted(metrics["cfg_sweep"].items(), key=lambda kv: float(kv[0]))]
        return rows
    if "best_on_test" in metrics and "headline" not in metrics:
        rows = [(setting, metrics["best_on_test"]["test_accuracy"], "")]
        if metrics.get("val_selected"):
            rows.append((setting + VALIDATION, metrics["val_selected"]["test_accuracy"], ""))
        return rows
    return [(setting, headline(metrics), "")]


def load_run(path: str) -> dict:
    """A run's results.json (given the file or the run's folder)."""
    file = os.path.join(path, "results.json") if os.path.isdir(path) else path
    try:
        with open(file) as f:
            results = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{file}: no results.json (is {path} an eval, probe or ImageWikiQA run's "
                                "workdir?)") from None
    for key in ("dataset", "rows", "examples"):
        if key not in results:
            raise ValueError(f"{file}: missing field {key!r}; not a job's results.json")
    for setting, metrics in results["rows"].items():
        if "model" not in metrics:
            raise ValueError(f"{file}: row {setting!r} has no 'model' label")
    return results


Cell = tuple[str, str]          # (model label, row name)


def merge(runs: Sequence[dict], cfg_sweep: bool = False):
    """-> (datasets in first-seen order, {(model, row): {dataset: fraction}}, {dataset: examples as shown},
    {(model, row, dataset): remark}).

    A (model, row, dataset) cell given by two runs is an error (which run's number to show?)."""
    datasets: list[str] = []
    cells: dict[Cell, dict[str, float]] = {}
    examples: dict[str, str] = {}
    remarks: dict[tuple[str, str, str], str] = {}
    for results in runs:
        dataset = results["dataset"]
        if dataset not in datasets:
            datasets.append(dataset)
        n = results["examples"]   # the probe job: {"train": N, "test": M}
        shown = ", ".join(f"{k} {v}" for k, v in n.items()) if isinstance(n, dict) else str(n)
        if results.get("skipped_images"):   # unreadable images left out (data.on_bad_image="skip")
            shown += f" ({results['skipped_images']} unreadable skipped)"
        previous = examples.get(dataset)
        examples[dataset] = shown if previous in (None, shown) else f"{previous}; {shown}"
        for setting, metrics in results["rows"].items():
            for row_name, value, remark in table_rows(setting, metrics, cfg_sweep):
                key = (metrics["model"], row_name)
                row = cells.setdefault(key, {})
                if dataset in row:
                    raise ValueError(f"two runs give model {key[0]!r}, setting {row_name!r} on dataset {dataset!r}")
                row[dataset] = value
                if remark:
                    remarks[(*key, dataset)] = remark
    return datasets, cells, examples, remarks


def load_paper(path: str | None = None) -> dict[tuple[str, str, str], dict]:
    """{(model, setting, dataset): entry} from the paper's numbers shipped with the package (path None) or
    from a file of the same form {"entries": [{"model", "setting", "dataset", "value", "table"?, ...}]}.
    An entry's "value" is the number as printed (a percent, unless its note says otherwise); "table" (where it
    is printed, e.g. "Table 1, open world; Table 8, ...") decides which paper rows a merge lists as not run."""
    if path is None:
        where = f"vlmcls_jax/eval/{PAPER_FILE}"
        text = resources.files("vlmcls_jax.eval").joinpath(PAPER_FILE).read_text()
    else:
        with open(path) as f:
            text, where = f.read(), path
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise ValueError(f"{where}: no 'entries' list")
    out = {}
    for n, entry in enumerate(data["entries"]):
        missing = [k for k in ("model", "setting", "dataset", "value") if k not in entry]
        if missing:
            raise ValueError(f"{where}: entries[{n}] lacks {missing}")
        if not isinstance(entry["value"], (int, float)):
            raise ValueError(f"{where}: entries[{n}].value is {entry['value']!r}, not a number")
        key = (entry["model"], entry["setting"], entry["dataset"])
        if key in out:
            raise ValueError(f"{where}: entries[{n}] repeats model / setting / dataset {key}")
        out[key] = entry
    return out


def paper_tables(entry: dict) -> set[str]:
    """The paper tables an entry is printed in: "Table 1, open world; Table 8, ..." -> {"Table 1", "Table 8"}."""
    return {part.split(",")[0].strip() for part in entry.get("table", "").split(";")}


def paper_only_rows(paper: dict, cells: dict, datasets: list[str], not_run: str) -> tuple[list[Cell], list[str]]:
    """(the paper's (model, setting) rows no run gives, in the file's order; datasets they add as columns).
    not_run: "tables" (rows of the paper tables that a row of ours appears in, in our datasets' columns),
    "all" (every paper row, every dataset) or "none"."""
    if not_run not in NOT_RUN:
        raise ValueError(f"not_run={not_run!r} is not one of {NOT_RUN}")
    if not_run == "none":
        return [], []
    touched = {t for (m, s, d), e in paper.items() if (m, s) in cells for t in paper_tables(e)}
    rows: dict[Cell, None] = {}
    extra: dict[str, None] = {}
    for (model, setting, dataset), entry in paper.items():
        if not_run == "all" and dataset not in datasets:
            extra[dataset] = None
        if (model, setting) not in cells and (
                not_run == "all" or (dataset in datasets and paper_tables(entry) & touched)):
            rows[(model, setting)] = None
    return list(rows), list(extra)


def render(runs: Sequence[dict], paper: dict | None = None, not_run: str = "tables", cfg_sweep: bool = False,
           paper_source: str | None = None) -> tuple[str, str]:
    """-> (Markdown table, CSV text).  paper: `load_paper()`'s mapping, or None / {} for our numbers only;
    paper_source: the file it came from when not the shipped one (named in the notes).
    Markdown cells: `ours (paper)`, `ours`, `not run (paper)`, or `-`.  CSV: our numbers (percent, two
    decimals) and, with paper numbers, a "DATASET (paper)" column after each dataset and a "row" column
    ("ours" or "not run")."""
    paper = paper or {}
    datasets, cells, examples, remarks = merge(runs, cfg_sweep)
    only, extra = paper_only_rows(paper, cells, datasets, not_run) if paper else ([], [])
    columns = datasets + extra
    theirs = lambda m, s, d: paper[(m, s, d)]["value"] if (m, s, d) in paper else None

    def cell(model, setting, d):
        ours = cells.get((model, setting), {}).get(d)
        value = theirs(model, setting, d)
        text = f"{100 * ours:.1f}" if ours is not None else ("not run" if value is not None else "-")
        return text if value is None else f"{text} ({value})"

    lines = ["| model | setting | " + " | ".join(columns) + " |", "| --- | --- |" + " --- |" * len(columns)]
    for model, setting in list(cells) + only:
        lines.append(f"| {model} | {setting} | " + " | ".join(cell(model, setting, d) for d in columns) + " |")
    notes = ["Accuracy in %; examples per dataset: " + ", ".join(f"{d} {examples[d]}" for d in datasets) + "."]
    if paper:
        where = (f"{paper_source}" if paper_source else "the paper's number (Zhang et al., NeurIPS 2024, arXiv "
                 "2405.18415: vlmcls_jax/eval/study_published.json, where each entry names its table and row)")
        notes.append(f"In parentheses: {where} for the same model, setting and dataset; \"not run\": a number it "
                     "reports and no run here gives.")
    alphas = [f"{m} / {d}: {r}" for (m, s, d), r in remarks.items() if BEST_ALPHA in s]
    if alphas:
        notes.append("CFG (the study's get_accuracy.ipynb: alpha * sum + (1 - alpha) * the name's mean sum over "
                     "the images) at the best alpha of 0..8, chosen on these images as reading the study's sweep "
                     "does: " + "; ".join(alphas) + ".")
    markdown = "\n".join(lines) + "\n\n" + " ".join(notes) + "\n"

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "setting"] + [c for d in columns for c in ([d, f"{d} (paper)"] if paper else [d])]
                    + (["row"] if paper else []))
    for model, setting in list(cells) + only:
        values = []
        for d in columns:
            ours = cells.get((model, setting), {}).get(d)
            values.append("" if ours is None else f"{100 * ours:.2f}")
            if paper:
                value = theirs(model, setting, d)
                values.append("" if value is None else str(value))
        writer.writerow([model, setting] + values + ([("ours" if (model, setting) in cells else "not run")]
                                                      if paper else []))
    return markdown, buffer.getvalue()


def write_tables(runs: Sequence[dict], out_dir: str, paper: bool | str = True, not_run: str = "tables",
                 cfg_sweep: bool = False) -> str:
    """OUT_DIR/table.md and OUT_DIR/table.csv for the given runs' results; returns the Markdown.
    paper: True (the shipped paper numbers), False (none) or a file of numbers in the same format."""
    os.makedirs(out_dir, exist_ok=True)
    numbers = load_paper(paper if isinstance(paper, str) else None) if paper else {}
    markdown, csv_text = render(runs, numbers, not_run, cfg_sweep, paper if isinstance(paper, str) else None)
    write_atomic(os.path.join(out_dir, "table.md"), markdown)
    write_atomic(os.path.join(out_dir, "table.csv"), csv_text)
    return markdown


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Merge eval, probe and ImageWikiQA runs into one table (rows: "
                                                 "model / setting, columns: datasets), the paper's numbers beside "
                                                 "ours.")
    parser.add_argument("runs", nargs="+", help="job workdirs (or their results.json)")
    parser.add_argument("--out", required=True, help="folder for table.md and table.csv")
    parser.add_argument("--no-paper", action="store_true", help="our numbers only")
    parser.add_argument("--paper", metavar="FILE", help="numbers to show beside ours instead of the paper's "
                                                        "(same format as vlmcls_jax/eval/study_published.json)")
    parser.add_argument("--not-run", choices=NOT_RUN, default="tables",
                        help="paper rows with no run here: those of the paper tables our rows appear in "
                             "(tables), every one (all), or none")
    parser.add_argument("--cfg-sweep", action="store_true", help="a row for every CFG alpha, not only the best")
    args = parser.parse_args(argv)
    if args.no_paper and args.paper:
        parser.error("--no-paper and --paper exclude each other")
    paper = False if args.no_paper else (args.paper or True)
    print(write_tables([load_run(p) for p in args.runs], args.out, paper, args.not_run, args.cfg_sweep))


if __name__ == "__main__":
    main()
