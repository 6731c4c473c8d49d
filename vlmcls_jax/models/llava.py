"""LLaVA: CLIP vision tower -> chosen hidden layer(s) -> projector -> image features placed at the
image-token positions of already-expanded `input_ids` -> Llama decoder -> logits.

Names mirror transformers-5 LLaVA files (`vision_tower.*`, `multi_modal_projector.*`,
`language_model.model.*`, `language_model.lm_head`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vlmcls_jax.models.clip import CLIP_L14_336_VISION, CLIPVisionConfig, CLIPVisionTransformer
from vlmcls_jax.models.image_tokens import place_image_features
from vlmcls_jax.models.kv_cache import KVCache
from vlmcls_jax.models.llama import DecoderOutput, LlamaConfig, LlamaForCausalLM
from vlmcls_jax.models.projector import MultiModalProjector

SELECT_STRATEGIES = ("default", "full")


@dataclasses.dataclass(frozen=True)
class LlavaConfig:
    vision_config: CLIPVisionConfig = CLIP_L14_336_VISION
    text_config: LlamaConfig = LlamaConfig(vocab_size=32064, pad_token_id=32001)
    image_token_index: int = 32000
    vision_feature_layer: int | tuple[int, ...] = -2
    vision_feature_select_strategy: str = "default"   # "default" drops CLS, "full" keeps it
    projector_type: str = "mlp2x_gelu"
    projector_hidden_act: str = "gelu"
    multimodal_projector_bias: bool = True

    def __post_init__(self):
        n = self.vision_config.num_hidden_layers
        bad = [layer for layer in self.feature_layers if not -(n + 1) <= layer <= n]
        if bad:
            raise ValueError(f"vision_feature_layer {bad} out of range for a vision tower with {n} layers "
                             f"(hidden states {-(n + 1)}..{n})")
        if self.vision_feature_select_strategy not in SELECT_STRATEGIES:
            raise ValueError(f"vision_feature_select_strategy {self.vision_feature_select_strategy!r} "
                             f"is not one of {SELECT_STRATEGIES}")

    @property
    def feature_layers(self) -> tuple[int, ...]:
        layer = self.vision_feature_layer
        return (layer,) if isinstance(layer, int) else tuple(layer)

    @property
    def num_image_tokens(self) -> int:
        """Image features per image: the number of `<image>` ids each image expands to in `input_ids`."""
        return self.vision_config.num_patches + (self.vision_feature_select_strategy == "full")


class LlavaForConditionalGeneration(nnx.Module):
    def __init__(self, cfg: LlavaConfig, *, rngs: nnx.Rngs):
        vc, tc = cfg.vision_config, cfg.text_config
        self.vision_tower = CLIPVisionTransformer(vc, rngs=rngs)
        self.multi_modal_projector = MultiModalProjector(
            vc.hidden_size * len(cfg.feature_layers), tc.hidden_size, projector_type=cfg.projector_type,
            hidden_act=cfg.projector_hidden_act, use_bias=cfg.multimodal_projector_bias, dtype=tc.dtype,
            param_dtype=tc.param_dtype, rngs=rngs)
        self.language_model = LlamaForCausalLM(tc, rngs=rngs)
        self.config = cfg

    def get_image_features(self, pixel_values: jax.Array) -> jax.Array:
        """float[B_img, H, W, 3] -> [B_img, num_image_tokens, text_width] (projector output)."""
        cfg = self.config
        n = cfg.vision_config.num_hidden_layers
        absolute = [layer % (n + 1) for layer in cfg.feature_layers]  # hidden_states has n + 1 entries
        hidden = self.vision_tower.hidden_states(pixel_values, num_layers=max(absolute))
        selected = [hidden[i] if cfg.vision_feature_select_strategy == "full" else hidden[i][:, 1:] for i in absolute]
        return self.multi_modal_projector(jnp.concatenate(selected, axis=-1))

    def embed(self, input_ids: jax.Array, pixel_values: jax.Array | None = None) -> jax.Array:
        """Token embeddings with image features placed at the `image_token_index` positions.

        input_ids: int[B, T] already expanded (num_image_tokens ids per image); pixel_values: [B_img, H, W, 3].
        With B_img == B, row b's image tokens take image b's features, and a row without image tokens
        ignores its image (training batches mixing text-only and image rows pass zeros there).  Otherwise
        the images fill the image positions in order across the batch (transformers' rule), so their count
        must equal B_img * num_image_tokens.  Counts are checked outside jit.  Returns [B, T, D].
        """
        if pixel_values is None:   # image-token ids embed as themselves, as in transformers
            return self.language_model.embed(input_ids)
        image_mask = input_ids == self.config.image_token_index
        embeds = self.language_model.embed(jnp.where(image_mask, 0, input_ids))
        return place_image_features(embeds, image_mask, self.get_image_features(pixel_values))

    def decode(self, input_ids: jax.Array, *, pixel_values=None, attention_mask=None, positions=None,
               cache: KVCache | None = None, prefix: KVCache | None = None,
               output_hidden_states: bool = False) -> DecoderOutput:
        """The decoder's final hidden states (and optionally every layer's); see `LlamaModel.__call__`."""
        return self.language_model.model(self.embed(input_ids, pixel_values), attention_mask=attention_mask,
                                         positions=positions, cache=cache, prefix=prefix,
                                         output_hidden_states=output_hidden_states)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """[..., D] -> float32[..., V]."""
        return self.language_model.logits(hidden)

    def __call__(self, input_ids: jax.Array, *, pixel_values=None, attention_mask=None, positions=None,
                 cache: KVCache | None = None):
        """input_ids int[B, T] -> (logits float32[B, T, V], extended cache or None)."""
        out = self.decode(input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
                          positions=positions, cache=cache)
        return self.logits(out.hidden), out.cache

    def init_cache(self, batch: int, max_length: int) -> KVCache:
        return self.language_model.init_cache(batch, max_length)
