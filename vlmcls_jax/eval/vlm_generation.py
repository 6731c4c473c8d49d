"""VLM classification by generation (the study's Table 1 and Table 2 top): ask, decode greedily, check the
answer for the class name.

As the study (main_results/main.py): the prompt in the family's format with chain of thought where the study
puts it (`prompt_formats.study_prompt`), at most 64 new tokens (512 with chain of thought; main.py:146), the
prediction cut from the decoded text at the format's answer marker (`prompt_formats.study_prediction`,
main.py:151-156), scored by the class name's case-insensitive occurrence in it.  Fine-tuned LLaVA models are
scored as the study scores them (training_analysis/llava/eval_classification.ipynb) with `headline="exact"`:
`label.lower() == pred.lower()`.

Every output is appended to a JSONL file as soon as its batch finishes; an interrupted evaluation
re-run on the same file skips the examples already there (a half-written last line is discarded and
redone), so the summary always covers each example exactly once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from vlmcls_jax.data.preprocess import ClipPreprocessConfig
from vlmcls_jax.data.prompts import WORDINGS, closed_world_question
from vlmcls_jax.eval.candidates import candidate_set, choice_order
from vlmcls_jax.eval.metrics import exact_match, study_exact_match, substring_match, unparenthesized_substring_match
from vlmcls_jax.eval.resumable import run_resumable
from vlmcls_jax.eval.vlm_inputs import VLMInputs, as_inputs
from vlmcls_jax.inference import generate


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    wording: str = "default"            # a key of prompts.WORDINGS
    closed_world: bool = False          # append ` Choose one from "...".`
    choice_seed: int | None = 0         # shuffle the choices per image by this seed; None: dataset order
    label_set_size: int | None = None   # closed world over the true class + k - 1 random others
    label_set_seed: int = 0
    # The study's sampler (`candidates.study_plan`): example id -> its choices in prompt order; when given it
    # replaces label_set_size / choice_seed
    choices: Mapping[str, tuple[str, ...]] | None = None
    chain_of_thought: bool = False      # "Let's think step by step." where the study puts it (study_prompt)
    max_new_tokens: int | None = None   # None: the study's, 64 (512 with chain of thought; main.py:146)
    # The row's headline: "substring" (main_results: label in pred), "exact" (the study's fine-tuned LLaVA
    # evaluation, eval_classification.ipynb: label.lower() == pred.lower()) or "unparenthesized" (its fine-tuned
    # BLIP-2 evaluation, blip/eval.ipynb: the label without "(" ")" in pred)
    headline: str = "substring"
    batch_size: int = 8
    length_multiple: int = 64           # prompts are left-padded to a multiple of this (few compilations)
    # The study ran llava-hf's processor (main_results/main.py), which resizes and crops without padding;
    # True pads to a square first, as LLaVA-1.5's own code does (image_aspect_ratio="pad").
    pad_to_square: bool = False

    @property
    def label(self) -> str:
        """The progress bar's name: "open-world generation", "closed-world generation, 5 labels", ..."""
        return ("closed" if self.closed_world else "open") + "-world generation" + \
            (f", {self.label_set_size} labels" if self.label_set_size else "") + \
            (f", wording {self.wording}" if self.wording != "default" else "") + \
            (", chain of thought" if self.chain_of_thought else "")

    def __post_init__(self):
        if self.wording not in WORDINGS:
            raise ValueError(f"wording {self.wording!r} is not one of {sorted(WORDINGS)}")
        if self.headline not in HEADLINES:
            raise ValueError(f"headline {self.headline!r} is not one of {sorted(HEADLINES)}")
        if self.max_new_tokens is None:
            object.__setattr__(self, "max_new_tokens", study_max_new_tokens(self.chain_of_thought))


# headline -> the summary field a table shows
HEADLINES = {"substring": "substring_accuracy", "exact": "study_exact_accuracy",
             "unparenthesized": "unparenthesized_substring_accuracy"}


def study_max_new_tokens(chain_of_thought: bool) -> int:
    """main_results/main.py:146: `max_new_tokens=64 if not chain_of_thought else 512`."""
    return 512 if chain_of_thought else 64


def question_for(example, class_names: Sequence[str], s: GenerationSettings) -> str:
    """The question text for one example (its choices, when closed world, in its own order)."""
    question = WORDINGS[s.wording]
    if not s.closed_world:
        return question
    if s.choices is not None:
        return closed_world_question(question, list(s.choices[example.id]))
    indices = list(range(len(class_names))) if s.label_set_size is None else \
        candidate_set(example.label, len(class_names), s.label_set_size, s.label_set_seed, example.id)
    order = choice_order(len(indices), s.choice_seed, example.id)
    names = list(dict.fromkeys(class_names[indices[i]] for i in order))   # a repeated name is listed once
    return closed_world_question(question, names)


def evaluate_generation(model, tokenizer, examples: Sequence, class_names: Sequence[str], out_path: str,
                        settings: GenerationSettings = GenerationSettings(),
                        preprocess: ClipPreprocessConfig | VLMInputs = ClipPreprocessConfig(),
                        shard: tuple[int, int] | None = None, mesh=None) -> dict:
    """Classifies `examples` (objects with .id, .image (path), .label (index), .label_name) by generation.
    preprocess: the model family's prompt format and input encoding (`VLMInputs`), or a LLaVA-1.5 model's
    image preprocessing.

    This process takes its share of the examples (`shards`; default: by JAX process), appends one record
    per example to its part of `out_path`, and returns the summary over every part:
    {"examples", "missing" (examples no part has yet), "substring_accuracy" (the study's main_results rule),
     "study_exact_accuracy" (the study's fine-tuned LLaVA rule), "unparenthesized_substring_accuracy" (its
     fine-tuned BLIP-2 rule), "exact_accuracy" (ours: whole answer = name
     after `metrics.normalise`), "headline" (the field tables show, by `settings.headline`)}.
    mesh: split each batch over the mesh's batch axes (the model placed on it, `sharding.shard_model`)."""
    s, inputs = settings, as_inputs(model, preprocess)

    def answer(chunk):
        prompts = [inputs.prompt(question_for(e, class_names, s), chain_of_thought=s.chain_of_thought)
                   for e in chunk]
        outputs = answer_batch(model, tokenizer, prompts, [e.image for e in chunk], inputs, s, mesh)
        return [generation_record(e, prompt, output, inputs.prediction(prompt, output))
                for e, prompt, output in zip(chunk, prompts, outputs)]

    run = run_resumable(examples, out_path, s.batch_size, answer, shard, desc=s.label, unit="img")
    wanted, missing = run.records, run.missing
    n = len(wanted)
    stale = [r["id"] for r in wanted if "unparenthesized_substring_match" not in r]
    if stale:
        raise ValueError(f"{out_path}: {len(stale)} records (e.g. {stale[0]!r}) were written by an older version "
                         "without the study's prediction field 'pred'; delete the file to rerun them")
    mean = lambda key: sum(r[key] for r in wanted) / max(n, 1)
    return {"examples": n, "missing": missing, "substring_accuracy": mean("substring_match"),
            "study_exact_accuracy": mean("study_exact_match"), "exact_accuracy": mean("exact_match"),
            "unparenthesized_substring_accuracy": mean("unparenthesized_substring_match"),
            "headline": HEADLINES[s.headline]}


def generation_record(e, prompt: str, output: str, pred: str) -> dict:
    """The JSONL record of one example answered with `output` (`pred`: the study's prediction cut from it)."""
    return {"id": e.id, "label": int(e.label), "label_name": e.label_name, "prompt": prompt,
            "output": output, "pred": pred, "substring_match": substring_match(pred, e.label_name),
            "study_exact_match": study_exact_match(pred, e.label_name),
            "unparenthesized_substring_match": unparenthesized_substring_match(pred, e.label_name),
            "exact_match": exact_match(output, e.label_name)}


def answer_batch(model, tokenizer, prompts: Sequence[str], images: Sequence[str],
                 preprocess: ClipPreprocessConfig | VLMInputs, settings, mesh=None) -> list[str]:
    """Greedy answers (decoded text) to prompts (`VLMInputs.prompt`) with one image each.  Prompts are
    left-padded to a multiple of `settings.length_multiple` so few shapes compile; `settings` also gives
    max_new_tokens and pad_to_square.  An API model (`eval.api_model`) answers with its vendor's settings."""
    if getattr(model, "is_api_model", False):
        return model.answer(prompts, images)
    inputs = as_inputs(model, preprocess).with_length_multiple(settings.length_multiple)
    batch = inputs.encode(tokenizer, list(prompts), list(images), pad_to_square=settings.pad_to_square)
    tokens = generate(model, batch["input_ids"], batch["attention_mask"], batch["images"],
                      max_new_tokens=settings.max_new_tokens, mesh=mesh)
    return tokenizer.batch_decode(tokens, skip_special_tokens=True)
