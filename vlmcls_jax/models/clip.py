"""CLIP vision and text towers with transformers' semantics, and the two-tower `CLIPModel`.

Module and attribute names mirror transformers' `CLIPModel` (`vision_model.pre_layrnorm`,
`encoder.layers[i].self_attn.q_proj`, ...) so that the converter is a naming rule, not a table.
Images are NHWC: `pixel_values` float32[B, H, W, 3], normalised as the HF image processor does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from vlmcls_jax.models.layers import (
    Embed,
    LayerNorm,
    Linear,
    activation,
    attention,
    constrain,
    default_init,
    param,
    patch_embed,
)


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig:
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    image_size: int = 224
    patch_size: int = 32
    num_channels: int = 3
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    projection_dim: int = 512
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


# openai/clip-vit-large-patch14-336's vision tower: the one LLaVA-1.5 and LLaVA-NeXT use (`models/presets.py`).
CLIP_L14_336_VISION = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                       num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768)


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    projection_dim: int = 512
    eos_token_id: int = 49407
    bos_token_id: int = 49406
    pad_token_id: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
    text_config: CLIPTextConfig = CLIPTextConfig()
    vision_config: CLIPVisionConfig = CLIPVisionConfig()
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592


class CLIPAttention(nnx.Module):
    """Multi-head self-attention with biased q/k/v/out projections.  x: [B, T, D] -> [B, T, D]."""

    def __init__(self, width: int, num_heads: int, *, dtype, param_dtype, rngs):
        kw = dict(use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_proj = Linear(width, width, axes=("embed", "heads"), **kw)
        self.k_proj = Linear(width, width, axes=("embed", "heads"), **kw)
        self.v_proj = Linear(width, width, axes=("embed", "heads"), **kw)
        self.out_proj = Linear(width, width, axes=("heads", "embed"), **kw)
        self.num_heads = num_heads

    @jax.named_scope("attention")
    def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
        B, T, D = x.shape
        split = lambda t: t.reshape(B, T, self.num_heads, D // self.num_heads)
        out = attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)), mask)
        return self.out_proj(out.reshape(B, T, D))


class CLIPMLP(nnx.Module):
    def __init__(self, width: int, hidden: int, act: str, *, dtype, param_dtype, rngs):
        kw = dict(use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = Linear(width, hidden, axes=("embed", "mlp"), **kw)
        self.fc2 = Linear(hidden, width, axes=("mlp", "embed"), **kw)
        self.act = activation(act)

    @jax.named_scope("mlp")
    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nnx.Module):
    """Pre-norm transformer block: x + attn(ln1(x)), then + mlp(ln2(x))."""

    def __init__(self, cfg: CLIPVisionConfig | CLIPTextConfig, *, rngs):
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        self.self_attn = CLIPAttention(cfg.hidden_size, cfg.num_attention_heads, rngs=rngs, **kw)
        self.layer_norm1 = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)
        self.mlp = CLIPMLP(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act, rngs=rngs, **kw)
        self.layer_norm2 = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)

    @jax.named_scope("encoder_layer")
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nnx.Module):
    def __init__(self, cfg: CLIPVisionConfig | CLIPTextConfig, *, rngs):
        self.layers = nnx.List([CLIPEncoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_hidden_layers)])

    def __call__(self, x: jax.Array, mask: jax.Array | None = None, num_layers: int | None = None) -> list[jax.Array]:
        """Runs the first `num_layers` layers (all by default); returns [input, after layer 1, ...]."""
        hidden = [x]
        for layer in self.layers[: num_layers if num_layers is not None else len(self.layers)]:
            hidden.append(constrain(layer(hidden[-1], mask), ("batch", "length", "activation_embed")))
        return hidden


class CLIPVisionEmbeddings(nnx.Module):
    """Patchify (a stride-p conv, done as a reshape + matmul), prepend CLS, add position embeddings."""

    def __init__(self, cfg: CLIPVisionConfig, *, rngs):
        p, c, d = cfg.patch_size, cfg.num_channels, cfg.hidden_size
        # Conv kernel in JAX layout [kh, kw, in, out] (torch: [out, in, kh, kw]); the conv has no bias.
        self.patch_embedding = param(rngs, default_init, (p, p, c, d), (None, None, None, "embed"), cfg.param_dtype)
        self.class_embedding = param(rngs, default_init, (d,), ("embed",), cfg.param_dtype)
        self.position_embedding = Embed(cfg.num_patches + 1, d, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                                        rngs=rngs, axes=(None, "embed"))
        self.cfg = cfg

    def __call__(self, pixel_values: jax.Array) -> jax.Array:
        """pixel_values: float[B, H, W, C] -> [B, 1 + H/p * W/p, D]."""
        cfg = self.cfg
        x = patch_embed(pixel_values, self.patch_embedding[...], cfg)
        B = x.shape[0]
        cls = jnp.broadcast_to(self.class_embedding[...].astype(jnp.float32), (B, 1, cfg.hidden_size))
        x = jnp.concatenate([cls, x], axis=1) + self.position_embedding.embedding[...].astype(jnp.float32)
        return x.astype(cfg.dtype)


class CLIPVisionTransformer(nnx.Module):
    """transformers' `CLIPVisionTransformer`: embeddings -> pre_layrnorm -> encoder -> post_layernorm(CLS)."""

    def __init__(self, cfg: CLIPVisionConfig, *, rngs: nnx.Rngs):
        kw = dict(eps=cfg.layer_norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        self.embeddings = CLIPVisionEmbeddings(cfg, rngs=rngs)
        self.pre_layrnorm = LayerNorm(cfg.hidden_size, **kw)  # sic: HF's spelling
        self.encoder = CLIPEncoder(cfg, rngs=rngs)
        self.post_layernorm = LayerNorm(cfg.hidden_size, **kw)
        self.config = cfg

    def hidden_states(self, pixel_values: jax.Array, num_layers: int | None = None) -> list[jax.Array]:
        """Every hidden state, as HF's `output_hidden_states`: index 0 is the embedding output (after
        `pre_layrnorm`), index i the output of layer i.  Each [B, 1 + P, D].  Pass `num_layers` to stop early
        (LLaVA needs only up to layer -2)."""
        return self.encoder(self.pre_layrnorm(self.embeddings(pixel_values)), num_layers=num_layers)

    def __call__(self, pixel_values: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns (last_hidden_state [B, 1 + P, D], pooled [B, D] = post_layernorm(CLS))."""
        last = self.hidden_states(pixel_values)[-1]
        return last, self.post_layernorm(last[:, 0])


class CLIPTextEmbeddings(nnx.Module):
    """Token embedding + learned absolute position embedding.  int[B, T] -> [B, T, D]."""

    def __init__(self, cfg: CLIPTextConfig, *, rngs):
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
        self.token_embedding = Embed(cfg.vocab_size, cfg.hidden_size, **kw)
        self.position_embedding = Embed(cfg.max_position_embeddings, cfg.hidden_size, axes=(None, "embed"), **kw)
        self.dtype = cfg.dtype

    def __call__(self, input_ids: jax.Array) -> jax.Array:
        T = input_ids.shape[1]
        x = self.token_embedding(input_ids).astype(jnp.float32) + self.position_embedding.embedding[:T].astype(jnp.float32)
        return x.astype(self.dtype)


class CLIPTextTransformer(nnx.Module):
    """transformers' `CLIPTextTransformer`: causal encoder, final LayerNorm, pooling at the EOS position."""

    def __init__(self, cfg: CLIPTextConfig, *, rngs: nnx.Rngs):
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        self.embeddings = CLIPTextEmbeddings(cfg, rngs=rngs)
        self.encoder = CLIPEncoder(cfg, rngs=rngs)
        self.final_layer_norm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)
        self.config = cfg

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """input_ids: int[B, T]; attention_mask: int[B, T] (1 = token) or None.
        Returns (last_hidden_state [B, T, D], pooled [B, D])."""
        B, T = input_ids.shape
        x = self.embeddings(input_ids)
        mask = jnp.tril(jnp.ones((T, T), bool))[None, None]
        if attention_mask is not None:
            mask = mask & attention_mask.astype(bool)[:, None, None, :]
        last = self.final_layer_norm(self.encoder(x, mask)[-1])
        if self.config.eos_token_id == 2:
            # transformers' legacy rule for old configs: the EOS token has the highest id.
            eos_pos = jnp.argmax(input_ids, axis=-1)
        else:
            eos_pos = jnp.argmax(input_ids == self.config.eos_token_id, axis=-1)  # first EOS
        return last, last[jnp.arange(B), eos_pos]


class CLIPModel(nnx.Module):
    """Two towers with projections and `logit_scale`, as transformers' `CLIPModel`.  A subclass with another
    image tower sets `vision_tower` (its class) and `visual_projection_bias` (EVA-CLIP: models/eva_clip.py)."""

    vision_tower = CLIPVisionTransformer
    visual_projection_bias = False

    def __init__(self, cfg: CLIPConfig, *, rngs: nnx.Rngs | None):
        vc, tc = cfg.vision_config, cfg.text_config
        self.text_model = CLIPTextTransformer(tc, rngs=rngs)
        self.vision_model = self.vision_tower(vc, rngs=rngs)
        self.visual_projection = Linear(vc.hidden_size, cfg.projection_dim, axes=("embed", None),
                                        use_bias=self.visual_projection_bias, dtype=vc.dtype,
                                        param_dtype=vc.param_dtype, rngs=rngs)
        self.text_projection = Linear(tc.hidden_size, cfg.projection_dim, axes=("embed", None), use_bias=False,
                                      dtype=tc.dtype, param_dtype=tc.param_dtype, rngs=rngs)
        self.logit_scale = nnx.Param(jnp.asarray(cfg.logit_scale_init_value, vc.param_dtype), logical_axes=())
        self.config = cfg

    def get_image_features(self, pixel_values: jax.Array) -> jax.Array:
        """float[B, H, W, 3] -> float32[B, projection_dim] (not normalised, as in transformers)."""
        return self.visual_projection(self.vision_model(pixel_values)[1]).astype(jnp.float32)

    def get_text_features(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        """int[B, T] -> float32[B, projection_dim] (not normalised)."""
        return self.text_projection(self.text_model(input_ids, attention_mask)[1]).astype(jnp.float32)

    def __call__(self, input_ids, pixel_values, attention_mask=None) -> tuple[jax.Array, jax.Array]:
        """Returns (logits_per_image float32[B_img, B_txt], logits_per_text [B_txt, B_img])."""
        img = self.get_image_features(pixel_values)
        txt = self.get_text_features(input_ids, attention_mask)
        img = img / jnp.linalg.norm(img, axis=-1, keepdims=True)
        txt = txt / jnp.linalg.norm(txt, axis=-1, keepdims=True)
        logits_per_text = jnp.exp(self.logit_scale[...].astype(jnp.float32)) * txt @ img.T
        return logits_per_text.T, logits_per_text
