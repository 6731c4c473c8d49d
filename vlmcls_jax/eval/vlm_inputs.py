"""The one place evaluations differ by VLM family: how a question becomes a prompt, and how prompts and image
files become the model's inputs.  Everything else (generation, class scoring, features, ImageWikiQA) is
family-blind.

    inputs = VLMInputs.for_model(model, preprocess, prompt_format="llava_hf")
    prompt = inputs.prompt(question, assistant_prefix)
    batch = inputs.encode(tokenizer, prompts, image_paths)
    # {"input_ids", "attention_mask": int32[B, T] (left-padded), "images": the model's image keyword arguments}

Families (`convert.families`, by the model's config type):
  LLaVA-1.5    `<image>` in the prompt expands to `config.num_image_tokens` ids; images: pixel_values
               float32[B, S, S, 3] (CLIP preprocessing, optionally padded to a square first).
  LLaVA-NeXT   each image's own token count (`config.num_image_tokens_for(h, w)`); images: pixel_values
               float32[B, 1 + T, S, S, 3] (AnyRes tiles) and image_index int32[B, N] (`models/llava_next.py`).
  BLIP-2,      `config.num_query_tokens` image ids *before* BOS, no placeholder in the prompt; images:
  InstructBLIP pixel_values float32[B, S, S, 3] (`BlipImageProcessor`: exact resize); InstructBLIP also feeds
               the whole prompt text (`Question: q Answer:`, as the study's processor call does) to its Q-Former
               (qformer_input_ids / qformer_attention_mask, tokenized by the checkpoint's `qformer_tokenizer`).
Prompt formats: `data.prompt_formats.PROMPT_FORMATS` (the study's for each family by default).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from vlmcls_jax.convert.families import FAMILIES, family_of
from vlmcls_jax.data import anyres
from vlmcls_jax.data.preprocess import ClipPreprocessConfig, clip_preprocess, expand_to_square, load_image
from vlmcls_jax.data.prompt_formats import (
    PROMPT_FORMATS,
    TOKENIZE_IMAGE_CHUNKS,
    scoring_prefix,
    study_prediction,
    study_prompt,
)
from vlmcls_jax.data.prompts import tokenize_prompts


def _family(model) -> str:
    """The name of the model's family (`convert.families`): "llava", "llava_next" or "blip2" (InstructBLIP
    included)."""
    family = family_of(model.config)
    if family.kind != "vlm":
        raise TypeError(f"{type(model.config).__name__}: not a VLM config this evaluation knows "
                        f"({sorted(f.config.__name__ for f in FAMILIES if f.kind == 'vlm')})")
    return family.name


@dataclasses.dataclass(frozen=True)
class VLMInputs:
    model: Any
    preprocess: ClipPreprocessConfig
    prompt_format: str = "llava_hf"
    qformer_tokenizer: Any = None          # InstructBLIP's Q-Former (BERT) tokenizer
    length_multiple: int = 1               # prompts are left-padded to a multiple of this (fewer compilations)

    def __post_init__(self):
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format {self.prompt_format!r} is not one of {sorted(PROMPT_FORMATS)}")
        if self.model is None:   # a finished evaluation resumes without a model: nothing left to encode
            return
        if _family(self.model) == "blip2" and self.model.config.instruction_input and self.qformer_tokenizer is None:
            raise ValueError("InstructBLIP needs its Q-Former tokenizer (the checkpoint's qformer_tokenizer/ folder)")

    @property
    def family(self) -> str:
        return _family(self.model)

    @property
    def scoring_prefix(self) -> str:
        """The start of the answer that probabilistic inference scores class names after."""
        return scoring_prefix(self.prompt_format)

    def prompt(self, question: str, assistant_prefix: str = "", chain_of_thought: bool = False) -> str:
        """The prompt for `question`; chain of thought where the study puts it (`prompt_formats.study_prompt`)."""
        return study_prompt(self.prompt_format, question, chain_of_thought, assistant_prefix)

    def prediction(self, prompt: str, generated: str) -> str:
        """The study's prediction text for a generated continuation (`prompt_formats.study_prediction`)."""
        return study_prediction(self.prompt_format, prompt, generated)

    def encode(self, tokenizer, prompts: Sequence[str], images: Sequence[str], *, pad_to_square: bool = False
               ) -> dict:
        """B prompts (from `prompt`) and their B image files -> model inputs (see the module docstring).
        InstructBLIP's Q-Former reads the prompt text too, as `InstructBlipProcessor` gives it."""
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images")
        cfg, family = self.model.config, self.family
        if family == "llava_next":
            if pad_to_square:
                raise ValueError("pad_to_square is LLaVA-1.5's; LLaVA-NeXT tiles the image at its own aspect ratio")
            pixels, sizes = anyres.anyres_batch(list(images), self.preprocess, cfg.image_grid_pinpoints)
            counts = [cfg.num_image_tokens_for(int(h), int(w)) for h, w in sizes]
            batch = tokenize_prompts(tokenizer, list(prompts), counts,
                                     image_chunks=self.prompt_format in TOKENIZE_IMAGE_CHUNKS)
            # The index's length is rounded up like the prompts' (a few compiled shapes, not one per image size).
            n = min(-(-max(counts) // self.length_multiple) * self.length_multiple, cfg.max_num_image_tokens)
            images_in = {"pixel_values": pixels, "image_index": cfg.image_index(sizes, n)}
        else:
            pixels = np.stack([self._pixels(path, pad_to_square) for path in images])
            batch = tokenize_prompts(tokenizer, list(prompts), cfg.num_image_tokens, images_first=family == "blip2",
                                     image_chunks=self.prompt_format in TOKENIZE_IMAGE_CHUNKS)
            images_in = {"pixel_values": pixels}
            if family == "blip2" and cfg.instruction_input:
                q = self.qformer_tokenizer(list(prompts), padding="longest", return_tensors="np")
                images_in.update(qformer_input_ids=q["input_ids"].astype(np.int32),
                                 qformer_attention_mask=q["attention_mask"].astype(np.int32))
        length = -(-batch["input_ids"].shape[1] // self.length_multiple) * self.length_multiple
        extra = length - batch["input_ids"].shape[1]
        return {"input_ids": np.pad(batch["input_ids"], ((0, 0), (extra, 0)), constant_values=tokenizer.pad_token_id),
                "attention_mask": np.pad(batch["attention_mask"], ((0, 0), (extra, 0))), "images": images_in}

    def _pixels(self, path: str, pad_to_square: bool) -> np.ndarray:
        image = load_image(path)
        if pad_to_square:
            image = expand_to_square(image, self.preprocess.pad_color)
        return clip_preprocess(image, self.preprocess)

    def with_length_multiple(self, n: int) -> VLMInputs:
        return dataclasses.replace(self, length_multiple=n)


# The study's prompt format for each family's checkpoints (`prompt_formats.CHECKPOINT_FORMATS`), for
# `prompt_format="auto"`: by config.json's (model_type, text_config.model_type), from the families' records.
AUTO_FORMATS: dict[tuple[str, str | None], str] = {k: v for f in FAMILIES for k, v in f.prompt_formats.items()}


def auto_prompt_format(hf_config: dict) -> str:
    """The documented prompt format for a checkpoint's config.json (as a dict)."""
    kind, text = hf_config.get("model_type"), (hf_config.get("text_config") or {}).get("model_type")
    for key in ((kind, text), (kind, None)):
        if key in AUTO_FORMATS:
            return AUTO_FORMATS[key]
    raise ValueError(f"no default prompt format for model_type {kind!r} (text {text!r}); set "
                     f"config.model.prompt_format to one of {sorted(PROMPT_FORMATS)}")



def as_inputs(model, preprocess: ClipPreprocessConfig | VLMInputs) -> VLMInputs:
    """What the evaluations accept as `preprocess`: a `VLMInputs` (any family; `eval.loading` builds it), or a
    bare `ClipPreprocessConfig` for a LLaVA-1.5 model in llava-hf's format."""
    return preprocess if isinstance(preprocess, VLMInputs) else VLMInputs(model, preprocess)
