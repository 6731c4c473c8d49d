"""Flax NNX models: CLIP (vision + text towers), the LLaVA projector, the Llama decoder and LLaVA."""

from vlmcls_jax.models.clip import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextTransformer, CLIPVisionConfig, CLIPVisionTransformer
from vlmcls_jax.models.kv_cache import KVCache
from vlmcls_jax.models.llama import LlamaConfig, LlamaForCausalLM
from vlmcls_jax.models.llava import LlavaConfig, LlavaForConditionalGeneration
from vlmcls_jax.models.projector import MultiModalProjector
