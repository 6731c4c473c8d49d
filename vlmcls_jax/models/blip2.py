"""BLIP-2 and InstructBLIP: vision tower -> Q-Former over learned query tokens (InstructBLIP: and the instruction)
-> `language_projection` -> the Q query outputs placed at the image-token positions of already-expanded
`input_ids` -> OPT or Llama (Vicuna) decoder -> logits.

One model class for both (transformers' `Blip2ForConditionalGeneration` and
`InstructBlipForConditionalGeneration` differ only in the Q-Former, see `qformer.py`):
`config.qformer_config.instruction_input` selects InstructBLIP, whose `get_image_features` / `embed` / `decode`
also take the Q-Former's instruction tokens `qformer_input_ids` / `qformer_attention_mask` (optional here:
without them the queries attend to the image only).

transformers 5's processors repeat `image_token_index` `num_query_tokens` times per image in `input_ids`
(before BOS); the model overwrites those positions with the projected query outputs (`masked_scatter`), the
rule LLaVA uses too (`image_tokens.place_image_features`).  Names mirror the transformers files
(`vision_model.*`, `query_tokens`, `qformer.*`, `language_projection`, `language_model.model.*`,
`language_model.lm_head`); transformers 4 hub files use the same names.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vlmcls_jax.models.blip2_vision import Blip2VisionConfig, Blip2VisionModel
from vlmcls_jax.models.layers import Linear, param
from vlmcls_jax.models.llama import LlamaConfig, LlamaForCausalLM
from vlmcls_jax.models.opt import OPTConfig, OPTForCausalLM
from vlmcls_jax.models.qformer import QFormerConfig, QFormerModel
from vlmcls_jax.models.vision_language import VisionLanguageModel


@dataclasses.dataclass(frozen=True)
class Blip2Config:
    """transformers' `Blip2Config` / `InstructBlipConfig` (decoder-only language models: OPT or Llama).
    Defaults: Salesforce/blip2-opt-2.7b."""
    vision_config: Blip2VisionConfig = Blip2VisionConfig()
    qformer_config: QFormerConfig = QFormerConfig()
    text_config: OPTConfig | LlamaConfig = OPTConfig()
    num_query_tokens: int = 32
    image_token_index: int = 50265

    def __post_init__(self):
        if self.qformer_config.encoder_hidden_size != self.vision_config.hidden_size:
            raise ValueError(f"qformer_config.encoder_hidden_size {self.qformer_config.encoder_hidden_size} != "
                             f"vision_config.hidden_size {self.vision_config.hidden_size}")
        if not isinstance(self.text_config, (OPTConfig, LlamaConfig)):
            raise ValueError(f"text_config {type(self.text_config).__name__}: only OPT and Llama decoders are "
                             "supported")

    @property
    def instruction_input(self) -> bool:
        """True for InstructBLIP (the Q-Former reads the instruction)."""
        return self.qformer_config.instruction_input

    @property
    def num_image_tokens(self) -> int:
        """Image features per image: the number of image-token ids each image expands to in `input_ids`."""
        return self.num_query_tokens


class Blip2ForConditionalGeneration(VisionLanguageModel):
    """BLIP-2 (OPT or Llama decoder) and, with `qformer_config.instruction_input`, InstructBLIP.  Image inputs
    (keywords of `embed` / `decode` / `__call__`): pixel_values, and for InstructBLIP optionally
    qformer_input_ids / qformer_attention_mask; placement: `image_tokens.place_image_features`."""

    def __init__(self, cfg: Blip2Config, *, rngs: nnx.Rngs):
        qc, tc = cfg.qformer_config, cfg.text_config
        self.vision_model = Blip2VisionModel(cfg.vision_config, rngs=rngs)
        self.query_tokens = param(rngs, nnx.initializers.zeros, (1, cfg.num_query_tokens, qc.hidden_size),
                                  (None, None, "embed"), qc.param_dtype)
        self.qformer = QFormerModel(qc, rngs=rngs)
        self.language_projection = Linear(qc.hidden_size, tc.hidden_size, axes=(None, "embed"), use_bias=True,
                                          dtype=tc.dtype, param_dtype=tc.param_dtype, rngs=rngs)
        lm = OPTForCausalLM if isinstance(tc, OPTConfig) else LlamaForCausalLM
        self.language_model = lm(tc, rngs=rngs)
        self.config = cfg

    def get_image_features(self, pixel_values: jax.Array, qformer_input_ids: jax.Array | None = None,
                           qformer_attention_mask: jax.Array | None = None) -> jax.Array:
        """float[B_img, H, W, 3] -> [B_img, num_query_tokens, text_width] (the projected query outputs).

        InstructBLIP: qformer_input_ids int[B_img, L] (one instruction per image, Q-Former tokenizer ids) and
        qformer_attention_mask int[B_img, L] (1 = real, default all real)."""
        B = pixel_values.shape[0]
        if qformer_input_ids is not None:
            if qformer_input_ids.shape[0] != B:
                raise ValueError(f"qformer_input_ids has {qformer_input_ids.shape[0]} rows for {B} images "
                                 "(one instruction per image)")
            if not self.config.instruction_input:
                raise ValueError("qformer_input_ids given, but this is BLIP-2's Q-Former, which reads no "
                                 "instruction (InstructBLIP's does)")
        image = self.vision_model(pixel_values)[0]                                     # [B_img, S, D_v]
        queries = jnp.broadcast_to(self.query_tokens[...], (B,) + self.query_tokens.shape[1:])
        out = self.qformer(queries, image, qformer_input_ids, qformer_attention_mask)
        return self.language_projection(out[:, : self.config.num_query_tokens])


InstructBlipForConditionalGeneration = Blip2ForConditionalGeneration   # same class; see the module docstring
