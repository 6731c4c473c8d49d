"""`train.lora`: adapters start as the identity, target the 14 LLM linears of a 2-layer LLaVA, merge back into
the kernels exactly, and `save_hf` writes merged weights that `load_hf` reads back."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors import safe_open

from tiny_models import IMAGE_TOKEN, new_llava
from tiny_models import LLAVA as CFG
from vlmcls_jax.convert import load_hf, save_hf
from vlmcls_jax.models.layers import Linear
from vlmcls_jax.train.lora import LoRA, apply_lora, merge_lora


def inputs(seed=0, B=3, T=12):
    """(The shapes of test_objectives' batches, so that eager op compilations are shared in one session.)"""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, IMAGE_TOKEN, (B, T)).astype(np.int32)
    ids[:, 1:5] = IMAGE_TOKEN
    return dict(input_ids=jnp.asarray(ids), attention_mask=jnp.ones((B, T), jnp.int32),
                pixel_values=jnp.asarray(rng.standard_normal((B, 28, 28, 3)), jnp.float32))


def logits_of(model, x):
    return np.asarray(model(x["input_ids"], attention_mask=x["attention_mask"], pixel_values=x["pixel_values"])[0])


def params(model):
    return {"/".join(map(str, p)): np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def randomise_lora_b(model, seed=1, scale=0.05):
    rng = np.random.default_rng(seed)
    for _, node in nnx.iter_graph(model):
        if isinstance(node, LoRA):
            node.lora_b[...] = jnp.asarray(rng.standard_normal(node.lora_b[...].shape) * scale, jnp.float32)


EXPECTED_PATHS = sorted(f"language_model/model/layers/{i}/{m}" for i in range(2) for m in
                        ["self_attn/q_proj", "self_attn/k_proj", "self_attn/v_proj", "self_attn/o_proj",
                         "mlp/gate_proj", "mlp/up_proj", "mlp/down_proj"])


def test_apply_lora_targets_the_llm_linears_and_starts_as_identity():
    model = new_llava()
    x = inputs()
    before = logits_of(model, x)
    base = params(model)
    paths = apply_lora(model, rank=4, alpha=8, dropout=0.1)
    assert sorted(paths) == EXPECTED_PATHS and len(paths) == 14
    np.testing.assert_array_equal(logits_of(model, x), before)      # lora_b = 0: exactly the same
    after = params(model)
    assert all(np.array_equal(after[k], v) for k, v in base.items())  # base weights untouched, same paths
    lora_keys = sorted(k for k in after if k not in base)
    assert lora_keys == sorted(f"{p}/lora/lora_{ab}" for p in EXPECTED_PATHS for ab in "ab")
    q = model.language_model.model.layers[0].self_attn.q_proj.lora
    assert q.lora_a[...].shape == (32, 4) and q.lora_b[...].shape == (4, 32)
    assert q.scale == 2.0
    assert not np.any(np.asarray(q.lora_b[...])) and np.any(np.asarray(q.lora_a[...]))
    down = model.language_model.model.layers[1].mlp.down_proj.lora
    assert down.lora_a[...].shape == (64, 4) and down.lora_b[...].shape == (4, 32)
    # nothing outside the LLM's decoder layers got an adapter
    for path, node in nnx.iter_graph(model):
        if isinstance(node, Linear) and node.lora is not None:
            assert "/".join(map(str, path)) in EXPECTED_PATHS


def test_apply_lora_custom_targets_and_no_match_raises():
    model = new_llava()
    with pytest.raises(ValueError, match="match no Linear"):
        apply_lora(model, rank=2, alpha=2, targets=r"no_such_layer")
    with pytest.raises(ValueError, match="match no Linear"):
        apply_lora(model, rank=2, alpha=2, targets=[r"^model/layers", r"q_proj/kernel$"])
    assert all(node.lora is None for _, node in nnx.iter_graph(model) if isinstance(node, Linear))
    paths = apply_lora(model, rank=2, alpha=2, targets=[r"multi_modal_projector/linear_\d$", r"layers/1/.*q_proj$"])
    assert sorted(paths) == sorted(["multi_modal_projector/linear_1", "multi_modal_projector/linear_2",
                                    "language_model/model/layers/1/self_attn/q_proj",
                                    "vision_tower/encoder/layers/1/self_attn/q_proj"])


def test_lora_update_and_merge():
    model = new_llava()
    x = inputs()
    before = logits_of(model, x)
    apply_lora(model, rank=4, alpha=8, dropout=0.1)
    randomise_lora_b(model)
    adapted = logits_of(model, x)
    assert np.abs(adapted - before).max() > 1e-3
    # the update is (alpha / rank) * x @ A @ B on the layer's output
    lin = model.language_model.model.layers[0].self_attn.v_proj
    h = np.random.default_rng(3).standard_normal((5, 32)).astype(np.float32)
    expected = h @ np.asarray(lin.kernel[...]) + 2.0 * h @ np.asarray(lin.lora.lora_a[...]) @ np.asarray(
        lin.lora.lora_b[...])
    np.testing.assert_allclose(np.asarray(lin(jnp.asarray(h))), expected, rtol=1e-5, atol=1e-6)
    kernel = np.asarray(lin.kernel[...])
    delta = 2.0 * np.asarray(lin.lora.lora_a[...], np.float64) @ np.asarray(lin.lora.lora_b[...], np.float64)

    assert merge_lora(model) is model
    assert not any("lora" in k for k in params(model))
    assert all(node.lora is None for _, node in nnx.iter_graph(model) if isinstance(node, Linear))
    np.testing.assert_allclose(np.asarray(lin.kernel[...]), kernel + delta, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(logits_of(model, x), adapted, atol=1e-5, rtol=0)
    merge_lora(model)   # merging a merged model is a no-op
    np.testing.assert_allclose(logits_of(model, x), adapted, atol=1e-5, rtol=0)


def test_lora_dropout_only_in_training_mode():
    model = new_llava()
    x = inputs()
    apply_lora(model, rank=4, alpha=8, dropout=0.5)
    randomise_lora_b(model)
    a, b = logits_of(model, x), logits_of(model, x)
    np.testing.assert_array_equal(a, b)                               # deterministic by default
    train = nnx.view(model, deterministic=False, raise_if_not_found=False)
    nnx.reseed(train, dropout=0)
    c = logits_of(train, x)
    nnx.reseed(train, dropout=1)
    d = logits_of(train, x)
    assert np.abs(c - a).max() > 1e-4 and np.abs(c - d).max() > 1e-4


def test_save_hf_merges_lora(tmp_path):
    model = new_llava()
    apply_lora(model, rank=4, alpha=8, dropout=0.1)
    randomise_lora_b(model)
    x = inputs()
    adapted = logits_of(model, x)
    unmerged = params(model)
    save_hf(model, str(tmp_path))
    # the model itself is unchanged: still adapted, still unmerged
    assert params(model).keys() == unmerged.keys()
    assert all(np.array_equal(params(model)[k], v) for k, v in unmerged.items())
    with safe_open(str(tmp_path / "model.safetensors"), "np") as f:
        keys = list(f.keys())
        q_weight = f.get_tensor("language_model.model.layers.0.self_attn.q_proj.weight")
    assert keys and not any("lora" in k for k in keys)
    q = model.language_model.model.layers[0].self_attn.q_proj
    merged_q = np.asarray(q.kernel[...]) + np.asarray(q.lora.delta())
    np.testing.assert_allclose(q_weight, merged_q.T, rtol=1e-6, atol=1e-7)
    reloaded = load_hf(str(tmp_path))
    assert reloaded.config == CFG
    assert not any("lora" in k for k in params(reloaded))
    np.testing.assert_allclose(logits_of(reloaded, x), adapted, atol=1e-5, rtol=0)
