"""open_clip checkpoints of EVA01-CLIP (the hub's `timm/eva_giant_patch14_plus_clip_224.merged2b_s11b_b114k` and
`timm/eva_giant_patch14_clip_224.laion400m_s11b_b41k`): `open_clip_config.json` -> `EvaCLIPConfig`, and the
`open_clip_model.safetensors` keys -> our parameter names.  `hf.load_hf` dispatches here for a folder holding
`open_clip_config.json` and no `config.json`; weights are read with safetensors only (the hub's
`open_clip_pytorch_model.bin` pickle is never opened).

Key mapping (open_clip / timm -> ours, `L` a layer number):

    visual.trunk.cls_token / pos_embed           vision_model.embeddings.class_embedding / position_embedding
    visual.trunk.patch_embed.proj.*              vision_model.embeddings.patch_embedding.*
    visual.trunk.blocks.L.norm1 / norm2          vision_model.encoder.layers.L.layer_norm1 / layer_norm2
    visual.trunk.blocks.L.attn.qkv.weight        ...self_attn.qkv.weight
    visual.trunk.blocks.L.attn.q_bias / v_bias   ...self_attn.q_bias / v_bias (timm's k_bias is a zero buffer)
    visual.trunk.blocks.L.attn.proj              ...self_attn.projection
    visual.trunk.blocks.L.mlp.fc1 / fc2          ...mlp.fc1 / fc2
    visual.trunk.norm / head                     vision_model.post_layernorm / visual_projection (biased)
    text.token_embedding / positional_embedding  text_model.embeddings.token_embedding / position_embedding
    text.transformer.resblocks.L.ln_1 / ln_2     text_model.encoder.layers.L.layer_norm1 / layer_norm2
    ...attn.in_proj_weight / in_proj_bias        ...self_attn.q_proj / k_proj / v_proj (split in three, q first)
    ...attn.out_proj, mlp.c_fc, mlp.c_proj       ...self_attn.out_proj, mlp.fc1, mlp.fc2
    text.ln_final                                text_model.final_layer_norm
    text.text_projection [width, embed]          text_projection (used as x @ P: already [in, out])
    logit_scale                                  logit_scale
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Iterator

import jax.numpy as jnp
import numpy as np

from vlmcls_jax.data.preprocess import ClipPreprocessConfig
from vlmcls_jax.models.blip2_vision import Blip2VisionConfig
from vlmcls_jax.models.clip import CLIPTextConfig
from vlmcls_jax.models.eva_clip import EvaCLIPConfig

CONFIG_FILE = "open_clip_config.json"


@dataclasses.dataclass(frozen=True)
class EvaTrunk:
    """A timm EVA01 model's shape (timm/models/eva.py: `eva_giant_patch14_224` and its CLIP twin)."""
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    patch_size: int
    image_size: int = 224


_GIANT = EvaTrunk(hidden_size=1408, num_hidden_layers=40, num_attention_heads=16, intermediate_size=6144,
                  patch_size=14)
# timm model names open_clip may name in `vision_cfg.timm_model_name`.  EVA02 names (rotary embeddings, SwiGLU,
# sub-LN) are not here: that architecture is not built.
TIMM_EVA01 = {"eva_giant_patch14_224": _GIANT, "eva_giant_patch14_clip_224": _GIANT}

# open_clip config fields: the values we build (anything else in the file is an error naming it).
_VISION_DEFAULTS = {"timm_pool": "token", "timm_proj": None, "timm_proj_bias": False}
_VISION_IGNORED = {"timm_model_pretrained", "timm_drop", "timm_drop_path", "image_size", "timm_model_name"}
_TEXT_DEFAULTS = {"mlp_ratio": 4.0, "ls_init_value": None, "embed_cls": False, "no_causal_mask": False,
                  "pool_type": "argmax", "proj_bias": False, "proj_type": "linear", "hf_model_name": None,
                  "final_ln_after_pool": False, "norm_kwargs": None, "act_kwargs": None, "block_type": None,
                  "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False,
                  "scale_attn": False, "scale_fc": False}
_TEXT_IGNORED = {"context_length", "vocab_size", "width", "heads", "layers", "pad_id", "eos_id", "output_tokens",
                 "hf_tokenizer_name", "tokenizer_kwargs", "tokenizer_mode"}
_MODEL_DEFAULTS = {"init_logit_bias": None}
_MODEL_IGNORED = {"embed_dim", "vision_cfg", "text_cfg", "custom_text", "quick_gelu"}   # quick_gelu: text tower only


def _check(section: dict, defaults: dict, ignored: set, where: str) -> None:
    for key, value in section.items():
        if key in ignored:
            continue
        if key not in defaults:
            raise ValueError(f"{where}.{key}: not an option of the EVA01-CLIP port (known: "
                             f"{sorted(set(defaults) | ignored)})")
        if value != defaults[key]:
            raise ValueError(f"{where}.{key}={value!r} is not supported (only {defaults[key]!r} is built)")


def is_open_clip_dir(folder: str) -> bool:
    """A folder in open_clip's hub layout (open_clip_config.json, no transformers config.json)."""
    return os.path.exists(os.path.join(folder, CONFIG_FILE)) and not os.path.exists(os.path.join(folder, "config.json"))


def read_config_file(folder: str) -> dict:
    path = os.path.join(folder, CONFIG_FILE)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e


def config_from_open_clip(d: dict, dtype=jnp.float32, param_dtype=None, where: str = CONFIG_FILE) -> EvaCLIPConfig:
    """An open_clip model config (the hub file's "model_cfg", or open_clip's model_configs/*.json) -> ours."""
    model = d.get("model_cfg", d)
    where = f"{where}:model_cfg" if "model_cfg" in d else where
    for key in ("embed_dim", "vision_cfg", "text_cfg"):
        if key not in model:
            raise ValueError(f"{where}: no {key!r}")
    _check(model, _MODEL_DEFAULTS, _MODEL_IGNORED, where)
    v, t = model["vision_cfg"], model["text_cfg"]
    name = v.get("timm_model_name")
    if name not in TIMM_EVA01:
        raise ValueError(f"{where}.vision_cfg.timm_model_name={name!r}: only the EVA01 timm trunks "
                         f"{sorted(TIMM_EVA01)} are supported (EVA02's rotary embeddings / SwiGLU / sub-LN are "
                         "not built)")
    _check(v, _VISION_DEFAULTS, _VISION_IGNORED, f"{where}.vision_cfg")
    trunk = TIMM_EVA01[name]
    if v.get("image_size", trunk.image_size) not in (trunk.image_size, [trunk.image_size] * 2):
        raise ValueError(f"{where}.vision_cfg.image_size={v['image_size']!r}: timm's {name} is built at "
                         f"{trunk.image_size} px (open_clip does not pass image_size to timm)")
    _check(t, _TEXT_DEFAULTS, _TEXT_IGNORED, f"{where}.text_cfg")
    dt = dict(dtype=jnp.dtype(dtype), param_dtype=jnp.dtype(param_dtype or dtype))
    # timm's EVA: exact GELU, its LayerNorm's default eps 1e-6, q_bias / v_bias.
    vision = Blip2VisionConfig(hidden_size=trunk.hidden_size, intermediate_size=trunk.intermediate_size,
                               num_hidden_layers=trunk.num_hidden_layers, num_attention_heads=trunk.num_attention_heads,
                               image_size=trunk.image_size, patch_size=trunk.patch_size, hidden_act="gelu",
                               layer_norm_eps=1e-6, qkv_bias=True, separate_qv_bias=True, **dt)
    width = int(t.get("width", 512))
    text = CLIPTextConfig(vocab_size=int(t.get("vocab_size", 49408)), hidden_size=width,
                          intermediate_size=int(width * float(t.get("mlp_ratio", 4.0))),
                          num_hidden_layers=int(t.get("layers", 12)), num_attention_heads=int(t.get("heads", 8)),
                          max_position_embeddings=int(t.get("context_length", 77)), layer_norm_eps=1e-5,
                          hidden_act="quick_gelu" if model.get("quick_gelu") else "gelu",
                          projection_dim=int(model["embed_dim"]),
                          eos_token_id=2,      # transformers' rule for "pool at the highest id": open_clip's argmax
                          bos_token_id=49406, pad_token_id=int(t.get("pad_id", 0)), **dt)
    return EvaCLIPConfig(vision_config=vision, text_config=text, projection_dim=int(model["embed_dim"]))


def load_config(folder: str, dtype=jnp.float32, param_dtype=None) -> EvaCLIPConfig:
    return config_from_open_clip(read_config_file(folder), dtype, param_dtype,
                                 where=os.path.join(folder, CONFIG_FILE))


def preprocess_config(folder: str, image_size: int) -> ClipPreprocessConfig:
    """open_clip's image transform at eval (`image_transform(is_train=False)`): resize the shortest edge
    (bicubic), centre crop, normalise with the file's `preprocess_cfg` mean / std (OpenAI's by default)."""
    pre = read_config_file(folder).get("preprocess_cfg", {})
    mode, interpolation = pre.get("resize_mode", "shortest"), pre.get("interpolation", "bicubic")
    if mode != "shortest" or interpolation != "bicubic":
        raise ValueError(f"{os.path.join(folder, CONFIG_FILE)}: preprocess_cfg resize_mode={mode!r}, "
                         f"interpolation={interpolation!r}: only 'shortest' + 'bicubic' is supported")
    kwargs = {k: tuple(float(x) for x in pre[k]) for k in ("mean", "std") if k in pre}
    return ClipPreprocessConfig(size=image_size, crop_size=(image_size, image_size),
                                **{f"image_{k}": v for k, v in kwargs.items()})


# ---------------------------------------------------------------------------------------------- key mapping

_RENAMES = tuple((re.compile(p), r) for p, r in (
    (r"^visual\.trunk\.cls_token$", "vision_model.embeddings.class_embedding"),
    (r"^visual\.trunk\.pos_embed$", "vision_model.embeddings.position_embedding"),
    (r"^visual\.trunk\.patch_embed\.proj\.", "vision_model.embeddings.patch_embedding."),
    (r"^visual\.trunk\.blocks\.(\d+)\.norm([12])\.", r"vision_model.encoder.layers.\1.layer_norm\2."),
    (r"^visual\.trunk\.blocks\.(\d+)\.attn\.qkv\.weight$", r"vision_model.encoder.layers.\1.self_attn.qkv.weight"),
    (r"^visual\.trunk\.blocks\.(\d+)\.attn\.([qv])_bias$", r"vision_model.encoder.layers.\1.self_attn.\2_bias"),
    (r"^visual\.trunk\.blocks\.(\d+)\.attn\.proj\.", r"vision_model.encoder.layers.\1.self_attn.projection."),
    (r"^visual\.trunk\.blocks\.(\d+)\.mlp\.", r"vision_model.encoder.layers.\1.mlp."),
    (r"^visual\.trunk\.norm\.", "vision_model.post_layernorm."),
    (r"^visual\.trunk\.head\.", "visual_projection."),
    (r"^text\.token_embedding\.", "text_model.embeddings.token_embedding."),
    (r"^text\.positional_embedding$", "text_model.embeddings.position_embedding.weight"),
    (r"^text\.transformer\.resblocks\.(\d+)\.ln_([12])\.", r"text_model.encoder.layers.\1.layer_norm\2."),
    (r"^text\.transformer\.resblocks\.(\d+)\.attn\.out_proj\.", r"text_model.encoder.layers.\1.self_attn.out_proj."),
    (r"^text\.transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"text_model.encoder.layers.\1.mlp.fc1."),
    (r"^text\.transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"text_model.encoder.layers.\1.mlp.fc2."),
    (r"^text\.ln_final\.", "text_model.final_layer_norm."),
))
_IN_PROJ = re.compile(r"^text\.transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$")


def rename(key: str) -> str:
    """One open_clip key -> our (transformers-style) key; keys no rule matches come back unchanged."""
    for pattern, replacement in _RENAMES:
        if pattern.search(key):
            return pattern.sub(replacement, key)
    return key


def to_our_keys(tensors: Iterable[tuple[str, str, np.ndarray]]) -> Iterator[tuple[str, str, np.ndarray]]:
    """(file, open_clip key, torch-layout array) -> (file, our key, torch-layout array), one tensor at a time
    (`hf.iter_tensors`' stream).  Splits each text block's in_proj into q/k/v and gives text_projection
    torch's [out, in] layout; every other tensor is renamed only."""
    for file, key, array in tensors:
        if m := _IN_PROJ.match(key):
            layer, kind = m.groups()
            if array.shape[0] % 3:
                raise ValueError(f"{os.path.basename(file)}: {key} has shape {array.shape}; expected 3 x width rows")
            for name, part in zip("qkv", np.split(array, 3, axis=0)):
                yield file, f"text_model.encoder.layers.{layer}.self_attn.{name}_proj.{kind}", part
        elif key == "text.text_projection":
            yield file, "text_projection.weight", array.T
        else:
            yield file, rename(key), array
