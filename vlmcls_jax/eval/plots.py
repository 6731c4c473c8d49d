"""Figures of the evaluation job, as PNG files (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402


def label_set_size_curve(rows: dict[str, float], path: str, title: str) -> bool:
    """The study's Figure 2: accuracy against the number of candidate labels, one line per method.

    rows: {"<method>, <k> labels": accuracy, ...}; rows without a label-set size are not plotted.
    Returns False (and writes nothing) when no row has a label-set size."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for row, accuracy in rows.items():
        match = re.fullmatch(r"(.*), (\d+) labels", row)
        if match:
            curves.setdefault(match.group(1), []).append((int(match.group(2)), accuracy))
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, points in sorted(curves.items()):
        points.sort()
        ax.plot([k for k, _ in points], [100 * a for _, a in points], marker="o", label=method)
    ax.set_xscale("log")
    sizes = sorted({k for points in curves.values() for k, _ in points})
    ax.set_xticks(sizes, [str(k) for k in sizes])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("number of candidate labels")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
