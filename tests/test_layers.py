"""`models.layers` against references nobody here wrote: `cache_attention` (the decoders' attention over the KV
cache, in its [B, K, S, H] layout) against `jax.nn.dot_product_attention` (jax's XLA path, what `attention` calls):
to the bit in bfloat16, within a float32 rounding in float32 (the products' summation order differs); the
activations in bfloat16 against transformers' ACT2FN; and the rotary tables computed once per program on XLA:CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlmcls_jax.models.layers import activation, attention, cache_attention, compiling_for


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


@pytest.mark.parametrize("name", ["silu", "quick_gelu", "gelu", "gelu_pytorch_tanh", "relu"])
def test_bfloat16_activations_round_where_pytorch_rounds(name):
    """transformers' ACT2FN in bfloat16 is the reference: SiLU and GELU are single PyTorch kernels (float32 inside,
    one rounding), CLIP's quick GELU three ops each rounded.  Ours must agree to one bfloat16 unit in the last
    place (or 1e-5 where GELU's tail cancels to ~1e-6 and float32's erf and tanh differ), and bitwise almost
    everywhere for the ops whose float32 math is the same (SiLU, quick GELU, ReLU); rounding after every primitive
    of jax.nn.silu's expansion matched PyTorch on 63% of inputs."""
    import torch
    from transformers.activations import ACT2FN

    x = np.random.default_rng(0).standard_normal(1 << 16).astype(np.float32) * 4
    theirs = ACT2FN[name](torch.from_numpy(x).to(torch.bfloat16)).float().numpy()
    ours = np.asarray(jax.jit(activation(name))(jnp.asarray(x, jnp.bfloat16)), np.float32)
    assert np.all(np.abs(ours - theirs) <= np.abs(theirs) * 2.0 ** -7 + 1e-5)
    if name in ("silu", "quick_gelu", "relu"):
        assert np.mean(ours == theirs) > 0.999


def _llama_forward_text(lowered: bool) -> str:
    from flax import nnx

    from vlmcls_jax.models.llama import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2)
    graphdef, state = nnx.split(LlamaForCausalLM(cfg, rngs=nnx.Rngs(0)))
    forward = jax.jit(lambda s, ids: nnx.merge(graphdef, s)(ids)[0])
    low = forward.lower(state, jnp.ones((2, 6), jnp.int32))
    return low.as_text() if lowered else low.compile().as_text()


def test_rotary_tables_are_computed_once_on_xla_cpu():
    """XLA:CPU fused cos and sin into each layer's q and k rotation and evaluated them again per head and layer
    (6 times each for 3 layers); `llama.rotary` makes it compute each once."""
    import re

    from vlmcls_jax.models.llama import rotary

    text = _llama_forward_text(lowered=False)
    assert len(re.findall(r"\bcosine\(", text)) == 1 and len(re.findall(r"\bsine\(", text)) == 1
    positions = jnp.arange(40, dtype=jnp.int32).reshape(2, 20) * 97        # and the tables are unchanged
    freq = 1.0 / (10000.0 ** (np.arange(0, 16, 2) / 16)).astype(np.float32)
    angles = jnp.concatenate([positions[..., None] * jnp.asarray(freq)] * 2, -1)[:, :, None, :]
    cos, sin = jax.jit(rotary, static_argnums=1)(positions, tuple(freq))
    np.testing.assert_array_equal(cos, jax.jit(jnp.cos)(angles))
    np.testing.assert_array_equal(sin, jax.jit(jnp.sin)(angles))


def test_programs_for_another_platform_leave_out_the_xla_cpu_workarounds():
    """What the plan compiles for a TPU from this CPU host carries no identity products for the rotary tables."""
    with compiling_for("tpu"):
        tpu = _llama_forward_text(lowered=True)
    cpu = _llama_forward_text(lowered=True)
    assert cpu.count("stablehlo.dot_general") == tpu.count("stablehlo.dot_general") + 2
