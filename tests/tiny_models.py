"""Tiny configs and models of our own (no transformers) shared by the training tests."""

import functools

from flax import nnx

from vlmcls_jax.models import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
from vlmcls_jax.models.clip import CLIPConfig, CLIPTextConfig

IMAGE_TOKEN = 63
VISION = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                          image_size=28, patch_size=14, projection_dim=16)
LLAMA = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, pad_token_id=0)
LLAVA = LlavaConfig(vision_config=VISION, text_config=LLAMA, image_token_index=IMAGE_TOKEN)
CLIP = CLIPConfig(
    text_config=CLIPTextConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, max_position_embeddings=16, projection_dim=16, eos_token_id=49),
    vision_config=VISION, projection_dim=16)


@functools.cache
def _pristine_llava():
    return LlavaForConditionalGeneration(LLAVA, rngs=nnx.Rngs(0))


def new_llava():
    """A fresh copy of one tiny LLaVA (built once: eager construction is slow on a busy CPU)."""
    return nnx.clone(_pristine_llava())
