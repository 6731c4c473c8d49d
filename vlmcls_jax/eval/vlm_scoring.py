"""VLM classification by probabilistic inference (the study's Table 2 bottom): the log-likelihood of every
class name after `USER: <image>\\n{question}\\nASSISTANT: The photo features a` (LLaVA-1.5; other families:
their own format and answer start, `eval.vlm_inputs`), the prompt prefilled once per image and all names
scored against its cache (`inference.score_candidates`).

Three decision rules, as in the study:
  sum   sum of the name's token log-probs
  avg   the sum divided by the name's token count
  cfg   alpha * sum + (1 - alpha) * (that name's sum averaged over the evaluated images): with alpha > 1
        it subtracts each name's prior, classifier-free-guidance style.  This is the study's calibration
        (VLMClassifier `inference_analysis/get_accuracy.ipynb`, which sweeps alpha = 0..8 and prints each;
        alpha = 1 is `sum`, alpha = 0 ignores the image).  `cfg_alpha` picks the reported alpha and
        `cfg_sweep` holds the accuracy at every alpha of `cfg_sweep_alphas`.
A prediction counts as correct when the predicted name equals the true name, so a name that appears
twice in a class list (CLIP's ImageNet list repeats "missile" and "sunglasses") is right for both indices.

Class names are tokenised as they follow the prompt (`name_tokens="context"`, ours); `"study"` takes the
study's ids instead (each name tokenised alone), read for BLIP-2 / InstructBLIP at the in-context positions
as the study's code does (`StudyReadout`; benchmarks/study_readout.py measures the difference).

Per-image sums go to a JSONL file as each batch finishes; a rerun skips images already there.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from flax import nnx

from vlmcls_jax.data.preprocess import ClipPreprocessConfig
from vlmcls_jax.data.prompts import QUESTION_WORDINGS, SCORING_PREFIX
from vlmcls_jax.eval.candidates import candidate_set, names_to_mask
from vlmcls_jax.eval.metrics import mean_per_class_recall
from vlmcls_jax.eval.resumable import run_resumable
from vlmcls_jax.eval.vlm_inputs import VLMInputs, as_inputs
from vlmcls_jax.inference import score_candidates
from vlmcls_jax.inference.generate import image_inputs
from vlmcls_jax.sharding import put_batch

NAME_TOKENS = ("context", "study")


@dataclasses.dataclass(frozen=True)
class ScoringSettings:
    wording: str = "default"
    prefix: str = SCORING_PREFIX
    batch_size: int = 1            # images per prefill
    chunk_size: int = 1024         # candidate token positions per compiled call (`score_candidates`)
    cfg_alpha: float = 2.0
    cfg_sweep_alphas: tuple[float, ...] = tuple(range(9))
    label_set_size: int | None = None   # decide among the true class + k - 1 random others (Figure 2)
    label_set_seed: int = 0
    # The study's sampler (`candidates.study_plan`): example id -> its candidate names; replaces
    # label_set_size / label_set_seed when given
    choices: Mapping[str, tuple[str, ...]] | None = None
    store_token_logprobs: bool = False
    # "context": each name tokenised as it follows the prompt (ids and positions agree; the default for new
    # work).  "study": the study's ids, the name tokenised alone (`study_name_tokens`); for BLIP-2 /
    # InstructBLIP read at the in-context positions as the study did (`StudyReadout`, a study bug that its
    # BLIP-2 Sum / Avg / CFG rows come from); avg divides by the alone count, as the study's len(probs).
    name_tokens: str = "context"
    length_multiple: int = 64      # prompts are left-padded to a multiple of this (LLaVA-NeXT: few compilations)
    # The study ran llava-hf's processor (main_results/main.py), which resizes and crops without padding;
    # True pads to a square first, as LLaVA-1.5's own code does (image_aspect_ratio="pad").
    pad_to_square: bool = False


def class_name_tokens(tokenizer, prompt: str, names: Sequence[str]) -> list[list[int]]:
    """Each name's ids as they come after `prompt` in context (not tokenised alone: a leading space and
    merges across the boundary change the ids)."""
    n = len(tokenizer(prompt)["input_ids"])
    out = []
    for name in names:
        ids = tokenizer(f"{prompt} {name}")["input_ids"]
        if ids[:n] != tokenizer(prompt)["input_ids"]:
            raise ValueError(f"class name {name!r} changes the tokens of the prompt it follows")
        out.append(ids[n:])
    return out


def study_name_tokens(tokenizer, names: Sequence[str]) -> list[list[int]]:
    """Each name's ids as the study takes them: the name tokenised *alone*, its first id dropped
    (inference_analysis/main.py:48-49 `processor(text=classname)` ... `input_ids[0, 1:]` and :91
    `processor(text=classname)["input_ids"][1:]`, the dropped id being the tokenizer's BOS).  Under GPT-2's
    BPE (BLIP-2's OPT) a word alone has no leading space, so these are not the ids that follow the prompt."""
    out = [list(tokenizer(name)["input_ids"][1:]) for name in names]
    empty = [n for n, ids in zip(names, out) if not ids]
    if empty:
        raise ValueError(f"class names {empty[:3]} have no tokens once the first id is dropped")
    return out


@functools.partial(jax.jit, static_argnames=("graphdef", "depth"))
def _prompt_tail_logp(graphdef, state, input_ids, attention_mask, images: dict, *, depth: int):
    """log-softmax at the prompts' last depth + 1 positions: float32[B, depth + 1, V] (left-padded prompts,
    so index depth is the last real token)."""
    model = nnx.merge(graphdef, state)
    hidden = model.decode(input_ids, attention_mask=attention_mask, **images).hidden
    return jax.nn.log_softmax(model.logits(hidden[:, -depth - 1:]), axis=-1)


class StudyReadout:
    """The study's BLIP-2 / InstructBLIP read-out (its `"blip" in model_id` branch, `process_image_raw`,
    inference_analysis/main.py:83-103):

        inputs = processor(text=f"{prompt} {classname}", images=image, return_tensors="pt")
        logits = model(**inputs).logits
        class_ids = torch.tensor(processor(text=classname)["input_ids"][1:])
        selected_logits = logits[0, -len(class_ids) - 1 : -1, :]
        log_prob = torch.gather(log_softmax(selected_logits), 1, class_ids.unsqueeze(1))

    The sequence is the name in context (m ids), but the ids read are the name alone (L ids), at the last L
    positions before the end: id j is read where in-context token k = m - L + j is predicted.  Read at k >= 0:
    log p(alone_j | prompt, context_<k), which is candidate `context[:k] + [alone_j]`'s last token (scored
    with the shared-prefix scorer, so no sequence is recomputed per class); at k < 0 (the name alone is
    longer) the position lies inside the prompt, |k| tokens before its last one (one extra prompt forward).
    """

    def __init__(self, context: list[list[int]], alone: list[list[int]]):
        self.lengths = np.array([len(a) for a in alone])
        self.virtual: list[list[int]] = []
        index: dict[tuple, int] = {}
        self.reads = []                       # per class: [(kind, where, id)], kind "cand" or "prompt"
        for ctx, ids in zip(context, alone):
            reads = []
            for j, token in enumerate(ids):
                k = len(ctx) - len(ids) + j
                if k >= 0:
                    key = tuple(ctx[:k]) + (token,)
                    if key not in index:
                        index[key] = len(self.virtual)
                        self.virtual.append(list(key))
                    reads.append(("cand", index[key], token))
                else:
                    reads.append(("prompt", -k, token))
            self.reads.append(reads)
        self.depth = max([w for r in self.reads for kind, w, _ in r if kind == "prompt"], default=0)

    def score(self, model, batch: dict, chunk_size: int, mesh=None) -> np.ndarray:
        """-> per-token log-probs float32[B, C, max L] (0 past each name's end)."""
        _, _, per_token = score_candidates(model, batch["input_ids"], batch["attention_mask"], self.virtual,
                                           batch["images"], chunk_size=chunk_size, token_logprobs=True, mesh=mesh)
        last = per_token[:, np.arange(len(self.virtual)), [len(v) - 1 for v in self.virtual]]   # [B, Cv]
        tail = None
        if self.depth:
            graphdef, state = nnx.split(model)
            images = image_inputs(batch["images"])
            ids, mask, *values = put_batch((np.asarray(batch["input_ids"], np.int32),
                                            np.asarray(batch["attention_mask"], np.int32), *images.values()), mesh)
            if np.asarray(batch["attention_mask"]).sum(1).min() <= self.depth:
                raise ValueError(f"a class name alone is {self.depth} tokens longer than in context, more than "
                                 f"the prompt holds")
            tail = np.asarray(_prompt_tail_logp(graphdef, state, ids, mask, dict(zip(images, values)),
                                                depth=self.depth))                          # [B, depth+1, V]
        out = np.zeros((last.shape[0], len(self.reads), int(self.lengths.max())), np.float32)
        for c, reads in enumerate(self.reads):
            for j, (kind, where, token) in enumerate(reads):
                out[:, c, j] = last[:, where] if kind == "cand" else tail[:, self.depth - where, token]
        return out


def evaluate_scoring(model, tokenizer, examples: Sequence, class_names: Sequence[str], out_path: str,
                     settings: ScoringSettings = ScoringSettings(),
                     preprocess: ClipPreprocessConfig | VLMInputs = ClipPreprocessConfig(),
                     shard: tuple[int, int] | None = None, mesh=None) -> dict:
    """Scores every class name for every example (.id, .image, .label, .label_name) of this process's share
    (see `shards`); appends per-image sums to its part of `out_path`; returns top-1 accuracy and mean
    per-class recall for each rule over all parts, and "missing" (examples no part has yet)."""
    s, inputs = settings, as_inputs(model, preprocess).with_length_multiple(settings.length_multiple)
    prompt = inputs.prompt(QUESTION_WORDINGS[s.wording], s.prefix)
    if s.name_tokens not in NAME_TOKENS:
        raise ValueError(f"name_tokens={s.name_tokens!r} is not one of {NAME_TOKENS}")
    candidates = class_name_tokens(tokenizer, prompt, class_names)
    readout = None
    if s.name_tokens == "study":
        alone = study_name_tokens(tokenizer, class_names)
        if inputs.family == "blip2":          # the study's "blip" branch: ids alone, positions in context
            readout = StudyReadout(candidates, alone)
        else:                                 # its LLaVA branch feeds the ids alone (main.py:48-67)
            candidates = alone
    lengths = readout.lengths if readout is not None else np.array([len(c) for c in candidates])

    def score(chunk):
        batch = inputs.encode(tokenizer, [prompt] * len(chunk), [e.image for e in chunk],
                              pad_to_square=s.pad_to_square)
        if readout is not None:
            per_token = readout.score(model, batch, s.chunk_size, mesh)
            sums = per_token.sum(-1)
        else:
            sums, _, per_token = score_candidates(model, batch["input_ids"], batch["attention_mask"],
                                                  candidates, batch["images"], chunk_size=s.chunk_size,
                                                  token_logprobs=True, mesh=mesh)
        records = []
        for i, e in enumerate(chunk):
            record = {"id": e.id, "label": int(e.label), "label_name": e.label_name,
                      "sum": [round(float(x), 6) for x in sums[i]]}
            if s.store_token_logprobs:
                record["token_logprobs"] = [[round(float(x), 6) for x in row[:n]]
                                            for row, n in zip(per_token[i], lengths)]
            records.append(record)
        return records

    run = run_resumable(examples, out_path, s.batch_size, score, shard, desc="scoring eval", unit="img")
    records, missing = run.records, run.missing
    return dict(summarize(records, class_names, lengths, s.cfg_alpha, s.label_set_size, s.label_set_seed,
                          s.cfg_sweep_alphas, s.choices), missing=missing)


def summarize(records: list[dict], class_names: Sequence[str], lengths: np.ndarray, cfg_alpha: float,
              label_set_size: int | None = None, label_set_seed: int = 0,
              cfg_sweep_alphas: Sequence[float] = (),
              choices: Mapping[str, tuple[str, ...]] | None = None) -> dict:
    """Top-1 and top-5 accuracy and mean per-class recall of the sum, avg and cfg rules, plus the cfg
    top-1 accuracy at every alpha of `cfg_sweep_alphas` (key "cfg_sweep": {alpha: accuracy}).  With
    `label_set_size` each example decides among its candidate set only (`candidates.candidate_set`, the
    sets CLIP and generation get; `choices`: the study sampler's lists, by example id).  records: {"id", "label", "label_name", "sum": float[C]};
    lengths: int[C] token counts of the names."""
    sums = np.array([r["sum"] for r in records], np.float64).reshape(len(records), len(class_names))  # [N, C]
    prior = sums.mean(0, keepdims=True) if len(records) else np.zeros((1, len(class_names)))
    cfg = lambda alpha: alpha * sums + (1 - alpha) * prior
    rules = {"sum": sums, "avg": sums / lengths[None], "cfg": cfg(cfg_alpha)}
    sweep = {float(a): cfg(a) for a in cfg_sweep_alphas}
    if choices is not None:
        allowed = names_to_mask(choices, [r["id"] for r in records], class_names)
    elif label_set_size is not None:
        allowed = np.zeros_like(sums, dtype=bool)
        for i, r in enumerate(records):
            allowed[i, candidate_set(r["label"], len(class_names), label_set_size, label_set_seed, r["id"])] = True
    if choices is not None or label_set_size is not None:
        mask = lambda scores: np.where(allowed, scores, -np.inf)
        rules = {k: mask(v) for k, v in rules.items()}
        sweep = {k: mask(v) for k, v in sweep.items()}
    name_index = {n: i for i, n in reversed(list(enumerate(class_names)))}   # first index of each name
    true_idx = np.array([name_index[r["label_name"]] for r in records], int)
    first = np.array([name_index[n] for n in class_names])                  # class index -> its name's first

    def top(scores, k):   # [N, k] predicted classes (a repeated name mapped to its first index)
        return first[np.argsort(-scores, axis=1, kind="stable")[:, :k]].reshape(len(records), -1)

    out = {"examples": len(records)}
    for rule, scores in rules.items():
        top5 = top(scores, 5)
        out[f"{rule}_accuracy"] = float(np.mean(top5[:, 0] == true_idx)) if len(records) else 0.0
        out[f"{rule}_top5_accuracy"] = float(np.mean((top5 == true_idx[:, None]).any(1))) if len(records) else 0.0
        out[f"{rule}_mean_per_class_recall"] = mean_per_class_recall(top5[:, 0], true_idx, len(class_names))
    out["cfg_sweep"] = {str(a): float(np.mean(top(v, 1)[:, 0] == true_idx)) if len(records) else 0.0
                        for a, v in sweep.items()}
    return out
