"""Rematerialised decoder blocks give the same gradients."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vlmcls_jax.models import LlamaConfig, LlamaForCausalLM


def test_remat_matches_plain_gradients():
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    ids = jnp.arange(12).reshape(2, 6)

    def grads(c):
        graphdef, params = nnx.split(LlamaForCausalLM(c, rngs=nnx.Rngs(0)))
        return jax.jit(jax.grad(lambda p: nnx.merge(graphdef, p)(ids)[0].sum()))(params)

    plain, remat = grads(cfg), grads(dataclasses.replace(cfg, remat=True))
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(remat)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
