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
from vlmcls_jax.models.llama import LlamaConfig, LlamaForCausalLM
from vlmcls_jax.models.projector import MultiModalProjector
from vlmcls_jax.models.vision_language import VisionLanguageModel

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


class LlavaForConditionalGeneration(VisionLanguageModel):
    """`embed` / `decode` / `__call__` take `pixel_values` float[B_img, H, W, 3] as a keyword; with B_img == B,
    row b's image tokens take image b's features (a row without image tokens ignores its image: training
    batches mixing text-only and image rows pass zeros there), otherwise the images fill the image positions
    in order across the batch (transformers' rule); see `vision_language.VisionLanguageModel`."""

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
