"""POPE (the study's Table 13): yes/no questions about whether an object is in a COCO image, in the public
release's format: one file per split, coco_pope_{random,popular,adversarial}.json, each line
{"question_id", "image", "text", "label": "yes" | "no"}; images in COCO val2014.

Reproduces LLaVA-1.5's evaluation (llava/eval/eval_pope.py, haotian-liu/LLaVA at c121f04): the prompt is the
question and LLaVA's short-answer instruction; an answer counts as "no" when its first sentence, commas
removed, has the word "No", "not" or "no", else "yes"; "yes" is the positive class.  Per split: accuracy,
precision, recall, F1 and the share of "yes" answers.  Where eval_pope.py divides by zero (no "yes" answers
or no "yes" labels) this reports 0 for that number.

    items = read_pope("coco", "val2014", splits=("popular", "adversarial"))
    pope_metrics(["yes", "no"], ["yes", "yes"])   # {"accuracy": 0.5, "precision": 1.0, "recall": 0.5, ...}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from vlmcls_jax.eval.textvqa import SHORT_ANSWER, VQAItem

SPLITS = ("random", "popular", "adversarial")


def read_pope(folder: str, image_root: str, splits: Sequence[str] = SPLITS) -> list[VQAItem]:
    """The questions of each split (ids "split/question_id"; `answers` = (label,)).  Errors name the file."""
    items = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"POPE split {split!r} is not one of {SPLITS}")
        path = os.path.join(folder, f"coco_pope_{split}.json")
        with open(path) as f:
            for n, line in enumerate(f, 1):
                q = json.loads(line)
                if q.get("label") not in ("yes", "no"):
                    raise ValueError(f"{path}:{n}: label must be 'yes' or 'no', got {q.get('label')!r}")
                items.append(VQAItem(f"{split}/{q['question_id']}", os.path.join(image_root, q["image"]),
                                     f"{q['text']}\n{SHORT_ANSWER}", (q["label"],)))
    return items


def yes_or_no(text: str) -> str:
    """eval_pope.py's reading of an answer: "no" if its first sentence says No / not / no, else "yes"."""
    if text.find(".") != -1:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def pope_metrics(predictions: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy, precision, recall, F1 ("yes" positive), yes_ratio and the counts tp / fp / tn / fn."""
    if len(predictions) != len(labels) or not labels:
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    pairs = list(zip(predictions, labels))
    tp, fp = pairs.count(("yes", "yes")), pairs.count(("yes", "no"))
    tn, fn = pairs.count(("no", "no")), pairs.count(("no", "yes"))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"questions": len(pairs), "accuracy": (tp + tn) / len(pairs), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "yes_ratio": list(predictions).count("yes") / len(pairs), "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def score_pope(records: Sequence[dict]) -> dict:
    """Per split ("popular", ...): `pope_metrics` of the records ({"id": "split/qid", "output", "answers"})."""
    by_split: dict[str, list[dict]] = {}
    for r in records:
        by_split.setdefault(r["id"].split("/")[0], []).append(r)
    return {split: pope_metrics([yes_or_no(r["output"]) for r in rs], [r["answers"][0] for r in rs])
            for split, rs in by_split.items()}
