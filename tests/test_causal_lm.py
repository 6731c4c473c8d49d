"""The decoder stack both language models share (`models/causal_lm.py`): OPT run with scanned layers (stacked
parameters, one `jax.lax.scan`) equals OPT with a Python list of layers (OPT's own transformers parity:
tests/test_opt.py; Llama's scanned parity: tests/test_scan.py), through the full forward, every layer's hidden
states and the KV-cache path (scanned Llama generation against unscanned: tests/test_scan.py).  And the compiled
decode loop of `generate` copies neither the KV cache nor stacked weights (issue 22)."""

import dataclasses
import importlib
import re

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import tiny_hf
from vlmcls_jax.convert import load_hf
from vlmcls_jax.models import LlamaConfig, LlamaForCausalLM
from vlmcls_jax.models.scan import stack_layers

IDS, MASK = tiny_hf.left_padded([[1, 7, 5, 6, 8, 11, 12], [1, 9, 10, 13, 14]])


@pytest.fixture(scope="module")
def opt_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("opt")
    tiny_hf.opt(folder)
    return load_hf(str(folder)), load_hf(str(folder), scan_layers=True)


def test_opt_scanned_equals_list(opt_pair):
    plain, scanned = opt_pair
    assert scanned.config.scan_layers and scanned.model.decoder.layers.fc1.kernel.shape[0] == \
        plain.config.num_hidden_layers
    ids, mask = jnp.asarray(IDS), jnp.asarray(MASK)
    a = plain.decode(ids, attention_mask=mask, output_hidden_states=True)
    b = scanned.decode(ids, attention_mask=mask, output_hidden_states=True)
    assert len(a.hidden_states) == len(b.hidden_states) == plain.config.num_hidden_layers + 1
    for x, y in zip(a.hidden_states, b.hidden_states):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=2e-5)

    T, split = IDS.shape[1], 5                         # prefill, then one token at a time, under jit
    step = nnx.jit(lambda m, i, am, c: m(i, attention_mask=am, cache=c))
    logits = {}
    for name, model in (("plain", plain), ("scanned", scanned)):
        out, cache = step(model, ids[:, :split], mask[:, :split], model.init_cache(2, T))
        pieces = [out]
        for t in range(split, T):
            out, cache = step(model, ids[:, t:t + 1], mask[:, t:t + 1], cache)
            pieces.append(out)
        logits[name] = np.asarray(jnp.concatenate(pieces, 1))
    np.testing.assert_allclose(logits["scanned"], logits["plain"], atol=2e-5)


def _decode_loop_body(model, B: int, T: int, new: int) -> list[tuple[str, tuple[int, ...]]]:
    """(instruction name, output dims) of every instruction in the compiled body of `generate`'s decode loop."""
    gen = importlib.import_module("vlmcls_jax.inference.generate")
    graphdef, state = nnx.split(model)
    ids = jnp.ones((B, T), jnp.int32)
    hlo = gen._generate.lower(graphdef, state, ids, ids, {}, max_new_tokens=new, eos_ids=(), pad_id=0)
    text = hlo.compile().as_text()
    bodies = set(re.findall(r"while\(.*?body=(%[\w.-]+)", text))
    computations = re.split(r"\n(?=%|ENTRY)", text)
    body = max((c for c in computations if c.split(" ", 1)[0] in bodies), key=lambda c: c.count("fusion("))
    found = re.findall(r"^\s*(?:ROOT )?(%[\w.-]+) = \w+\[([\d,]*)\]", body, re.M)
    return [(name, tuple(int(d) for d in dims.split(",") if d)) for name, dims in found]


def test_decode_loop_copies_neither_cache_nor_weights():
    """Issue 22: in the compiled decode loop no instruction transposes or copies a layer's KV cache (its layout
    is the one the attention products read) and none slices a layer's weights out of a stack (scanned layers
    are unstacked once, before the loop).  A [B, S, K, H] cache or a per-step slice of stacked weights fails."""
    B, T, new = 2, 12, 4
    cfg = LlamaConfig(vocab_size=64, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    model = LlamaForCausalLM(cfg, rngs=nnx.Rngs(0))          # scanned: the list model's loop is the same
    model.model.layers = stack_layers(list(model.model.layers))
    model.config = model.model.config = dataclasses.replace(cfg, scan_layers=True)
    cache = sorted((B, 2, T + new, 12))
    weights = {(48, 48), (48, 24), (48, 80), (80, 48)}
    body = _decode_loop_body(model, B, T, new)
    assert any(name.startswith("%dynamic") or "update" in name for name, _ in body)      # found the loop
    moved = [n for n, dims in body if sorted(dims) == cache and ("copy" in n or "transpose" in n)]
    sliced = [n for n, dims in body if tuple(d for d in dims if d != 1) in weights and "slice" in n]
    assert not moved and not sliced, (moved, sliced)


def test_a_one_row_bfloat16_product_takes_the_two_row_path_and_equals_the_plain_product():
    """XLA:CPU's one-row bfloat16 product is ~10x slower than two rows (benchmarks/small_matmul.py), so
    `matmul` feeds a batch-1 decode step's row twice; the result is the plain product's."""
    import jax

    from vlmcls_jax.models.layers import matmul

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((1, 1, 64)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((64, 96)), jnp.bfloat16)
    ours = jax.jit(lambda x, w: matmul(x, w, "...d,dv->...v", jnp.bfloat16))
    plain = jnp.einsum("...d,dv->...v", x.astype(jnp.float32), w.astype(jnp.float32))
    np.testing.assert_allclose(np.asarray(ours(x, w)), np.asarray(plain), rtol=1e-5, atol=1e-5)
    hlo = ours.lower(x, w).compile().as_text()
    assert re.search(r"= f32\[2,96\]\S* dot\(", hlo), "the one-row product did not take the two-row path"
    assert not re.search(r"= f32\[1,96\]\S* dot\(", hlo)
