"""Candidate label sets for the label-set-size experiment (the study's Figure 2 / Table 9) and the
per-image order of closed-world choices.

Both depend only on (seed, example id), never on the model or on the batch an example falls in, so CLIP
and the VLM see exactly the same candidates, and a resumed or sharded evaluation draws the same ones.
"""

from __future__ import annotations

import hashlib

import numpy as np


def example_rng(seed: int, example_id: str) -> np.random.Generator:
    """A generator determined by the seed and the example id (stable across runs, processes, machines)."""
    digest = hashlib.sha256(f"{seed}:{example_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def candidate_set(true_index: int, num_classes: int, k: int, seed: int, example_id: str) -> list[int]:
    """The true class plus k - 1 distractors drawn uniformly without replacement, shuffled."""
    if not 1 <= k <= num_classes:
        raise ValueError(f"label-set size k={k} must be between 1 and the {num_classes} classes")
    rng = example_rng(seed, example_id)
    others = np.delete(np.arange(num_classes), true_index)
    chosen = np.concatenate([[true_index], rng.choice(others, size=k - 1, replace=False)])
    return [int(i) for i in rng.permutation(chosen)]


def choice_order(num_choices: int, seed: int | None, example_id: str) -> list[int]:
    """The order the closed-world prompt lists choices in: shuffled per example by seed, or as given."""
    if seed is None:
        return list(range(num_choices))
    return [int(i) for i in example_rng(seed, f"order:{example_id}").permutation(num_choices)]
