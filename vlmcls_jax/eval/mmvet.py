"""MM-Vet (the study's Table 13): open-ended questions graded by GPT-4, scored per capability, in the public
release's format: mm-vet.json ({"v1_0": {"imagename", "question", "answer", "capability": [...]}, ...}) and
images/IMAGENAME.

Reproduces yuweihao/MM-Vet `mm-vet_evaluator.py` (its grader prompt below is verbatim, lines 15-26):
  - the grader (gpt-4-0613, max_tokens=3) gets the few-shot prompt, a newline, then
    "QUESTION | ANSWER | PREDICTION | " with " <AND> " / " <OR> " spaced in the ground truth;
  - its reply's first space-separated word must be a number in [0, 1]; if not, the question is asked again
    with "\\nPredict the correctness of the answer (digit): " appended, first at temperature 0 and then 0.5
    higher each time, and when 5 replies gave no score the score is 0 (the evaluator's `try_time > 5`; it
    sends a 6th request whose reply it never reads: this port does not send it);
  - the score of a capability is the mean over the questions that need it (x 100); "total" over all.
One grading run (the evaluator's default `--num_run 1`).  The model is asked the question as is (LLaVA-1.5's
llava-mm-vet.jsonl).  The grader is an `api_model.ApiModel` (its reply log makes grading resumable).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

from vlmcls_jax.eval.textvqa import VQAItem

GRADER = "api:openai/gpt-4-0613"   # mm-vet_evaluator.py: --gpt_model default "gpt-4-0613"
GRADER_MAX_TOKENS = 3

PROMPT = """Compare the ground truth and prediction from AI models, to give a correctness score for the prediction. <AND> in the ground truth means it is totally right only when all elements in the ground truth are present in the prediction, and <OR> means it is totally right when any one element in the ground truth is present in the prediction. The correctness score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, or 1.0 (totally right). Just complete the last space of the correctness score.

Question | Ground truth | Prediction | Correctness
--- | --- | --- | ---
What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0
What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme talks about Iceland and Greenland. It's pointing out that despite their names, Iceland is not very icy and Greenland isn't very green. | 0.4
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme is using humor to point out the misleading nature of Iceland's and Greenland's names. Iceland, despite its name, has lush green landscapes while Greenland is mostly covered in ice and snow. The text 'This is why I have trust issues' is a playful way to suggest that these contradictions can lead to distrust or confusion. The humor in this meme is derived from the unexpected contrast between the names of the countries and their actual physical characteristics. | 1.0
"""
DIGIT = "\nPredict the correctness of the answer (digit): "


def read_mmvet(path: str, image_root: str) -> tuple[list[VQAItem], dict[str, list[str]]]:
    """(items with `answers` = (ground truth,), {id: capabilities}).  Errors name the file and entry."""
    import json
    with open(path) as f:
        data = json.load(f)
    items, capabilities = [], {}
    for key, v in data.items():
        missing = {"imagename", "question", "answer", "capability"} - set(v)
        if missing:
            raise ValueError(f"{path}: entry {key!r} lacks {sorted(missing)}")
        items.append(VQAItem(key, os.path.join(image_root, v["imagename"]), v["question"], (v["answer"],)))
        capabilities[key] = list(v["capability"])
    return items, capabilities


def grader_question(question: str, answer: str, prediction: str, digit: bool = False) -> str:
    """The grader's input for one question (`digit`: the retry's version)."""
    row = " | ".join([question, answer.replace("<AND>", " <AND> ").replace("<OR>", " <OR> "), prediction, ""])
    return PROMPT + "\n" + row + (DIGIT if digit else "")


def parse_score(content: str) -> float | None:
    """The grader's score: its reply's first space-separated word as a number in [0, 1], else None."""
    try:
        score = float(content.split(" ")[0].strip())
    except ValueError:
        return None
    return score if 0.0 <= score <= 1.0 else None


def grade(records: Sequence[dict], grader) -> list[dict]:
    """Each record ({"id", "prompt", "answers", "output"}) with "score" and "grader_tries" added.  `grader`: an
    ApiModel (max_tokens 3); questions are sent in parallel, one try at a time."""
    results = {r["id"]: dict(r, score=None, grader_tries=0) for r in records}
    pending = list(results.values())
    temperature = 0.0
    for tries in range(1, 6):
        if not pending:
            break
        # try 1: the plain question at temperature 0; tries 2-5: the digit version at 0, 0.5, 1.0, 1.5
        replies = grader.answer([grader_question(r["prompt"], r["answers"][0], r["output"], digit=tries > 1)
                                 for r in pending], [None] * len(pending), temperature=temperature)
        if tries > 1:
            temperature += 0.5
        still = []
        for r, reply in zip(pending, replies):
            r["grader_tries"] = tries
            r["score"] = parse_score(reply)
            if r["score"] is None:
                still.append(r)
        pending = still
    for r in pending:   # the evaluator sends a 6th request and scores 0 without reading it; we skip sending it
        r["score"] = 0.0
    return [results[r["id"]] for r in records]


def capability_scores(graded: Sequence[dict], capabilities: dict[str, list[str]]) -> dict[str, float]:
    """{capability: mean score of the questions that need it x 100, ..., "total": mean over all x 100}, the
    capabilities in the evaluator's column order (most common first)."""
    counter = Counter(c for r in graded for c in set(capabilities[r["id"]]))
    sums = Counter()
    for r in graded:
        for c in set(capabilities[r["id"]]):
            sums[c] += r["score"]
    out = {c: 100 * sums[c] / n for c, n in counter.most_common()}
    out["total"] = 100 * sum(r["score"] for r in graded) / max(len(graded), 1)
    return out
