"""Classification metrics, as the study computes them.

Generation is scored by case-insensitive substring match of the true class name in the output (the
study's metric), with exact match beside it; scored predictions by top-k accuracy and mean per-class
recall.  Every function states its denominator: the examples it is given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np


def substring_match(output: str, class_name: str) -> bool:
    """The study's metric: the true class name occurs in the output, ignoring case."""
    return class_name.lower() in output.lower()


def normalise(text: str) -> str:
    """Lowercase, trimmed, trailing punctuation and quotes removed, inner whitespace collapsed."""
    return re.sub(r"\s+", " ", text.strip().strip("\"'").rstrip(".!").strip()).lower()


def exact_match(output: str, class_name: str) -> bool:
    """The whole output is the class name (after `normalise`)."""
    return normalise(output) == normalise(class_name)


def study_exact_match(pred: str, class_name: str) -> bool:
    """The study's metric for fine-tuned LLaVA (training_analysis/llava/eval_classification.ipynb):
    `label.lower() == pred.lower()`, the prediction being model_vqa's stripped output; nothing else removed."""
    return class_name.lower() == pred.strip().lower()


def unparenthesized_substring_match(pred: str, class_name: str) -> bool:
    """The study's metric for fine-tuned BLIP-2 (training_analysis/blip/eval.ipynb): `label.replace("(", "")
    .replace(")", "")` lower-cased, in the lower-cased caption (LAVIS's pre_caption removed the parentheses from
    the training captions)."""
    return class_name.replace("(", "").replace(")", "").lower() in pred.lower()


def topk_accuracy(scores: np.ndarray, labels: Sequence[int], k: int = 1) -> float:
    """scores: float[N, C]; labels: N class indices.  The fraction whose label is among the k best."""
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("topk_accuracy of zero examples")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def mean_per_class_recall(predictions: Sequence[int], labels: Sequence[int], num_classes: int) -> float:
    """The mean over classes that occur in `labels` of the fraction of their examples predicted right."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    recalls = [float((predictions[labels == c] == c).mean()) for c in range(num_classes) if (labels == c).any()]
    if not recalls:
        raise ValueError("mean_per_class_recall of zero examples")
    return float(np.mean(recalls))
