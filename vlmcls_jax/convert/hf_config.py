"""Translate between transformers config objects (`config.json`) and our frozen config dataclasses.

transformers fills every default the checkpoint's `config.json` leaves out (no torch needed), so we read
attributes from its config objects rather than re-deriving HF's defaults here.  Every id and size
(image token, vocab, pad id, image size, patch size, feature layer) comes from the checkpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import transformers

from vlmcls_jax.models.clip import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from vlmcls_jax.models.llama import LlamaConfig
from vlmcls_jax.models.llava import LlavaConfig

ModelConfig = LlavaConfig | CLIPConfig | LlamaConfig
SUPPORTED_MODEL_TYPES = ("llava", "clip", "llama", "mistral")


def _dtypes(dtype, param_dtype) -> dict[str, Any]:
    return dict(dtype=jnp.dtype(dtype), param_dtype=jnp.dtype(param_dtype or dtype))


def clip_vision_from_hf(c, dtype=jnp.float32, param_dtype=None) -> CLIPVisionConfig:
    return CLIPVisionConfig(hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                            num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                            image_size=c.image_size, patch_size=c.patch_size, num_channels=c.num_channels,
                            layer_norm_eps=c.layer_norm_eps, hidden_act=c.hidden_act,
                            projection_dim=c.projection_dim, **_dtypes(dtype, param_dtype))


def clip_text_from_hf(c, dtype=jnp.float32, param_dtype=None) -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                          num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                          max_position_embeddings=c.max_position_embeddings, layer_norm_eps=c.layer_norm_eps,
                          hidden_act=c.hidden_act, projection_dim=c.projection_dim, eos_token_id=c.eos_token_id,
                          bos_token_id=c.bos_token_id, pad_token_id=c.pad_token_id, **_dtypes(dtype, param_dtype))


def llama_from_hf(c, dtype=jnp.float32, param_dtype=None) -> LlamaConfig:
    rope = dict(getattr(c, "rope_parameters", None) or {})
    theta = rope.pop("rope_theta", getattr(c, "rope_theta", 10000.0))
    scaling = rope if rope.get("rope_type", "default") != "default" else None
    if getattr(c, "sliding_window", None) and c.sliding_window < c.max_position_embeddings:
        raise ValueError(f"config sliding_window={c.sliding_window} is not supported (full attention only)")
    head_dim = getattr(c, "head_dim", None)
    if head_dim == c.hidden_size // c.num_attention_heads:
        head_dim = None  # the implied value; keep configs equal whether or not config.json spells it out
    return LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                       num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                       num_key_value_heads=c.num_key_value_heads or c.num_attention_heads,
                       head_dim=head_dim, rms_norm_eps=c.rms_norm_eps, rope_theta=float(theta),
                       rope_scaling=scaling, max_position_embeddings=c.max_position_embeddings,
                       tie_word_embeddings=bool(c.tie_word_embeddings),
                       attention_bias=bool(getattr(c, "attention_bias", False)),
                       mlp_bias=bool(getattr(c, "mlp_bias", False)), bos_token_id=c.bos_token_id,
                       eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id, **_dtypes(dtype, param_dtype))


def from_hf(hf_config, dtype=jnp.float32, param_dtype=None) -> ModelConfig:
    """A transformers config object -> our config, chosen by `model_type`."""
    kind = hf_config.model_type
    if kind == "llava":
        if hf_config.vision_config.model_type != "clip_vision_model":
            raise ValueError(f"llava vision_config.model_type {hf_config.vision_config.model_type!r}: only "
                             "clip_vision_model is supported")
        if hf_config.text_config.model_type not in ("llama", "mistral"):
            raise ValueError(f"llava text_config.model_type {hf_config.text_config.model_type!r}: only "
                             "llama and mistral are supported")
        layer = hf_config.vision_feature_layer
        return LlavaConfig(vision_config=clip_vision_from_hf(hf_config.vision_config, dtype, param_dtype),
                           text_config=llama_from_hf(hf_config.text_config, dtype, param_dtype),
                           image_token_index=hf_config.image_token_index,
                           vision_feature_layer=layer if isinstance(layer, int) else tuple(layer),
                           vision_feature_select_strategy=hf_config.vision_feature_select_strategy,
                           projector_hidden_act=hf_config.projector_hidden_act,
                           multimodal_projector_bias=bool(hf_config.multimodal_projector_bias))
    if kind == "clip":
        return CLIPConfig(text_config=clip_text_from_hf(hf_config.text_config, dtype, param_dtype),
                          vision_config=clip_vision_from_hf(hf_config.vision_config, dtype, param_dtype),
                          projection_dim=hf_config.projection_dim,
                          logit_scale_init_value=hf_config.logit_scale_init_value)
    if kind in ("llama", "mistral"):
        return llama_from_hf(hf_config, dtype, param_dtype)
    raise ValueError(f"config.json model_type {kind!r} is not supported; supported: {SUPPORTED_MODEL_TYPES}")


def load_config(checkpoint_dir: str, dtype=jnp.float32, param_dtype=None) -> ModelConfig:
    """Reads `checkpoint_dir/config.json` (transformers fills the defaults) into our config."""
    try:
        hf = transformers.AutoConfig.from_pretrained(checkpoint_dir, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {checkpoint_dir}/config.json: {e}") from e
    return from_hf(hf, dtype, param_dtype)


def _dtype_name(cfg) -> str:
    return jnp.dtype(cfg.param_dtype).name


def to_hf(cfg: ModelConfig) -> transformers.PretrainedConfig:
    """Our config -> the transformers config object that `save_pretrained` would write."""
    if isinstance(cfg, LlamaConfig):
        rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
        rope.update(cfg.rope_scaling or {})
        return transformers.LlamaConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
            num_key_value_heads=cfg.num_key_value_heads, head_dim=cfg.head_size, rms_norm_eps=cfg.rms_norm_eps,
            rope_parameters=rope, max_position_embeddings=cfg.max_position_embeddings,
            tie_word_embeddings=cfg.tie_word_embeddings, attention_bias=cfg.attention_bias, mlp_bias=cfg.mlp_bias,
            bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id,
            dtype=_dtype_name(cfg), architectures=["LlamaForCausalLM"])
    if isinstance(cfg, CLIPVisionConfig):
        fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if "dtype" not in f.name}
        return transformers.CLIPVisionConfig(**fields)
    if isinstance(cfg, CLIPTextConfig):
        fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if "dtype" not in f.name}
        return transformers.CLIPTextConfig(**fields)
    if isinstance(cfg, CLIPConfig):
        return transformers.CLIPConfig(text_config=to_hf(cfg.text_config).to_dict(),
                                       vision_config=to_hf(cfg.vision_config).to_dict(),
                                       projection_dim=cfg.projection_dim,
                                       logit_scale_init_value=cfg.logit_scale_init_value,
                                       dtype=_dtype_name(cfg.vision_config), architectures=["CLIPModel"])
    if isinstance(cfg, LlavaConfig):
        if cfg.projector_type != "mlp2x_gelu":
            raise ValueError(f"projector_type {cfg.projector_type!r} has no transformers equivalent; only "
                             "mlp2x_gelu can be saved in the Hugging Face LLaVA format")
        layer = cfg.vision_feature_layer
        return transformers.LlavaConfig(
            vision_config=to_hf(cfg.vision_config), text_config=to_hf(cfg.text_config),
            image_token_index=cfg.image_token_index, image_seq_length=cfg.num_image_tokens,
            projector_hidden_act=cfg.projector_hidden_act,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
            vision_feature_layer=layer if isinstance(layer, int) else list(layer),
            multimodal_projector_bias=cfg.multimodal_projector_bias,
            tie_word_embeddings=cfg.text_config.tie_word_embeddings, dtype=_dtype_name(cfg.text_config),
            architectures=["LlavaForConditionalGeneration"])
    raise TypeError(f"no Hugging Face config for {type(cfg).__name__}")
