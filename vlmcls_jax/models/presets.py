"""Full-size configs of the checkpoints the study uses, by Hugging Face hub id.

These equal what `load_hf` reads from each checkpoint's `config.json`; they let code build or
`jax.eval_shape` a full-size model without the hub (parameter counts, sharding plans, benchmarks).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from vlmcls_jax.models.clip import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from vlmcls_jax.models.llama import LlamaConfig
from vlmcls_jax.models.llava import LlavaConfig

CLIP_L14_336_VISION = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                       num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768)
# openai's config.json keeps the legacy eos_token_id=2, so pooling takes the highest token id (transformers too).
CLIP_L14_TEXT = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                               num_attention_heads=12, max_position_embeddings=77, projection_dim=768,
                               eos_token_id=2, bos_token_id=0, pad_token_id=1)
VICUNA_7B = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                        rms_norm_eps=1e-5, pad_token_id=32001)
VICUNA_13B = dataclasses.replace(VICUNA_7B, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                                 num_attention_heads=40, num_key_value_heads=40)

PRESETS = {
    "llava-hf/llava-1.5-7b-hf": LlavaConfig(vision_config=CLIP_L14_336_VISION, text_config=VICUNA_7B,
                                            image_token_index=32000),
    "llava-hf/llava-1.5-13b-hf": LlavaConfig(vision_config=CLIP_L14_336_VISION, text_config=VICUNA_13B,
                                             image_token_index=32000),
    "openai/clip-vit-large-patch14-336": CLIPConfig(text_config=CLIP_L14_TEXT, vision_config=CLIP_L14_336_VISION,
                                                    projection_dim=768),
}


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
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return with_dtype(PRESETS[name], dtype, param_dtype)
