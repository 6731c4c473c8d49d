"""Flax NNX models: LLaVA-1.5, LLaVA-NeXT, BLIP-2 / InstructBLIP (EVA ViT + Q-Former), CLIP, EVA-CLIP, and the
Llama (Vicuna, Mistral) and OPT decoders; one record per family in `vlmcls_jax.convert.families`.  Every config
dataclass is exported here (`config_io` serialises the ones it finds here)."""

from vlmcls_jax.models.blip2 import Blip2Config, Blip2ForConditionalGeneration, InstructBlipForConditionalGeneration
from vlmcls_jax.models.blip2_vision import Blip2VisionConfig, Blip2VisionModel
from vlmcls_jax.models.clip import (
    CLIPConfig,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextTransformer,
    CLIPVisionConfig,
    CLIPVisionTransformer,
)
from vlmcls_jax.models.eva_clip import EvaCLIPConfig, EvaCLIPModel
from vlmcls_jax.models.kv_cache import KVCache
from vlmcls_jax.models.llama import LlamaConfig, LlamaForCausalLM
from vlmcls_jax.models.llava import LlavaConfig, LlavaForConditionalGeneration
from vlmcls_jax.models.llava_next import LlavaNextConfig, LlavaNextForConditionalGeneration
from vlmcls_jax.models.opt import OPTConfig, OPTForCausalLM
from vlmcls_jax.models.projector import MultiModalProjector
from vlmcls_jax.models.qformer import QFormerConfig, QFormerModel
