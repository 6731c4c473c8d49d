"""Scanned layers: L identical layers stored as one module whose every parameter has a leading layer axis,
run by `jax.lax.scan`, so XLA compiles the layer once instead of L times (compile time nearly flat in depth).

    layers = stack_layers([DecoderLayer(cfg, rngs=rngs) for _ in range(L)])   # Param [L, ...]
    x, ys = scan_layers(layers, body, x, xs)       # body(layer, x, xs_i) -> (x, ys_i); layer is layer i

The stacked parameters' `logical_axes` metadata gains a leading "layers" axis (replicated by the sharding
rules), and checkpoints keep transformers' per-layer names: the converter splits a stacked parameter into
`...layers.{i}...` keys and stacks them back (`convert.hf`).  A model chooses this by its config
(`LlamaConfig.scan_layers`); unscanned layers stay an `nnx.List`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

LAYER_AXIS = "layers"


def stack_layers(layers: list[nnx.Module]) -> nnx.Module:
    """L modules of one structure -> one module of that structure whose variables are stacked on axis 0."""
    graphdef, first = nnx.split(layers[0])
    states = [first] + [nnx.split(layer)[1] for layer in layers[1:]]
    for i, state in enumerate(states[1:], 1):
        if jax.tree.structure(state) != jax.tree.structure(first):
            raise ValueError(f"layer {i} does not have layer 0's structure; only identical layers can be stacked")

    def stack(*variables: nnx.Variable) -> nnx.Variable:
        axes = variables[0].get_metadata().get("logical_axes")
        meta = {} if axes is None else {"logical_axes": (LAYER_AXIS,) + tuple(axes)}
        return variables[0].replace(jnp.stack([v[...] for v in variables]), **meta)

    is_var = lambda x: isinstance(x, nnx.Variable)
    return nnx.merge(graphdef, jax.tree.map(stack, *states, is_leaf=is_var))


def unstack_layers(layers: nnx.Module) -> nnx.List:
    """The inverse of `stack_layers`: an `nnx.List` of L modules, module i holding slice i of every variable.
    Under jit the slices are copies; `inference.generate` makes them once per call, outside its decode loop,
    where XLA:CPU would otherwise copy every layer's weights out of the stack on every step."""
    graphdef, state = nnx.split(layers)
    return nnx.List([nnx.merge(graphdef, jax.tree.map(lambda a: a[i], state)) for i in range(num_stacked(layers))])


def num_stacked(layers: nnx.Module) -> int:
    """L of a module built by `stack_layers`."""
    return jax.tree.leaves(nnx.state(layers))[0].shape[0]


def scan_layers(layers: nnx.Module, body: Callable, carry, xs=None, *, remat: bool = False):
    """`jax.lax.scan` of `body(layer_i, carry, xs_i) -> (carry, ys_i)` over the stacked layers (and over axis
    0 of `xs`, a pytree of [L, ...] arrays, or None).  remat: recompute each layer's activations in the
    backward pass (`jax.checkpoint` of the body) instead of storing them.  Returns (carry, ys stacked [L, ...])."""
    graphdef, state = nnx.split(layers)

    def step(carry, inputs):
        layer_state, x = inputs
        return body(nnx.merge(graphdef, layer_state), carry, x)

    return jax.lax.scan(jax.checkpoint(step) if remat else step, carry, (state, xs))
