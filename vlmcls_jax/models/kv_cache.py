"""A functional key/value cache for the decoders (Llama, OPT).

The cache is a pytree passed into and returned from the model, never mutated in place, so a prefix
cache can be reused (or broadcast over candidates) freely.  All rows share one write position `end`:
batched prompts are left-padded (right-aligned), and `valid` marks which slots hold real tokens.

  keys, values: one [B, K, S, H] array per layer (S = max_length slots), or for a model with scanned layers
                one [L, B, K, S, H] array each (`stacked=True`).  Heads before slots: a decode step's
                query-key and probability-value products are then plain batched products over (B, K) that read
                the cache as stored; a [B, S, K, H] cache made XLA copy every layer's keys and values into
                this order on every step (benchmarks/RESULTS.md, "decode step").
  valid:        bool[B, S]   slot holds a real (non-padding) token
  end:          int32[]      next slot to write; slots [0, end) are filled

Writing past `S` would be clamped by XLA's dynamic_update_slice and silently overwrite the last
slots, so callers size the cache for the prompt plus every token they will add (`generate` does).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class KVCache:
    keys: tuple[jax.Array, ...] | jax.Array
    values: tuple[jax.Array, ...] | jax.Array
    valid: jax.Array
    end: jax.Array

    @classmethod
    def init(cls, *, num_layers: int, batch: int, max_length: int, num_kv_heads: int, head_dim: int,
             dtype=jnp.float32, stacked: bool = False) -> KVCache:
        shape = (batch, num_kv_heads, max_length, head_dim)
        if stacked:
            keys, values = jnp.zeros((num_layers,) + shape, dtype), jnp.zeros((num_layers,) + shape, dtype)
        else:
            keys, values = (tuple(jnp.zeros(shape, dtype) for _ in range(num_layers)) for _ in range(2))
        return cls(keys=keys, values=values, valid=jnp.zeros((batch, max_length), bool),
                   end=jnp.zeros((), jnp.int32))

    @property
    def max_length(self) -> int:
        return self.valid.shape[1]

    def check_room(self, num_new: int) -> None:
        """Raises if `num_new` more tokens do not fit (only when `end` is concrete, i.e. outside jit)."""
        if isinstance(self.end, jax.core.Tracer):
            return
        if int(self.end) + num_new > self.max_length:
            raise ValueError(f"KV cache overflow: {int(self.end)} filled + {num_new} new > max_length {self.max_length}")

    def broadcast(self, batch: int) -> KVCache:
        """A batch-1 cache viewed as `batch` rows (for scoring many continuations of one prefix)."""
        b = lambda a: jnp.broadcast_to(a, (batch,) + a.shape[1:])
        per_layer = lambda kv: tuple(map(b, kv)) if isinstance(kv, tuple) else \
            jnp.broadcast_to(kv, kv.shape[:1] + (batch,) + kv.shape[2:])
        return KVCache(keys=per_layer(self.keys), values=per_layer(self.values), valid=b(self.valid),
                       end=self.end)
