"""The model families this package ports, one record each: everything the converters, the evaluation and the
training jobs decide by family is read from here, so a family is added in one place.

    family = family_of(model.config)        # by our config's type (exactly: LlavaNextConfig is not LlavaConfig)
    family = for_model_type("mistral")      # by a transformers config.json's model_type
    family.kind                             # "vlm", "clip" or "lm"
    family.model(cfg, rngs=...)             # our Flax model for a config of this family

Adding a family (README "Adding a model family"): its config dataclass and model in `models/`, its config
translators in `convert/hf_config.py` (or its own reader, as open_clip's in `convert/openclip.py`), then one
`Family` record in `FAMILIES` below.  `tests/test_families.py` checks that every model in `models/` has a record
and that each record's config survives the trip through its translators.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from flax import nnx

from vlmcls_jax.convert import hf_config, openclip
from vlmcls_jax.models.blip2 import Blip2Config, Blip2ForConditionalGeneration
from vlmcls_jax.models.clip import CLIPConfig, CLIPModel
from vlmcls_jax.models.eva_clip import EvaCLIPConfig, EvaCLIPModel
from vlmcls_jax.models.llama import LlamaConfig, LlamaForCausalLM
from vlmcls_jax.models.llava import LlavaConfig, LlavaForConditionalGeneration
from vlmcls_jax.models.llava_next import LlavaNextConfig, LlavaNextForConditionalGeneration
from vlmcls_jax.models.opt import OPTConfig, OPTForCausalLM

KINDS = ("vlm", "clip", "lm")


def _trainable(cfg) -> str | None:
    return None


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family.

    name: short id (`VLMInputs.family`, the evaluation tables' family keys); title: its name in messages.
    kind: "vlm" (image + prompt -> text: the eval, probe and ImageWikiQA jobs), "clip" (two towers: zero-shot
    and CLIP probes) or "lm" (a bare decoder; also a VLM's `text_config`).
    config / model: our config dataclass and the Flax model built from it (`model(cfg, rngs=...)`).
    model_types: the `model_type`s of transformers' config.json read as this family (empty: not a transformers
    checkpoint; EVA-CLIP is read from open_clip's files).
    from_hf / to_hf: transformers config object -> our config (with dtype, param_dtype) and back; None where
    there is no transformers format.
    key_renames: (pattern, replacement) rules taking other layouts of a checkpoint's keys to the
    transformers-5 layout our parameter names map to (`convert.hf.hf_key`); read_tensors: a whole-stream
    adapter for checkpoints whose keys need more than renames (open_clip's fused in_proj).
    prompt_formats: (config.json model_type, its text_config's model_type or None for any) -> the study's prompt
    format for such a checkpoint (`data.prompt_formats`), for `prompt_format="auto"`.
    training_refusal: config -> why the train job refuses it (None: it trains)."""

    name: str
    title: str
    kind: str
    config: type
    model: type[nnx.Module]
    model_types: tuple[str, ...] = ()
    from_hf: Callable[..., Any] | None = None
    to_hf: Callable[[Any], Any] | None = None
    key_renames: tuple[tuple[re.Pattern, str], ...] = ()
    read_tensors: Callable[[Iterable[tuple[str, str, Any]]], Iterator[tuple[str, str, Any]]] | None = None
    prompt_formats: Mapping[tuple[str, str | None], str] = dataclasses.field(default_factory=dict)
    training_refusal: Callable[[Any], str | None] = _trainable

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"family {self.name}: kind {self.kind!r} is not one of {KINDS}")
        if (self.from_hf is None) != (not self.model_types):
            raise ValueError(f"family {self.name}: model_types and from_hf go together")

    def canonical_key(self, key: str) -> str:
        """A checkpoint key in any layout this family accepts -> the transformers-5 layout."""
        for pattern, replacement in self.key_renames:
            key = pattern.sub(replacement, key)
        return key


# Key prefixes of other layouts of LLaVA's weights -> the transformers-5 file layout we use.
_LLAVA_KEY_RENAMES = tuple((re.compile(p), r) for p, r in (
    (r"^model\.vision_tower\.(vision_model\.)?", "vision_tower."),       # in-memory names
    (r"^model\.multi_modal_projector\.", "multi_modal_projector."),
    (r"^model\.image_newline$", "image_newline"),                        # LLaVA-NeXT
    (r"^model\.language_model\.", "language_model.model."),
    (r"^lm_head\.", "language_model.lm_head."),
    (r"^vision_tower\.vision_model\.", "vision_tower."),                 # transformers-4 hub files
))


def _blip2_training(cfg: Blip2Config) -> str | None:
    if cfg.instruction_input:
        return ("InstructBLIP training is not supported yet (its Q-Former reads the instruction, which the "
                "training batches do not carry); BLIP-2 is")
    return None


LLAVA = Family(
    "llava", "LLaVA-1.5", "vlm", LlavaConfig, LlavaForConditionalGeneration, ("llava",),
    hf_config.llava_from_hf, hf_config.llava_to_hf, key_renames=_LLAVA_KEY_RENAMES,
    prompt_formats={("llava", None): "llava_hf"})
LLAVA_NEXT = Family(
    "llava_next", "LLaVA-NeXT", "vlm", LlavaNextConfig, LlavaNextForConditionalGeneration, ("llava_next",),
    hf_config.llava_next_from_hf, hf_config.llava_next_to_hf, key_renames=_LLAVA_KEY_RENAMES,
    prompt_formats={("llava_next", "mistral"): "llava_next_mistral", ("llava_next", "llama"): "llava_next_vicuna"},
    training_refusal=lambda cfg: "LLaVA-NeXT training is not supported yet (AnyRes batches)")
# BLIP-2 and InstructBLIP: one config and model (`qformer_config.instruction_input` tells them apart).
BLIP2 = Family(
    "blip2", "BLIP-2 / InstructBLIP", "vlm", Blip2Config, Blip2ForConditionalGeneration, ("blip-2", "instructblip"),
    hf_config.blip2_from_hf, hf_config.blip2_to_hf,
    prompt_formats={("blip-2", None): "blip2", ("instructblip", None): "instructblip"},
    training_refusal=_blip2_training)
CLIP = Family("clip", "CLIP", "clip", CLIPConfig, CLIPModel, ("clip",), hf_config.clip_from_hf, hf_config.clip_to_hf)
# open_clip's EVA01-CLIP: read from open_clip_config.json (`hf_config.load_config` -> `openclip.load_config`).
EVA_CLIP = Family("eva_clip", "EVA-CLIP", "clip", EvaCLIPConfig, EvaCLIPModel, read_tensors=openclip.to_our_keys)
LLAMA = Family("llama", "Llama", "lm", LlamaConfig, LlamaForCausalLM, ("llama", "mistral"),
               hf_config.llama_from_hf, hf_config.llama_to_hf)
OPT = Family("opt", "OPT", "lm", OPTConfig, OPTForCausalLM, ("opt",), hf_config.opt_from_hf, hf_config.opt_to_hf)

FAMILIES: tuple[Family, ...] = (LLAVA, LLAVA_NEXT, BLIP2, CLIP, EVA_CLIP, LLAMA, OPT)

_BY_CONFIG = {f.config: f for f in FAMILIES}
_BY_MODEL_TYPE = {t: f for f in FAMILIES for t in f.model_types}
SUPPORTED_MODEL_TYPES = tuple(_BY_MODEL_TYPE)


def family_of(cfg) -> Family:
    """The family of one of our model configs (by its exact type)."""
    if type(cfg) not in _BY_CONFIG:
        raise TypeError(f"no model for config type {type(cfg).__name__} (families: "
                        f"{', '.join(f.config.__name__ for f in FAMILIES)})")
    return _BY_CONFIG[type(cfg)]


def for_model_type(model_type: str) -> Family:
    """The family that reads transformers checkpoints of this config.json `model_type`."""
    if model_type not in _BY_MODEL_TYPE:
        raise ValueError(f"config.json model_type {model_type!r} is not supported; supported: {SUPPORTED_MODEL_TYPES}")
    return _BY_MODEL_TYPE[model_type]
