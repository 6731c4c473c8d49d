"""Example order, candidate label sets (the label-set-size experiment: the study's Figure 2 / Table 9) and
the per-image order of closed-world choices.  Two samplers (config `sampling`):

  "study"   the study's own draws (VLMClassifier `main_results/main.py:69-70, 96-101`): Python's `random`
            seeded once, the split's rows shuffled, then, for each row in that order,
            `random.sample(sorted(set(classes) - {label}), n - 1)`, the label prepended, `random.shuffle`.
            One generator runs through the whole split, so a row's list depends on every row before it:
            `study_plan` draws the lists for the whole split up front (the same lists whatever subset or
            shard is then evaluated; the study's own resume skipped rows without drawing for them, so a
            resumed study run drew other lists than a fresh one: ours always equal a fresh run's).
            With the same manifest and seed, the lists (and the example order) are the study's exactly,
            for CLIP and the VLM alike (`main_clip`, main.py:188-216, draws the same sequence).
  "hashed"  each example's own generator, from (seed, example id) (`candidate_set`, `choice_order`): a
            list does not depend on the other examples, so any subset draws the same ones.

Both depend only on the seed and the examples, never on the model or the batch an example falls in.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")
SAMPLERS = ("study", "hashed")


def study_order(items: Sequence[T], seed: int) -> list[T]:
    """The study's example order: `random.seed(seed); random.shuffle(data)` (main_results/main.py:69-70,
    inference_analysis/main.py:141-142, feature_analysis/probe.py:40-41)."""
    out = list(items)
    random.Random(seed).shuffle(out)      # a Random(seed) draws exactly what the module's functions do after
    return out                            # random.seed(seed): they are methods of one hidden Random


def study_plan(examples: Sequence, class_names: Sequence[str], n_labels: int | None,
               seed: int) -> tuple[list, dict[str, tuple[str, ...]] | None]:
    """The study's example order and, with `n_labels`, each example's candidate class names in the order
    its prompt lists them: -> (examples in the study's order, {example id: names} or None).

    examples: the split's rows in manifest order (.id, .label_name).  n_labels: the list size (the study's
    `--n_labels`; all distinct names for its closed world: 102, 998, 196, 100)."""
    rng = random.Random(seed)
    data = list(examples)
    rng.shuffle(data)                                               # main.py:69-70
    if n_labels is None:
        return data, None
    distinct = set(class_names)
    if not 1 <= n_labels <= len(distinct):
        raise ValueError(f"label-set size {n_labels} must be between 1 and the {len(distinct)} distinct names")
    ordered = sorted(distinct)
    position = {name: i for i, name in enumerate(ordered)}
    plan = {}
    for e in data:
        i = position[e.label_name]
        others = ordered[:i] + ordered[i + 1:]                      # == sorted(list(set(classes) - set([label])))
        choices = [e.label_name] + rng.sample(others, n_labels - 1)  # main.py:96-99
        rng.shuffle(choices)                                        # main.py:101
        plan[e.id] = tuple(choices)
    return data, plan


def names_to_mask(plan: dict[str, tuple[str, ...]], ids: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    """bool[N, C]: the classes each example may be predicted as (every index of a listed name)."""
    indices: dict[str, list[int]] = {}
    for i, n in enumerate(class_names):
        indices.setdefault(n, []).append(i)
    mask = np.zeros((len(ids), len(class_names)), bool)
    for row, example_id in enumerate(ids):
        try:
            names = plan[example_id]
        except KeyError:
            raise KeyError(f"example {example_id!r} has no candidate list in the study plan") from None
        for n in names:
            mask[row, indices[n]] = True
    return mask


def example_rng(seed: int, example_id: str) -> np.random.Generator:
    """A generator determined by the seed and the example id (stable across runs, processes, machines)."""
    digest = hashlib.sha256(f"{seed}:{example_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def candidate_set(true_index: int, num_classes: int, k: int, seed: int, example_id: str) -> list[int]:
    """The "hashed" sampler: the true class plus k - 1 distractors drawn uniformly without replacement,
    shuffled, from the example's own generator."""
    if not 1 <= k <= num_classes:
        raise ValueError(f"label-set size k={k} must be between 1 and the {num_classes} classes")
    rng = example_rng(seed, example_id)
    others = np.delete(np.arange(num_classes), true_index)
    chosen = np.concatenate([[true_index], rng.choice(others, size=k - 1, replace=False)])
    return [int(i) for i in rng.permutation(chosen)]


def choice_order(num_choices: int, seed: int | None, example_id: str) -> list[int]:
    """The "hashed" sampler's closed-world order: shuffled per example by seed, or as given (seed None)."""
    if seed is None:
        return list(range(num_choices))
    return [int(i) for i in example_rng(seed, f"order:{example_id}").permutation(num_choices)]
