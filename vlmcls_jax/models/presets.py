"""Full-size configs of the checkpoints the study uses, by Hugging Face hub id.

These equal what `load_hf` reads from each checkpoint's `config.json`; they let code build or
`jax.eval_shape` a full-size model without the hub (parameter counts, sharding plans, benchmarks).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from vlmcls_jax.models.blip2 import Blip2Config
from vlmcls_jax.models.blip2_vision import Blip2VisionConfig
from vlmcls_jax.models.clip import CLIP_L14_336_VISION, CLIPConfig, CLIPTextConfig
from vlmcls_jax.models.eva_clip import EvaCLIPConfig
from vlmcls_jax.models.llama import LlamaConfig
from vlmcls_jax.models.llava import LlavaConfig
from vlmcls_jax.models.llava_next import DEFAULT_PINPOINTS, LlavaNextConfig
from vlmcls_jax.models.opt import OPTConfig
from vlmcls_jax.models.qformer import QFormerConfig

# openai's config.json keeps the legacy eos_token_id=2, so pooling takes the highest token id (transformers too).
CLIP_L14_TEXT = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                               num_attention_heads=12, max_position_embeddings=77, projection_dim=768,
                               eos_token_id=2, bos_token_id=0, pad_token_id=1)
VICUNA_7B = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                        rms_norm_eps=1e-5, pad_token_id=32001)
VICUNA_13B = dataclasses.replace(VICUNA_7B, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                                 num_attention_heads=40, num_key_value_heads=40)
# Mistral-7B-Instruct-v0.2 as llava-v1.6-mistral-7b-hf's config.json gives it (model_type "mistral", no sliding
# window, no pad token id; vocab 32064: the 32000 pieces, llava-hf's added `<image>` = 32000, and spare rows).
MISTRAL_7B = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                         rms_norm_eps=1e-5, rope_theta=1e6, pad_token_id=None)

# BLIP-2 / InstructBLIP (Salesforce's hub configs; fields they leave out take transformers' defaults): EVA ViT-g
# (1408 wide, 39 layers, 224 px, patch 14), a 12-layer 768-wide Q-Former cross-attending every 2nd layer, 32 queries.
EVA_VIT_G = Blip2VisionConfig()
BLIP2_QFORMER = QFormerConfig()
# InstructBLIP's Q-Former reads the instruction: BERT's vocabulary + "[DEC]" (30523 ids).
INSTRUCTBLIP_QFORMER = QFormerConfig(vocab_size=30523, instruction_input=True)
# blip2-opt-2.7b's text_config: OPT-2.7B with the vocabulary padded to 50304 rows, eos_token_id 50118 ("\n").
OPT_2_7B = OPTConfig(vocab_size=50304, hidden_size=2560, ffn_dim=10240, num_hidden_layers=32, num_attention_heads=32,
                     max_position_embeddings=2048, bos_token_id=2, eos_token_id=50118, pad_token_id=1)
# InstructBLIP's Vicuna v1.1 (LLaMA-1 shapes: 2048 positions, rms eps 1e-6, untied head).  Vocabulary: the 32000
# pieces, LAVIS' "[PAD]" = 32000 and the processor's image token 32001.  (Written from the hub config as remembered,
# not read offline: the token ids and vocabulary size are the uncertain part; every shape but the vocabulary is
# LLaMA's.)
INSTRUCTBLIP_VICUNA_7B = LlamaConfig(vocab_size=32002, hidden_size=4096, intermediate_size=11008,
                                     num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                                     max_position_embeddings=2048, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2,
                                     pad_token_id=0)
INSTRUCTBLIP_VICUNA_13B = dataclasses.replace(INSTRUCTBLIP_VICUNA_7B, hidden_size=5120, intermediate_size=13824,
                                              num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=40)

PRESETS = {
    "llava-hf/llava-1.5-7b-hf": LlavaConfig(vision_config=CLIP_L14_336_VISION, text_config=VICUNA_7B,
                                            image_token_index=32000),
    "llava-hf/llava-1.5-13b-hf": LlavaConfig(vision_config=CLIP_L14_336_VISION, text_config=VICUNA_13B,
                                             image_token_index=32000),
    "llava-hf/llava-v1.6-mistral-7b-hf": LlavaNextConfig(vision_config=CLIP_L14_336_VISION, text_config=MISTRAL_7B,
                                                         image_token_index=32000,
                                                         image_grid_pinpoints=DEFAULT_PINPOINTS),
    "llava-hf/llava-v1.6-vicuna-7b-hf": LlavaNextConfig(vision_config=CLIP_L14_336_VISION, text_config=VICUNA_7B,
                                                        image_token_index=32000,
                                                        image_grid_pinpoints=DEFAULT_PINPOINTS),
    "Salesforce/blip2-opt-2.7b": Blip2Config(vision_config=EVA_VIT_G, qformer_config=BLIP2_QFORMER,
                                             text_config=OPT_2_7B, num_query_tokens=32, image_token_index=50265),
    "Salesforce/instructblip-vicuna-7b": Blip2Config(vision_config=EVA_VIT_G, qformer_config=INSTRUCTBLIP_QFORMER,
                                                     text_config=INSTRUCTBLIP_VICUNA_7B, num_query_tokens=32,
                                                     image_token_index=32001),
    "Salesforce/instructblip-vicuna-13b": Blip2Config(vision_config=EVA_VIT_G, qformer_config=INSTRUCTBLIP_QFORMER,
                                                      text_config=INSTRUCTBLIP_VICUNA_13B, num_query_tokens=32,
                                                      image_token_index=32001),
    "openai/clip-vit-large-patch14-336": CLIPConfig(text_config=CLIP_L14_TEXT, vision_config=CLIP_L14_336_VISION,
                                                    projection_dim=768),
}

# open_clip checkpoints (open_clip_config.json, read by convert/openclip.py), kept apart from PRESETS (whose
# entries round-trip through transformers' configs): EVA01-CLIP-g-14-plus, the study's EVA-CLIP (open_clip's
# "EVA01-g-14-plus"; 1,366,621,569 parameters).
OPEN_CLIP_PRESETS = {"timm/eva_giant_patch14_plus_clip_224.merged2b_s11b_b114k": EvaCLIPConfig()}


def with_dtype(cfg, dtype=jnp.float32, param_dtype=None):
    """A copy of `cfg` (any of our configs, nested ones included) with new dtype / param_dtype."""
    param_dtype = param_dtype or dtype
    changes = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            changes[f.name] = with_dtype(value, dtype, param_dtype)
        elif f.name == "dtype":
            changes[f.name] = jnp.dtype(dtype)
        elif f.name == "param_dtype":
            changes[f.name] = jnp.dtype(param_dtype)
    return dataclasses.replace(cfg, **changes)


def preset(name: str, dtype=jnp.float32, param_dtype=None):
    known = {**PRESETS, **OPEN_CLIP_PRESETS}
    if name not in known:
        raise KeyError(f"unknown preset {name!r}; known: {sorted(known)}")
    return with_dtype(known[name], dtype, param_dtype)
