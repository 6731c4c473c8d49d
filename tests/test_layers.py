"""`models.layers.cache_attention` (the decoders' attention over the KV cache, in its [B, K, S, H] layout) against
`jax.nn.dot_product_attention` (jax's XLA path, what `attention` calls): to the bit in bfloat16, within a float32
rounding in float32 (the products' summation order differs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlmcls_jax.models.layers import attention, cache_attention


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (8, 2)])
@pytest.mark.parametrize("masked", [False, True])
def test_cache_attention_equals_jax_dot_product_attention(dtype, heads, kv_heads, masked):
    B, T, S, H = 2, 5, 7, 16
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.standard_normal((B, T, heads, H)), dtype)
    k, v = (jnp.asarray(rng.standard_normal((B, S, kv_heads, H)), dtype) for _ in range(2))
    mask = None
    if masked:   # causal over the last T of S slots, the first row's first two slots padding, one row sees nothing
        mask = jnp.asarray(np.arange(S)[None, :] <= np.arange(S - T, S)[:, None])[None, None].repeat(B, 0)
        mask = mask.at[0, :, :, :2].set(False).at[1, :, 0, :].set(False)
    expected = jax.jit(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask))(q, k, v)
    cached = jax.jit(cache_attention)(q, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3),
                                      mask if masked else jnp.ones((B, 1, T, S), bool))
    atol = 0.0 if dtype == jnp.bfloat16 else 1e-6
    np.testing.assert_allclose(np.asarray(cached, np.float32), np.asarray(expected, np.float32), rtol=0, atol=atol)
    np.testing.assert_array_equal(np.asarray(jax.jit(attention)(q, k, v, mask)), np.asarray(expected))
