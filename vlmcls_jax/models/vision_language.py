"""The base of the vision-language models (LLaVA, LLaVA-NeXT, BLIP-2 / InstructBLIP): image features placed at
the image-token positions of already-expanded `input_ids`, then a `CausalLM` decoder.

A subclass sets `self.language_model` (a `causal_lm.CausalLM`) and `self.config` (with `image_token_index`) and
defines `get_image_features(pixel_values, **image_inputs) -> [B_img, N, D]`.  Its image inputs are keyword
arguments everywhere (`embed`, `decode`, `__call__`): `pixel_values` and whatever else the family needs
(LLaVA-NeXT's `image_index`, InstructBLIP's `qformer_input_ids` / `qformer_attention_mask`), so the inference
and training code pass a model's image inputs as one dict without knowing the family.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vlmcls_jax.models.causal_lm import DecoderOutput
from vlmcls_jax.models.image_tokens import place_image_features
from vlmcls_jax.models.kv_cache import KVCache


class VisionLanguageModel(nnx.Module):
    def get_image_features(self, pixel_values: jax.Array, **image_inputs) -> jax.Array:
        raise NotImplementedError

    def place_features(self, embeds: jax.Array, image_mask: jax.Array, pixel_values: jax.Array,
                       **image_inputs) -> jax.Array:
        """embeds [B, T, D] with the images' features at `image_mask` (bool[B, T]); rules and checks:
        `image_tokens.place_image_features`."""
        return place_image_features(embeds, image_mask, self.get_image_features(pixel_values, **image_inputs))

    def embed(self, input_ids: jax.Array, pixel_values: jax.Array | None = None, **image_inputs) -> jax.Array:
        """Token embeddings int[B, T] -> [B, T, D] with image features placed at the `image_token_index`
        positions (input_ids already expanded: one image-token id per feature).  Without pixel_values the
        image-token ids embed as themselves, as in transformers."""
        if pixel_values is None:
            return self.language_model.embed(input_ids)
        image_mask = input_ids == self.config.image_token_index
        embeds = self.language_model.embed(jnp.where(image_mask, 0, input_ids))
        return self.place_features(embeds, image_mask, pixel_values, **image_inputs)

    def decode(self, input_ids: jax.Array, *, attention_mask=None, positions=None, cache: KVCache | None = None,
               prefix: KVCache | None = None, output_hidden_states: bool = False, **image_inputs) -> DecoderOutput:
        """The decoder's final hidden states (and optionally every layer's); see `causal_lm.DecoderStack`."""
        return self.language_model.decode(inputs_embeds=self.embed(input_ids, **image_inputs),
                                          attention_mask=attention_mask, positions=positions, cache=cache,
                                          prefix=prefix, output_hidden_states=output_hidden_states)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """[..., D] -> float32[..., V]."""
        return self.language_model.logits(hidden)

    def __call__(self, input_ids: jax.Array, *, attention_mask=None, positions=None, cache: KVCache | None = None,
                 **image_inputs):
        """input_ids int[B, T] -> (logits float32[B, T, V], extended cache or None)."""
        out = self.decode(input_ids, attention_mask=attention_mask, positions=positions, cache=cache,
                          **image_inputs)
        return self.logits(out.hidden), out.cache

    def init_cache(self, batch: int, max_length: int) -> KVCache:
        return self.language_model.init_cache(batch, max_length)
