"""Building blocks shared by every model: linear, embedding, norms, activations, attention.

Axis letters used in shapes throughout `models/`:
  B batch, T query length, S key length (cache slots), D model width, F MLP width,
  N query heads, K key/value heads, H head dim, V vocabulary, L layers.

Every parameter is an `nnx.Param` carrying `logical_axes`, a tuple of names from
{"embed", "mlp", "heads", "kv_heads", "vocab", "patch", "positions", None}. The sharding code maps
those names to mesh axes; model code never mentions a mesh. (We use our own metadata key rather
than Flax's `sharding_names`, which shards eagerly at creation and so needs a mesh to build a model.)

Precision: parameters are stored in `param_dtype`, matmuls take `dtype` inputs and accumulate in
float32 (`preferred_element_type`), norms and softmax run in float32.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Dtype = Any
Axes = tuple[str | None, ...]

default_init = nnx.initializers.normal(stddev=0.02)

# Set by `sharding.activation_sharding(mesh)` while a step is traced: maps (array, logical axes) to the
# array with a sharding constraint.  Unset (the default), `constrain` does nothing.
ACTIVATION_CONSTRAINT: contextvars.ContextVar = contextvars.ContextVar("activation_constraint", default=None)


# The platform a program is being traced for when it is not this process's default backend: the plan sets it
# (`compiling_for`) while it compiles for a TPU topology or a GPU budget from a CPU host, so that the XLA:CPU
# workarounds (`xla_cpu`) stay out of those programs.
_TARGET_PLATFORM: contextvars.ContextVar = contextvars.ContextVar("target_platform", default=None)


@contextlib.contextmanager
def compiling_for(platform: str):
    """Programs traced inside are for `platform` ("tpu", "gpu", "cpu")."""
    token = _TARGET_PLATFORM.set(platform)
    try:
        yield
    finally:
        _TARGET_PLATFORM.reset(token)


def xla_cpu() -> bool:
    """Whether the program being traced is for XLA:CPU (the default backend, unless `compiling_for` says other)."""
    return (_TARGET_PLATFORM.get() or jax.default_backend()) == "cpu"


def constrain(x: jax.Array, axes: tuple[str | None, ...]) -> jax.Array:
    """Annotates an activation with logical axis names (e.g. ("batch", "length", "embed"))."""
    fn = ACTIVATION_CONSTRAINT.get()
    return x if fn is None else fn(x, axes)


def param(rngs: nnx.Rngs | None, init, shape: tuple[int, ...], axes: Axes, param_dtype: Dtype) -> nnx.Param:
    """A parameter of `shape` annotated with logical axis names (one per dimension)."""
    if len(axes) != len(shape):
        raise ValueError(f"logical axes {axes} do not match parameter shape {shape}")
    key = rngs.params() if rngs is not None else jax.random.key(0)
    return nnx.Param(init(key, shape, param_dtype), logical_axes=tuple(axes))


def matmul(x: jax.Array, w: jax.Array, spec: str, dtype: Dtype) -> jax.Array:
    """`einsum(spec, x, w)` with `dtype` inputs accumulated in float32; returns float32."""
    x, w = x.astype(dtype), w.astype(dtype)
    if _cpu_bfloat16_vector(x, spec):
        # XLA:CPU runs a one-row bfloat16 product (a batch-1 decode step) on a slow path: 0.9 GB/s of weights
        # against 5.6 GB/s for two rows and 28 GB/s for one float32 row (benchmarks/small_matmul.py, AMD EPYC).
        # Two rows read the weights once, as one does; the copy is discarded.
        x2 = jnp.broadcast_to(x[None], (2,) + x.shape)
        return jnp.einsum(spec, x2, w, preferred_element_type=jnp.float32)[0]
    return jnp.einsum(spec, x, w, preferred_element_type=jnp.float32)


def _cpu_bfloat16_vector(x: jax.Array, spec: str) -> bool:
    """A bfloat16 product of one row (every dimension of x but the contracted last one is 1) on XLA:CPU, with a
    `...` spec (so a leading axis may be added)."""
    return x.dtype == jnp.bfloat16 and spec.startswith("...") and x.size == x.shape[-1] and xla_cpu()


class Linear(nnx.Module):
    """y = x @ kernel + bias.  x: [..., in] -> [..., out]; kernel: [in, out] (torch's weight transposed)."""

    def __init__(self, in_features: int, out_features: int, *, axes: tuple[str | None, str | None], use_bias: bool,
                 dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs | None):
        self.kernel = param(rngs, default_init, (in_features, out_features), axes, param_dtype)
        self.bias = param(rngs, nnx.initializers.zeros, (out_features,), axes[1:], param_dtype) if use_bias else None
        self.dtype = dtype
        self.lora = nnx.data(None)  # a LoRA adapter, set by `train.lora.apply_lora`

    def __call__(self, x: jax.Array) -> jax.Array:
        y = matmul(x, self.kernel[...], "...i,io->...o", self.dtype)
        if self.bias is not None:
            y = y + self.bias[...].astype(jnp.float32)
        if self.lora is not None:
            y = y + self.lora(x)
        return y.astype(self.dtype)


class Embed(nnx.Module):
    """Token embedding table float[V, D]; `attend` gives tied-output logits."""

    def __init__(self, num_embeddings: int, features: int, *, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs | None,
                 axes: Axes = ("vocab", "embed")):
        self.embedding = param(rngs, default_init, (num_embeddings, features), axes, param_dtype)
        self.dtype = dtype

    def __call__(self, ids: jax.Array) -> jax.Array:
        """int[...] -> dtype[..., D]."""
        return jnp.take(self.embedding[...], ids, axis=0).astype(self.dtype)

    def attend(self, x: jax.Array) -> jax.Array:
        """x: [..., D] -> float32[..., V]."""
        return matmul(x, self.embedding[...], "...d,vd->...v", self.dtype)


class LayerNorm(nnx.Module):
    """LayerNorm with scale and bias, computed in float32 (torch.nn.LayerNorm semantics)."""

    def __init__(self, features: int, *, eps: float, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs | None = None):
        self.scale = param(rngs, nnx.initializers.ones, (features,), ("embed",), param_dtype)
        self.bias = param(rngs, nnx.initializers.zeros, (features,), ("embed",), param_dtype)
        self.eps, self.dtype = eps, dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(jnp.float32)
        mean = x.mean(-1, keepdims=True)
        var = jnp.square(x - mean).mean(-1, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)).astype(self.dtype)


class RMSNorm(nnx.Module):
    """Llama RMSNorm: normalise in float32, cast back to `dtype`, then multiply by the weight (HF order)."""

    def __init__(self, features: int, *, eps: float, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs | None = None):
        self.scale = param(rngs, nnx.initializers.ones, (features,), ("embed",), param_dtype)
        self.eps, self.dtype = eps, dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.square(x32).mean(-1, keepdims=True) + self.eps)
        return self.scale[...].astype(self.dtype) * y.astype(self.dtype)


def activation(name: str):
    """HF activation names -> functions. "gelu" is the exact erf GELU (not the tanh approximation).

    In bfloat16 each rounds where PyTorch does: its fused kernels (SiLU, GELU) compute in float32 and round once,
    and CLIP's quick GELU is three PyTorch ops (`x * torch.sigmoid(1.702 * x)`, the constant kept in float32),
    each rounded.  (The JAX functions applied to bfloat16 directly round after every primitive of their
    expansion: further from PyTorch and, on XLA:CPU, 1.8x slower; benchmarks/RESULTS.md section 11.)"""
    table = {
        "quick_gelu": lambda x: x * _in_float32(jax.nn.sigmoid)(_in_float32(lambda x: 1.702 * x)(x)),
        "gelu": _in_float32(lambda x: jax.nn.gelu(x, approximate=False)),
        "gelu_pytorch_tanh": _in_float32(lambda x: jax.nn.gelu(x, approximate=True)),
        "silu": _in_float32(jax.nn.silu),
        "relu": jax.nn.relu,
    }
    if name not in table:
        raise ValueError(f"unsupported activation {name!r}; known: {sorted(table)}")
    return table[name]


def _in_float32(fn):
    """fn computed in float32, rounded once to its input's dtype."""
    return lambda x: fn(x.astype(jnp.float32)).astype(x.dtype)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Scaled dot-product attention with grouped-query heads.

    q: [B, T, N, H]; k, v: [B, S, K, H] with N a multiple of K; mask: bool[B, 1, T, S] (True = attend)
    or None. Returns [B, T, N, H]. Masked logits get a large finite negative, so a query row with no
    visible key (a left-padding position) yields finite garbage rather than NaN.
    """
    return jax.nn.dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype), mask=mask)


def attention_with_prefix(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, prefix_k: jax.Array,
                          prefix_v: jax.Array, prefix_valid: jax.Array) -> jax.Array:
    """Attention of C continuations of each of P prompts over their shared prompt cache plus themselves.

    q: [P, C, T, N, H]; k, v: [P, C, T, K, H] (the continuations' own keys); mask: bool[P, C, T, T];
    prefix_k, prefix_v: [P, K, S, H] (the prompt cache in its layout, shared by the C rows, never repeated);
    prefix_valid: bool[P, S].  Returns [P, C, T, N, H].

    One softmax over the concatenated prefix and own keys, written as two einsums so the prefix cache is
    read once per prompt instead of being copied per continuation.
    """
    P, C, T, N, H = q.shape
    K, dtype = k.shape[3], v.dtype
    q = (q.astype(jnp.float32) * (H ** -0.5)).astype(dtype).reshape(P, C, T, K, N // K, H)
    dot = lambda spec, a, b: jnp.einsum(spec, a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)
    big_neg = jnp.finfo(jnp.float32).min / 2
    lp = jnp.where(prefix_valid[:, None, None, None, None, :], dot("pctkgh,pksh->pckgts", q, prefix_k), big_neg)
    lc = jnp.where(mask[:, :, None, None], dot("pctkgh,pcskh->pckgts", q, k), big_neg)
    top = jnp.maximum(lp.max(-1, keepdims=True), lc.max(-1, keepdims=True))
    pp, pc = jnp.exp(lp - top), jnp.exp(lc - top)
    denom = pp.sum(-1) + pc.sum(-1)                                                    # [P, C, K, G, T]
    # The weighted values in `dtype`, as `cache_attention` and jax.nn.dot_product_attention return them: XLA:CPU
    # has no bfloat16 x bfloat16 -> float32 dot that contracts the cache's S axis in place ("UNIMPLEMENTED ...
    # DotThunk"); the softmax statistics above stay float32.
    wv = lambda spec, a, b: jnp.einsum(spec, a.astype(dtype), b.astype(dtype)).astype(jnp.float32)
    out = wv("pckgts,pksh->pctkgh", pp, prefix_v) + wv("pckgts,pcskh->pctkgh", pc, v)
    out = out / jnp.moveaxis(denom, -1, 2)[..., None]
    return out.reshape(P, C, T, N, H).astype(dtype)


def continuation_mask(attention_mask: jax.Array | None, B: int, T: int) -> tuple[jax.Array, jax.Array]:
    """Own-token attention of B rows that continue a shared prompt cache (the `prefix=` path of the decoders).

    attention_mask: None (all real), int/bool[B, T] (1 = real token: causal attention among real tokens), or
    bool[B, T, T] used as given (a packed token tree: each token sees itself and its ancestors).
    Returns (mask bool[B, T, T], valid bool[B, T])."""
    if attention_mask is None:
        attention_mask = jnp.ones((B, T), bool)
    if attention_mask.ndim == 3:
        mask = attention_mask.astype(bool)
        return mask, jnp.diagonal(mask, axis1=1, axis2=2)
    valid = attention_mask.astype(bool)
    return jnp.tril(jnp.ones((T, T), bool))[None] & valid[:, None, :], valid


def cache_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """`attention` over keys and values in the cache's layout.  q: [B, T, N, H]; k, v: [B, K, S, H]; mask:
    bool[B, 1, T, S].  Returns [B, T, N, H].

    The same arithmetic as `jax.nn.dot_product_attention`'s XLA path (float32 logits scaled after the product,
    masked with 0.7 x the float32 minimum, float32 softmax cast back to the values' dtype), written over
    (B, K) batches so that XLA reads the cache as it is stored instead of transposing it on every step."""
    B, T, N, H = q.shape
    K = k.shape[1]
    q = q.reshape(B, T, K, N // K, H)
    dtype = q.dtype
    logits = jnp.einsum("btkgh,bksh->bkgts", q, k.astype(dtype), preferred_element_type=jnp.float32)
    logits = logits * jnp.array(1.0 / np.sqrt(H), jnp.float32)
    logits = jnp.where(mask[:, :, None], logits, 0.7 * jnp.finfo(jnp.float32).min)     # mask [B, 1, 1, T, S]
    probs = jax.nn.softmax(logits, axis=-1).astype(dtype)
    return jnp.einsum("bkgts,bksh->btkgh", probs, v.astype(dtype)).reshape(B, T, N, H)


def cached_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, kv: tuple[jax.Array, jax.Array] | None,
                     start, prefix=None) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
    """The decoders' attention step around a KV cache.  q: [B, T, N, H]; k, v: [B, T, K, H] (this step's);
    kv: the cache's ([B, K, S, H] x 2, kv_cache.py), written at slot `start` (in place when the cache is a
    donated argument or a loop carry), or None; mask: bool[B, 1, T, S] (or [B, T, T] with `prefix`); prefix:
    (keys [P, K, S, H], values, valid bool[P, S]) of P prompts that the B = P * C rows continue (read only; see
    `attention_with_prefix`).  Returns ([B, T, N, H], the updated cache or None)."""
    B, T, N, H = q.shape
    if kv is not None:
        write = lambda cache, new: jax.lax.dynamic_update_slice(
            cache, new.transpose(0, 2, 1, 3).astype(cache.dtype), (0, 0, start, 0))
        kv = (write(kv[0], k), write(kv[1], v))
        return cache_attention(q, kv[0], kv[1], mask), kv
    if prefix is not None:
        pk, pv, pvalid = prefix
        P = pk.shape[0]
        rows = lambda t: t.reshape((P, B // P) + t.shape[1:])
        return attention_with_prefix(rows(q), rows(k), rows(v), rows(mask), pk, pv, pvalid).reshape(B, T, N, H), None
    return attention(q, k, v, mask), None


def causal_cache_mask(attention_mask: jax.Array | None, cache, B: int, T: int):
    """Masks for T new tokens written into `cache` (a `KVCache` with room for them) or, with cache None, for
    a plain causal pass.  attention_mask: int/bool[B, T] (1 = real token) or None.  Returns (start slot,
    valid bool[B, S] over all slots, new_valid bool[B, T], mask bool[B, 1, T, S], real-token counts int[B, T]:
    how many real tokens precede each new one, cache included, minus one: the default positions)."""
    new_valid = jnp.ones((B, T), bool) if attention_mask is None else attention_mask.astype(bool)
    if cache is None:
        start, valid = 0, new_valid
    else:
        cache.check_room(T)
        start = cache.end
        valid = jax.lax.dynamic_update_slice(cache.valid, new_valid, (0, start))
    S = valid.shape[1]
    slots = start + jnp.arange(T)
    mask = (jnp.arange(S)[None, :] <= slots[:, None])[None, None] & valid[:, None, None, :]       # [B, 1, T, S]
    counts = jax.lax.dynamic_slice_in_dim(jnp.cumsum(valid.astype(jnp.int32), axis=1) - 1, start, T, axis=1)
    return start, valid, new_valid, mask, counts


def patch_embed(pixel_values: jax.Array, kernel: jax.Array, cfg) -> jax.Array:
    """A ViT's stride-p patch convolution, as a reshape + matmul.  pixel_values: float[B, H, W, C] (NHWC, H = W =
    cfg.image_size); kernel: [p, p, C, D] (JAX conv layout).  Returns float32[B, (H/p) * (W/p), D], no bias."""
    p = cfg.patch_size
    B, H, W, C = pixel_values.shape
    if (H, W) != (cfg.image_size, cfg.image_size) or C != cfg.num_channels:
        raise ValueError(f"pixel_values shape {pixel_values.shape} does not match the vision config "
                         f"(image_size={cfg.image_size}, num_channels={cfg.num_channels}; layout NHWC)")
    patches = pixel_values.reshape(B, H // p, p, W // p, p, C).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(B, (H // p) * (W // p), p * p * C)     # (kh, kw, c) order matches the kernel
    return matmul(patches, kernel.reshape(p * p * C, -1), "bpk,kd->bpd", cfg.dtype)
