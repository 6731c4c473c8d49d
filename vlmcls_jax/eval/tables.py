"""Result tables in the study's layout: one row per (model, setting), one column per dataset, accuracy in %.

One eval run (`eval.job`) covers one dataset and writes its own table; this module also merges several runs
(one per dataset, or per model) into one table:

    python -m vlmcls_jax.eval.tables runs/table1_imagenet runs/table1_flowers runs/table1_cars \\
        runs/table1_caltech --out runs/table1 [--reference my_paper_numbers.json]

writes runs/table1/table.md and table.csv.

Reference numbers (the paper's, or another codebase's) are shown beside ours as `ours (ref)` when a JSON file
of the form {"entries": [{"model": ..., "setting": ..., "dataset": ..., "value": percent, "source": ...}]}
names the same model label, row setting and dataset as a run.  The study's repository prints almost none of
its table numbers (its notebooks were released without outputs; `study_numbers.json` beside this file lists
the few it does print, with their sources), so no paper numbers ship here: copy them from the paper into
such a file.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
from typing import Sequence


def headline(metrics: dict) -> float:
    """The number a table shows for a row: the study's metric for that method (a fraction in [0, 1]); a row
    that names its own (`"headline"`, e.g. the exact match of fine-tuned models) shows that field."""
    if "headline" in metrics:
        return metrics[metrics["headline"]]
    for key in ("top1", "substring_accuracy", "sum_accuracy", "accuracy"):
        if key in metrics:
            return metrics[key]
    raise KeyError(f"no accuracy in {sorted(metrics)}")


def load_run(path: str) -> dict:
    """A run's results.json (given the file or the run's folder)."""
    file = os.path.join(path, "results.json") if os.path.isdir(path) else path
    try:
        with open(file) as f:
            results = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{file}: no results.json (is {path} an eval run's workdir?)") from None
    for key in ("dataset", "rows", "examples"):
        if key not in results:
            raise ValueError(f"{file}: missing field {key!r}; not an eval run's results.json")
    return results


def merge(runs: Sequence[dict]) -> tuple[list[str], dict[tuple[str, str], dict[str, float]], dict[str, int | str]]:
    """-> (datasets in first-seen order, {(model, setting): {dataset: accuracy}}, {dataset: examples}).

    A (model, setting, dataset) cell given by two runs is an error (which run's number to show?)."""
    datasets: list[str] = []
    cells: dict[tuple[str, str], dict[str, float]] = {}
    examples: dict[str, int | str] = {}
    for results in runs:
        dataset = results["dataset"]
        if dataset not in datasets:
            datasets.append(dataset)
        examples[dataset] = results["examples"]
        if results.get("skipped_images"):   # unreadable images left out (data.on_bad_image="skip")
            examples[dataset] = f"{results['examples']} ({results['skipped_images']} unreadable skipped)"
        for setting, metrics in results["rows"].items():
            key = (metrics.get("model", ""), setting)
            row = cells.setdefault(key, {})
            if dataset in row:
                raise ValueError(f"two runs give model {key[0]!r}, setting {setting!r} on dataset {dataset!r}")
            row[dataset] = headline(metrics)
    return datasets, cells, examples


def load_reference(path: str | None) -> dict[tuple[str, str, str], float]:
    """{(model, setting, dataset): value in %} from a reference file (see the module docstring)."""
    if not path:
        return {}
    with open(path) as f:
        data = json.load(f)
    out = {}
    for n, entry in enumerate(data.get("entries", [])):
        missing = [k for k in ("model", "setting", "dataset", "value") if k not in entry]
        if missing:
            raise ValueError(f"{path}: entries[{n}] lacks {missing}")
        out[(entry["model"], entry["setting"], entry["dataset"])] = float(entry["value"])
    return out


def render(runs: Sequence[dict], reference: dict[tuple[str, str, str], float] | None = None) -> tuple[str, str]:
    """-> (Markdown table, CSV text).  CSV cells hold our numbers; a reference column per dataset follows
    when any reference value matches."""
    reference = reference or {}
    datasets, cells, examples = merge(runs)
    ref = lambda model, setting, d: reference.get((model, setting, d))
    has_ref = {d: any(ref(m, s, d) is not None for (m, s) in cells) for d in datasets}

    lines = ["| model | setting | " + " | ".join(datasets) + " |", "| --- | --- |" + " --- |" * len(datasets)]
    for (model, setting), row in cells.items():
        shown = []
        for d in datasets:
            ours = f"{100 * row[d]:.1f}" if d in row else "-"
            theirs = ref(model, setting, d)
            shown.append(ours if theirs is None else f"{ours} ({theirs:.1f})")
        lines.append(f"| {model} | {setting} | " + " | ".join(shown) + " |")
    notes = "Accuracy in %; examples per dataset: " + ", ".join(f"{d} {examples[d]}" for d in datasets) + "."
    if any(has_ref.values()):
        notes += " In parentheses: the reference value for the same model, setting and dataset."
    markdown = "\n".join(lines) + "\n\n" + notes + "\n"

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "setting"] + [c for d in datasets for c in ([d, f"{d} (reference)"] if has_ref[d]
                                                                         else [d])])
    for (model, setting), row in cells.items():
        values = []
        for d in datasets:
            values.append(f"{100 * row[d]:.2f}" if d in row else "")
            if has_ref[d]:
                theirs = ref(model, setting, d)
                values.append("" if theirs is None else f"{theirs:.2f}")
        writer.writerow([model, setting] + values)
    return markdown, buffer.getvalue()


def write_atomic(path: str, text: str) -> None:
    """Writes then renames, so a crash never leaves a truncated file behind."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_tables(runs: Sequence[dict], out_dir: str, reference_path: str | None = None) -> None:
    """OUT_DIR/table.md and OUT_DIR/table.csv for the given runs' results."""
    os.makedirs(out_dir, exist_ok=True)
    markdown, csv_text = render(runs, load_reference(reference_path))
    write_atomic(os.path.join(out_dir, "table.md"), markdown)
    write_atomic(os.path.join(out_dir, "table.csv"), csv_text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Merge eval runs into one table (rows: model / setting, "
                                                 "columns: datasets).")
    parser.add_argument("runs", nargs="+", help="eval workdirs (or their results.json)")
    parser.add_argument("--out", required=True, help="folder for table.md and table.csv")
    parser.add_argument("--reference", help="JSON of reference numbers to show beside ours")
    args = parser.parse_args(argv)
    write_tables([load_run(p) for p in args.runs], args.out, args.reference)
    print(open(os.path.join(args.out, "table.md")).read())


if __name__ == "__main__":
    main()
