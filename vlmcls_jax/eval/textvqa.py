"""TextVQA (the study's Table 13): questions about text in images, scored by VQA accuracy against the 10 human
answers (`vqa_answers`: the official normalisation).  Reads the public release's annotation file,
TextVQA_0.5.1_val.json ({"data": [{"question_id", "image_id", "question", "answers": [10 strings], ...}]}),
with images at IMAGE_ROOT/{image_id}.jpg (the release's train_images/ folder holds the val images too).

The prompt is LLaVA-1.5's (scripts/v1_5/eval/textvqa.sh): by default the question and LLaVA's short-answer
instruction; with `questions` = LLaVA's llava_textvqa_val_v051_ocr.jsonl, that file's prompts (with the
"Reference OCR token:" line), joined to the annotations as llava/eval/eval_textvqa.py joins them: by
(image id, the question part of the prompt, lowercased).

    items = read_textvqa("TextVQA_0.5.1_val.json", "train_images")
    summary = score_textvqa(records)   # records: {"output", "answers"} -> {"questions", "accuracy"}
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

from vlmcls_jax.eval.vqa_answers import vqa_accuracy

SHORT_ANSWER = "Answer the question using a single word or phrase."   # LLaVA-1.5's VQA instruction


@dataclasses.dataclass(frozen=True)
class VQAItem:
    id: str
    image: str          # the image file
    prompt: str         # the question as the model is asked it
    answers: tuple      # the 10 human answers (TextVQA) or the label (POPE, MM-Vet: see their modules)


def _question_of(prompt: str) -> str:
    """llava/eval/eval_textvqa.py `prompt_processor`: the question inside one of LLaVA's TextVQA prompts."""
    lines = prompt.split("\n")
    if "Reference OCR token: " in prompt and len(lines) == 3:
        question = lines[1] if prompt.startswith("Reference OCR token:") else lines[0]
    elif len(lines) == 2:
        question = lines[0]
    else:
        raise ValueError(f"not a LLaVA TextVQA prompt (2 or 3 lines): {prompt!r}")
    return question.lower()


def read_textvqa(annotations: str, image_root: str, questions: str = "") -> list[VQAItem]:
    """The annotation file's questions (see the module docstring); errors name the file and entry."""
    with open(annotations) as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{annotations}: expected the TextVQA release's {{\"data\": [...]}}")
    for n, a in enumerate(data["data"]):
        missing = {"question_id", "image_id", "question", "answers"} - set(a)
        if missing:
            raise ValueError(f"{annotations}: data[{n}] lacks {sorted(missing)}")
        if len(a["answers"]) != 10:
            raise ValueError(f"{annotations}: data[{n}] (question {a['question_id']}) has {len(a['answers'])} "
                             "answers; VQA accuracy needs 10")
    if not questions:
        return [VQAItem(str(a["question_id"]), os.path.join(image_root, f"{a['image_id']}.jpg"),
                        f"{a['question']}\n{SHORT_ANSWER}", tuple(a["answers"])) for a in data["data"]]
    by_key = {(a["image_id"], a["question"].lower()): a for a in data["data"]}
    items = []
    with open(questions) as f:
        for n, line in enumerate(f, 1):
            q = json.loads(line)
            key = (q["question_id"], _question_of(q["text"]))   # LLaVA's file: question_id is the image id
            if key not in by_key:
                raise ValueError(f"{questions}:{n}: no annotation in {annotations} for image {key[0]!r} and "
                                 f"question {key[1]!r}")
            a = by_key[key]
            items.append(VQAItem(str(a["question_id"]), os.path.join(image_root, q["image"]), q["text"],
                                 tuple(a["answers"])))
    return items


def score_textvqa(records: Sequence[dict]) -> dict:
    """{"questions", "accuracy"}: the mean VQA accuracy of the records' "output" against their "answers"."""
    scores = [vqa_accuracy(r["output"], r["answers"]) for r in records]
    return {"questions": len(scores), "accuracy": sum(scores) / max(len(scores), 1)}
