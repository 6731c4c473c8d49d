"""Translate between transformers config objects (`config.json`) and our frozen config dataclasses.

transformers fills every default the checkpoint's `config.json` leaves out (no torch needed), so we read
attributes from its config objects rather than re-deriving HF's defaults here.  Every id and size
(image token, vocab, pad id, image size, patch size, feature layer) comes from the checkpoint.

One translator pair per family (`llava_from_hf` / `llava_to_hf`, ...); `from_hf` and `to_hf` pick the pair from
the family's record in `convert/families.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import transformers

from vlmcls_jax.convert import openclip
from vlmcls_jax.models.blip2 import Blip2Config
from vlmcls_jax.models.blip2_vision import Blip2VisionConfig
from vlmcls_jax.models.clip import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from vlmcls_jax.models.llama import LlamaConfig
from vlmcls_jax.models.llava import LlavaConfig
from vlmcls_jax.models.llava_next import LlavaNextConfig
from vlmcls_jax.models.opt import OPTConfig
from vlmcls_jax.models.qformer import QFormerConfig


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


def _registry():
    """The family registry (`convert/families.py`); imported here when called, as it imports this module's
    translators."""
    from vlmcls_jax.convert import families
    return families


def from_hf(hf_config, dtype=jnp.float32, param_dtype=None):
    """A transformers config object -> our config, by the family whose record lists its `model_type`."""
    return _registry().for_model_type(hf_config.model_type).from_hf(hf_config, dtype, param_dtype)


def _llava_fields(hf_config, dtype, param_dtype) -> dict:
    """The fields LLaVA-1.5 and LLaVA-NeXT share (CLIP tower, Llama/Mistral decoder, projector)."""
    kind = hf_config.model_type
    if hf_config.vision_config.model_type != "clip_vision_model":
        raise ValueError(f"{kind} vision_config.model_type {hf_config.vision_config.model_type!r}: only "
                         "clip_vision_model is supported")
    if hf_config.text_config.model_type not in _registry().LLAMA.model_types:
        raise ValueError(f"{kind} text_config.model_type {hf_config.text_config.model_type!r}: only "
                         "llama and mistral are supported")
    layer = hf_config.vision_feature_layer
    return dict(vision_config=clip_vision_from_hf(hf_config.vision_config, dtype, param_dtype),
                text_config=llama_from_hf(hf_config.text_config, dtype, param_dtype),
                image_token_index=hf_config.image_token_index,
                vision_feature_layer=layer if isinstance(layer, int) else tuple(layer),
                vision_feature_select_strategy=hf_config.vision_feature_select_strategy,
                projector_hidden_act=hf_config.projector_hidden_act,
                multimodal_projector_bias=bool(hf_config.multimodal_projector_bias))


def llava_from_hf(hf_config, dtype=jnp.float32, param_dtype=None) -> LlavaConfig:
    return LlavaConfig(**_llava_fields(hf_config, dtype, param_dtype))


def llava_next_from_hf(hf_config, dtype=jnp.float32, param_dtype=None) -> LlavaNextConfig:
    """LLaVA-NeXT = LLaVA + AnyRes grid resolutions ([[h, w], ...] in config.json)."""
    return LlavaNextConfig(**_llava_fields(hf_config, dtype, param_dtype),
                           image_grid_pinpoints=tuple(map(tuple, hf_config.image_grid_pinpoints)))


def clip_from_hf(hf_config, dtype=jnp.float32, param_dtype=None) -> CLIPConfig:
    return CLIPConfig(text_config=clip_text_from_hf(hf_config.text_config, dtype, param_dtype),
                      vision_config=clip_vision_from_hf(hf_config.vision_config, dtype, param_dtype),
                      projection_dim=hf_config.projection_dim,
                      logit_scale_init_value=hf_config.logit_scale_init_value)


def load_config(checkpoint_dir: str, dtype=jnp.float32, param_dtype=None):
    """Reads `checkpoint_dir/config.json` (transformers fills the defaults) into our config; an open_clip
    folder (open_clip_config.json, no config.json) is read by `openclip.load_config`."""
    if openclip.is_open_clip_dir(checkpoint_dir):
        return openclip.load_config(checkpoint_dir, dtype, param_dtype)
    try:
        hf = transformers.AutoConfig.from_pretrained(checkpoint_dir, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {checkpoint_dir}/config.json: {e}") from e
    return from_hf(hf, dtype, param_dtype)


def with_decoder_options(cfg, **options):
    """`cfg` with options of its language decoder's config set (`remat=True`, `scan_layers=True`): the
    `text_config` of a vision-language model, or a bare decoder's own.  An option set (truthy) that this
    decoder does not have is an error naming it; falsy ones are left alone."""
    decoder = getattr(cfg, "text_config", cfg)
    names = {f.name for f in dataclasses.fields(decoder)}
    unknown = sorted(k for k, v in options.items() if v and k not in names)
    if unknown:
        raise ValueError(f"config.model.{unknown[0]}: the {type(decoder).__name__} decoder has no such option "
                         f"({', '.join(unknown)})")
    decoder = dataclasses.replace(decoder, **{k: v for k, v in options.items() if k in names})
    return dataclasses.replace(cfg, text_config=decoder) if hasattr(cfg, "text_config") else decoder


def _dtype_name(cfg) -> str:
    return jnp.dtype(cfg.param_dtype).name


def to_hf(cfg) -> transformers.PretrainedConfig:
    """Our config -> the transformers config object that `save_pretrained` would write (by its family's record)."""
    family = _registry().family_of(cfg)
    if family.to_hf is None:
        raise TypeError(f"no Hugging Face config for {type(cfg).__name__} ({family.title} checkpoints are not "
                        "transformers checkpoints)")
    return family.to_hf(cfg)


def llama_to_hf(cfg: LlamaConfig) -> transformers.LlamaConfig:
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


def _fields_but_dtypes(cfg) -> dict:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if "dtype" not in f.name}


def clip_vision_to_hf(cfg: CLIPVisionConfig) -> transformers.CLIPVisionConfig:
    return transformers.CLIPVisionConfig(**_fields_but_dtypes(cfg))


def clip_text_to_hf(cfg: CLIPTextConfig) -> transformers.CLIPTextConfig:
    return transformers.CLIPTextConfig(**_fields_but_dtypes(cfg))


def clip_to_hf(cfg: CLIPConfig) -> transformers.CLIPConfig:
    return transformers.CLIPConfig(text_config=clip_text_to_hf(cfg.text_config).to_dict(),
                                   vision_config=clip_vision_to_hf(cfg.vision_config).to_dict(),
                                   projection_dim=cfg.projection_dim, logit_scale_init_value=cfg.logit_scale_init_value,
                                   dtype=_dtype_name(cfg.vision_config), architectures=["CLIPModel"])


def _llava_to_hf(cls, cfg: LlavaConfig, **extra) -> transformers.PretrainedConfig:
    """transformers' `LlavaConfig` or `LlavaNextConfig` (`cls`) from the fields both share, plus `extra`."""
    if cfg.projector_type != "mlp2x_gelu":
        raise ValueError(f"projector_type {cfg.projector_type!r} has no transformers equivalent; only "
                         "mlp2x_gelu can be saved in the Hugging Face LLaVA format")
    layer = cfg.vision_feature_layer
    return cls(
        vision_config=clip_vision_to_hf(cfg.vision_config), text_config=llama_to_hf(cfg.text_config),
        image_token_index=cfg.image_token_index, **extra,
        projector_hidden_act=cfg.projector_hidden_act,
        vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        vision_feature_layer=layer if isinstance(layer, int) else list(layer),
        multimodal_projector_bias=cfg.multimodal_projector_bias,
        tie_word_embeddings=cfg.text_config.tie_word_embeddings, dtype=_dtype_name(cfg.text_config),
        architectures=[cls.__name__.replace("Config", "ForConditionalGeneration")])


def llava_to_hf(cfg: LlavaConfig) -> transformers.LlavaConfig:
    return _llava_to_hf(transformers.LlavaConfig, cfg, image_seq_length=cfg.num_image_tokens)


def llava_next_to_hf(cfg: LlavaNextConfig) -> transformers.LlavaNextConfig:
    """image_seq_length: tokens per tile (HF's default, 576 at 336 px)."""
    return _llava_to_hf(transformers.LlavaNextConfig, cfg,
                        image_grid_pinpoints=[list(p) for p in cfg.image_grid_pinpoints],
                        image_seq_length=cfg.vision_config.num_patches)


# ---------------------------------------------------------------------------------------- OPT, BLIP-2, InstructBLIP


def opt_from_hf(c, dtype=jnp.float32, param_dtype=None) -> OPTConfig:
    if c.word_embed_proj_dim not in (None, c.hidden_size):
        raise ValueError(f"OPT word_embed_proj_dim={c.word_embed_proj_dim} != hidden_size={c.hidden_size} "
                         "(project_in/project_out, as in opt-350m) is not supported")
    if getattr(c, "_remove_final_layer_norm", False) and c.do_layer_norm_before:
        raise ValueError("OPT _remove_final_layer_norm=True (checkpoints fine-tuned before transformers 4.20.1) "
                         "is not supported")
    if not getattr(c, "layer_norm_elementwise_affine", True):
        raise ValueError("OPT layer_norm_elementwise_affine=False (LayerNorms without weights) is not supported")
    return OPTConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size, ffn_dim=c.ffn_dim,
                     num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                     max_position_embeddings=c.max_position_embeddings,
                     do_layer_norm_before=bool(c.do_layer_norm_before), activation_function=c.activation_function,
                     enable_bias=bool(c.enable_bias), tie_word_embeddings=bool(c.tie_word_embeddings),
                     bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
                     **_dtypes(dtype, param_dtype))


def _square(size, what: str) -> int:
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ValueError(f"{what}={list(size)}: only square sizes are supported")
        size = size[0]
    return int(size)


def blip2_from_hf(hf_config, dtype=jnp.float32, param_dtype=None) -> Blip2Config:
    """transformers' `Blip2Config` ("blip-2") or `InstructBlipConfig` ("instructblip") -> `Blip2Config`."""
    kind, v, q, t = hf_config.model_type, hf_config.vision_config, hf_config.qformer_config, hf_config.text_config
    families = _registry()
    if t.model_type not in families.OPT.model_types + families.LLAMA.model_types:
        raise ValueError(f"{kind} text_config.model_type {t.model_type!r}: only opt and llama are supported "
                         "(encoder-decoder language models such as flan-t5 are not)")
    text = from_hf(t, dtype, param_dtype)
    if hf_config.image_token_index is None:
        raise ValueError(f"{kind} config has no image_token_index (a config.json from before transformers' processors "
                         "expanded image tokens); set image_token_index to the tokenizer's image token id")
    vision = Blip2VisionConfig(hidden_size=v.hidden_size, intermediate_size=v.intermediate_size,
                               num_hidden_layers=v.num_hidden_layers, num_attention_heads=v.num_attention_heads,
                               image_size=_square(v.image_size, "image_size"),
                               patch_size=_square(v.patch_size, "patch_size"), hidden_act=v.hidden_act,
                               layer_norm_eps=v.layer_norm_eps, qkv_bias=bool(v.qkv_bias),
                               **_dtypes(dtype, param_dtype))
    qformer = QFormerConfig(vocab_size=q.vocab_size, hidden_size=q.hidden_size, num_hidden_layers=q.num_hidden_layers,
                            num_attention_heads=q.num_attention_heads, intermediate_size=q.intermediate_size,
                            hidden_act=q.hidden_act, max_position_embeddings=q.max_position_embeddings,
                            layer_norm_eps=q.layer_norm_eps, pad_token_id=q.pad_token_id,
                            cross_attention_frequency=q.cross_attention_frequency,
                            encoder_hidden_size=v.hidden_size,
                            use_qformer_text_input=bool(getattr(q, "use_qformer_text_input", False)),
                            instruction_input=kind == "instructblip", **_dtypes(dtype, param_dtype))
    return Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text,
                       num_query_tokens=hf_config.num_query_tokens, image_token_index=hf_config.image_token_index)


def opt_to_hf(cfg: OPTConfig) -> transformers.OPTConfig:
    return transformers.OPTConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, ffn_dim=cfg.ffn_dim,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        max_position_embeddings=cfg.max_position_embeddings, do_layer_norm_before=cfg.do_layer_norm_before,
        word_embed_proj_dim=cfg.hidden_size, activation_function=cfg.activation_function,
        enable_bias=cfg.enable_bias, tie_word_embeddings=cfg.tie_word_embeddings, bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id, dtype=_dtype_name(cfg),
        architectures=["OPTForCausalLM"])


def blip2_to_hf(cfg: Blip2Config) -> transformers.PretrainedConfig:
    """-> transformers' `Blip2Config`, or `InstructBlipConfig` when the Q-Former reads the instruction."""
    v, q = cfg.vision_config, cfg.qformer_config
    if v.num_channels != 3:
        raise ValueError(f"num_channels={v.num_channels}: transformers' BLIP-2 vision tower takes 3 channels")
    if v.separate_qv_bias:
        raise ValueError("separate_qv_bias=True (timm's q_bias / v_bias): transformers' BLIP-2 holds one qkv.bias")
    vision = dict(hidden_size=v.hidden_size, intermediate_size=v.intermediate_size,
                  num_hidden_layers=v.num_hidden_layers, num_attention_heads=v.num_attention_heads,
                  image_size=v.image_size, patch_size=v.patch_size, hidden_act=v.hidden_act,
                  layer_norm_eps=v.layer_norm_eps, qkv_bias=v.qkv_bias)
    qformer = dict(vocab_size=q.vocab_size, hidden_size=q.hidden_size, num_hidden_layers=q.num_hidden_layers,
                   num_attention_heads=q.num_attention_heads, intermediate_size=q.intermediate_size,
                   hidden_act=q.hidden_act, max_position_embeddings=q.max_position_embeddings,
                   layer_norm_eps=q.layer_norm_eps, pad_token_id=q.pad_token_id,
                   cross_attention_frequency=q.cross_attention_frequency, encoder_hidden_size=q.encoder_hidden_size)
    if q.instruction_input:
        cls = transformers.InstructBlipConfig
    else:
        cls = transformers.Blip2Config
        qformer["use_qformer_text_input"] = q.use_qformer_text_input
    return cls(vision_config=vision, qformer_config=qformer, text_config=to_hf(cfg.text_config),
               num_query_tokens=cfg.num_query_tokens, image_token_index=cfg.image_token_index,
               dtype=_dtype_name(cfg.text_config),
               architectures=[cls.__name__.replace("Config", "ForConditionalGeneration")])
