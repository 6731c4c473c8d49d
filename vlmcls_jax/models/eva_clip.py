"""EVA-CLIP (EVA01-CLIP-g-14 / g-14-plus) as open_clip builds it: a timm `Eva` image trunk and open_clip's
text transformer, two projections and `logit_scale`.

Nothing here is new architecture; the towers are ones this package already has:

- Image: timm's `eva_giant_patch14_224` (open_clip `vision_cfg.timm_model_name`) is the EVA ViT-g of BLIP-2
  (`blip2_vision.Blip2VisionModel`): biased patch conv, CLS + learned absolute positions, no pre-norm, pre-norm
  blocks with one fused qkv projection without key bias (timm's separate q_bias / v_bias:
  `separate_qv_bias`), exact-GELU MLP, LayerNorm eps 1e-6, a final
  LayerNorm over all tokens.  EVA01 has no rotary embeddings, no SwiGLU, no layer-scale and no sub-LN (those
  are EVA02's).  open_clip pools the CLS token (`timm_pool="token"`) and, with `timm_proj=None`, uses timm's
  classifier head as the projection: a Linear *with* bias (`visual_projection` here), unlike CLIP's.
- Text: open_clip's `TextTransformer` is transformers' CLIP text model (`clip.CLIPTextTransformer`): token +
  learned positions, causal pre-norm blocks, `ln_final`, pooled at the highest token id (open_clip's
  `pool_type="argmax"`, transformers' rule when `eos_token_id == 2`), then an unbiased projection.  EVA-CLIP's
  text tower uses exact GELU (open_clip's `nn.GELU`; no `quick_gelu`) and LayerNorm eps 1e-5.

Checkpoint names (`visual.trunk.blocks.3.attn.q_bias`, `text.transformer.resblocks.0.attn.in_proj_weight`,
...) are mapped to these modules by `convert/open_clip.py`.  Images are NHWC: float[B, H, W, 3].
"""

from __future__ import annotations

import dataclasses
import math

import jax

from vlmcls_jax.models.blip2_vision import Blip2VisionConfig, Blip2VisionModel
from vlmcls_jax.models.clip import CLIPModel, CLIPTextConfig


@dataclasses.dataclass(frozen=True)
class EvaCLIPConfig:
    """vision_config: the EVA trunk (a `Blip2VisionConfig`: same fields, same meaning); text_config: open_clip's
    text tower (`CLIPTextConfig` with eos_token_id=2: pooled at the highest token id); projection_dim:
    open_clip's `embed_dim`.  Defaults: EVA01-CLIP-g-14-plus (`models/presets.py`)."""
    vision_config: Blip2VisionConfig = Blip2VisionConfig(num_hidden_layers=40, separate_qv_bias=True)
    text_config: CLIPTextConfig = CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                                 num_attention_heads=16, hidden_act="gelu", projection_dim=1024,
                                                 eos_token_id=2, bos_token_id=49406, pad_token_id=0)
    projection_dim: int = 1024
    logit_scale_init_value: float = math.log(1 / 0.07)   # open_clip's init; checkpoints carry the trained value


class EvaVisionModel(Blip2VisionModel):
    """timm's `Eva` trunk with token pooling: BLIP-2's EVA ViT, whose final LayerNorm (`post_layernorm`, timm's
    `norm`) is applied once, and the CLS row taken (transformers' BLIP-2 normalises the CLS row a second time;
    timm does not)."""

    def __call__(self, pixel_values: jax.Array) -> tuple[jax.Array, jax.Array]:
        """float[B, H, W, 3] -> (last_hidden_state = norm(last layer) [B, 1 + P, D], pooled = its CLS row [B, D])."""
        last = self.post_layernorm(self.hidden_states(pixel_values)[-1])
        return last, last[:, 0]


class EvaCLIPModel(CLIPModel):
    """open_clip's `CustomTextCLIP` for EVA01-CLIP.  `get_image_features`, `get_text_features` and the logits
    (`__call__`) are CLIPModel's: only the image tower and the biased image projection differ."""

    vision_tower = EvaVisionModel
    visual_projection_bias = True
