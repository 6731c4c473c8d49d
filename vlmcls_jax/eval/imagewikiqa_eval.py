"""ImageWikiQA by generation (the study's Table 5): ask each multiple-choice question with its image, decode
greedily, parse the chosen letter with MMMU's rules (`answer_parser`), and score it against the label.

Reproduces `imagewikiqa/main.py` (prompt, chain of thought, 1024 new tokens) and `imagewikiqa/eval.ipynb`
(parsing, accuracy) of yuhui-zh15/VLMClassifier; see `answer_parser` for the details.  Two protocols:

  "main"       imagewikiqa/main.py:54-86: the family's prompt with chain of thought where the study puts it
               (`prompt_formats.study_prompt`: after the assistant tag for LLaVA, `Question: {q} Let's think step
               by step. Answer:` for BLIP-2 / InstructBLIP), and the text parsed is the study's prediction
               (`prompt_formats.study_prediction`: "Let's think step by step. <generated>" for LLaVA, the
               generation after its last "Answer:" for BLIP)
  "model_vqa"  the study's fine-tuned LLaVA row: training_analysis/llava/model_vqa.py with its ImageWikiQA lines
               enabled (:76-77), i.e. `{VICUNA_V1_SYSTEM} USER: <image>\n{text} ASSISTANT:ASSISTANT: Let's think
               step by step. ` (`prompt_formats.model_vqa_prompt`), LLaVA's tokenization (prompt format
               "llava_v1"), pad-to-square, and the generated text alone parsed (model_vqa.py:105-107); the
               corrected variant is protocol "main" with prompt format "llava_v1" (one `ASSISTANT:`)

Differences: the random
fallback draws from an RNG seeded per question from (settings.seed, question id), not from one global stream,
so a result does not depend on batch order or sharding; and questions whose image is missing on disk are
not run but recorded as wrong (`image_missing: true`), so they stay in the accuracy's denominator.

Output and resuming work as in `vlm_generation`: one JSONL record per question, appended as each batch
finishes; a re-run on the same file skips the questions already there (a half-written last line is redone);
process shares write their own part files and the summary reads them all. A record made while the image was
missing stays when the image appears later: delete the output (or those lines) to run them.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections import Counter
from collections.abc import Sequence

from vlmcls_jax.data.preprocess import ClipPreprocessConfig
from vlmcls_jax.data.prompt_formats import model_vqa_prompt
from vlmcls_jax.eval.answer_parser import ASSISTANT_PREFIX, HOWS, MAX_NEW_TOKENS, STUDY_SEED, parse_choice
from vlmcls_jax.eval.resumable import run_resumable
from vlmcls_jax.eval.vlm_generation import answer_batch
from vlmcls_jax.eval.vlm_inputs import VLMInputs, as_inputs


@dataclasses.dataclass(frozen=True)
class ImageWikiQASettings:
    chain_of_thought: bool = True       # "Let's think step by step." where the study puts it, and parsed with it
    protocol: str = "main"              # "main" or "model_vqa" (see the module docstring)
    max_new_tokens: int = MAX_NEW_TOKENS
    seed: int = STUDY_SEED              # the random fallback's RNG: seeded from (seed, question id)
    batch_size: int = 8
    length_multiple: int = 64           # prompts are left-padded to a multiple of this (few compilations)
    pad_to_square: bool = False         # the study ran llava-hf's processor, which does not pad (model_vqa: pads)
    # True: parse the reply alone (API models: the chain-of-thought sentence was in the question, and the
    # study's eval.ipynb parsed item["output"], the reply); False: the assistant turn (prefix + generation)
    reply_only: bool = False

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r} is not one of {PROTOCOLS}")


PROTOCOLS = ("main", "model_vqa")


def question_rng(seed: int, question_id) -> random.Random:
    """The random fallback's RNG for one question (string seeds are hashed stably across runs)."""
    return random.Random(f"imagewikiqa/{seed}/{question_id}")


def question_prompt(question, inputs: VLMInputs, settings: ImageWikiQASettings) -> str:
    """The prompt for one question under `settings.protocol`."""
    if settings.protocol == "model_vqa":
        return model_vqa_prompt(question.text, ASSISTANT_PREFIX if settings.chain_of_thought else None)
    return inputs.prompt(question.text, chain_of_thought=settings.chain_of_thought)


def response_text(prompt: str, output: str, inputs: VLMInputs, settings: ImageWikiQASettings) -> str:
    """The text the study parses for a generated `output` under `settings.protocol`."""
    if settings.protocol == "model_vqa" or settings.reply_only:
        return output.strip()
    return inputs.prediction(prompt, output)


def score_output(question, output: str, response: str, settings: ImageWikiQASettings) -> dict:
    """The record of one question answered with `output` (the generated text), parsing `response`."""
    letter, how = parse_choice(response, question.options, question_rng(settings.seed, question.id))
    return {"id": question.id, "classname": question.classname, "label": question.label, "output": output,
            "response": response, "parsed": letter, "how": how, "correct": letter == question.label,
            "image_missing": False}


def _missing_record(question) -> dict:
    return {"id": question.id, "classname": question.classname, "label": question.label, "output": None,
            "response": None, "parsed": None, "how": None, "correct": False, "image_missing": True}


def evaluate_imagewikiqa(model, tokenizer, questions: Sequence, out_path: str,
                         settings: ImageWikiQASettings = ImageWikiQASettings(),
                         preprocess: ClipPreprocessConfig | VLMInputs = ClipPreprocessConfig(),
                         shard: tuple[int, int] | None = None, mesh=None) -> dict:
    """Answers `questions` (`data.imagewikiqa.ImageWikiQAQuestion`s) by generation and scores them.

    This process takes its share of the questions (`shards`; default: by JAX process), appends one record per
    question to its part of `out_path`, and returns the summary over every part:
    {"questions" (with records), "missing" (questions no part has yet), "missing_images" (recorded as wrong),
     "accuracy", "parsed_by": {how: count}, "per_class": {classname: [correct, total]}}.
    mesh: split each batch over the mesh's batch axes (the model placed on it, `sharding.shard_model`)."""
    s, inputs = settings, as_inputs(model, preprocess)
    if s.protocol == "model_vqa" and model is not None and inputs.prompt_format != "llava_v1":
        raise ValueError(f"protocol 'model_vqa' is LLaVA's own code path: it needs prompt format 'llava_v1' "
                         f"(LLaVA's tokenization), not {inputs.prompt_format!r}")

    def answer(chunk):
        prompts = [question_prompt(q, inputs, s) for q in chunk]
        outputs = answer_batch(model, tokenizer, prompts, [q.image for q in chunk], inputs, s, mesh)
        return [score_output(q, output, response_text(prompt, output, inputs, s), s)
                for q, prompt, output in zip(chunk, prompts, outputs)]

    run = run_resumable(questions, out_path, s.batch_size, answer, shard, desc="ImageWikiQA eval", unit="q",
                        direct=lambda q: None if os.path.isfile(q.image) else _missing_record(q))
    records, missing = run.records, run.missing
    return summarize(records, missing)


def summarize(records: Sequence[dict], missing: int = 0) -> dict:
    """The summary of a list of records (see `evaluate_imagewikiqa`)."""
    n = len(records)
    hows = Counter(r["how"] for r in records if not r["image_missing"])
    per_class: dict[str, list[int]] = {}
    for r in records:
        tally = per_class.setdefault(r["classname"], [0, 0])
        tally[0] += bool(r["correct"])
        tally[1] += 1
    return {"questions": n, "missing": missing,
            "missing_images": sum(bool(r["image_missing"]) for r in records),
            "accuracy": sum(bool(r["correct"]) for r in records) / max(n, 1),
            "parsed_by": {how: hows[how] for how in HOWS},
            "per_class": dict(sorted(per_class.items()))}
