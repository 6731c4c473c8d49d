"""Scanned decoder layers (`scan_layers=True`, models/scan.py) against transformers and against the same
model unscanned: logits, every layer's hidden states, KV-cache generation, class scoring, gradients (with
and without remat), LoRA on stacked layers, conversion both ways with per-layer keys, shardings, and the
refusals."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import tiny_hf
from vlmcls_jax import sharding as shd
from vlmcls_jax.convert import hf_config, load_hf, save_hf
from vlmcls_jax.inference.generate import generate
from vlmcls_jax.inference.scoring import score_candidates
from vlmcls_jax.models import LlamaConfig, LlamaForCausalLM
from vlmcls_jax.models.scan import num_stacked, stack_layers
from vlmcls_jax.train.lora import apply_lora

L = 3
IDS = np.array([[0, 0, 1, 99, 99, 99, 99, 5, 6, 7], [1, 99, 99, 99, 99, 8, 9, 10, 11, 12]])
MASK = (np.arange(10)[None] >= np.array([[2], [0]])).astype(np.int32)
PIXELS = np.random.default_rng(0).standard_normal((2, 28, 28, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llava")
    ref = tiny_hf.llava(folder, text={"num_hidden_layers": L})
    return folder, ref


@pytest.fixture(scope="module")
def both(llava_dir):
    folder, _ = llava_dir
    return load_hf(folder), load_hf(folder, scan_layers=True)


def test_stacked_parameters_have_a_layer_axis(both):
    plain, scanned = both
    layers = scanned.language_model.model.layers
    assert num_stacked(layers) == L
    q = layers.self_attn.q_proj.kernel
    assert q.shape == (L, 32, 32)
    assert q.get_metadata()["logical_axes"] == ("layers", "embed", "heads")
    for i in range(L):
        np.testing.assert_array_equal(q[...][i], plain.language_model.model.layers[i].self_attn.q_proj.kernel[...])


def test_scanned_logits_and_hidden_states_match_transformers(llava_dir, both):
    folder, ref = llava_dir
    plain, scanned = both
    with torch.no_grad():
        out = ref(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK),
                  pixel_values=torch.tensor(PIXELS.transpose(0, 3, 1, 2)), output_hidden_states=True)
    logits, _ = scanned(IDS, attention_mask=MASK, pixel_values=PIXELS)
    real = MASK.astype(bool)
    np.testing.assert_allclose(np.asarray(logits)[real], out.logits.numpy()[real], atol=2e-5)
    mine = scanned.decode(IDS, attention_mask=MASK, pixel_values=PIXELS, output_hidden_states=True).hidden_states
    base = plain.decode(IDS, attention_mask=MASK, pixel_values=PIXELS, output_hidden_states=True).hidden_states
    assert len(mine) == len(base) == L + 1
    for a, b, r in zip(mine, base, out.hidden_states):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
        np.testing.assert_allclose(np.asarray(a)[real], r.numpy()[real], atol=2e-5)


def test_scanned_generation_and_scoring_match_unscanned(both):
    plain, scanned = both
    kw = dict(max_new_tokens=6, eos_token_id=[], pad_token_id=0)
    np.testing.assert_array_equal(generate(scanned, IDS, MASK, PIXELS, **kw), generate(plain, IDS, MASK, PIXELS, **kw))
    assert scanned.language_model.init_cache(2, 8).keys.shape == (L, 2, 2, 8, 8)     # [L, B, K, S, H]
    candidates = [[5], [6, 7], [6, 8, 9], [10, 11, 12, 13]]
    s_scan, _ = score_candidates(scanned, IDS, MASK, candidates, PIXELS, chunk_size=4)
    s_plain, _ = score_candidates(plain, IDS, MASK, candidates, PIXELS, chunk_size=4)
    np.testing.assert_allclose(np.asarray(s_scan), np.asarray(s_plain), atol=2e-5)


@pytest.mark.parametrize("remat", [False, True], ids=["plain", "remat"])
def test_scanned_gradients_match_unscanned(remat):
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=L,
                      num_attention_heads=4, num_key_value_heads=2, remat=remat)
    ids = jnp.arange(12).reshape(2, 6) % 64
    plain = LlamaForCausalLM(cfg, rngs=nnx.Rngs(0))
    scanned = LlamaForCausalLM(cfg, rngs=nnx.Rngs(0))
    scanned.model.layers = stack_layers(list(plain.model.layers))
    scanned.config = scanned.model.config = dataclasses.replace(cfg, scan_layers=True)

    def grads(model):
        graphdef, params = nnx.split(model)
        loss = lambda p: jax.nn.log_softmax(nnx.merge(graphdef, p)(ids)[0]).mean()
        return jax.jit(jax.grad(loss))(params)

    g_plain, g_scan = grads(plain), grads(scanned)
    for i in range(L):
        for name in ("q_proj", "o_proj"):
            np.testing.assert_allclose(g_scan["model"]["layers"]["self_attn"][name]["kernel"][...][i],
                                       g_plain["model"]["layers"][i]["self_attn"][name]["kernel"][...],
                                       rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g_scan["lm_head"]["kernel"][...], g_plain["lm_head"]["kernel"][...],
                               rtol=1e-4, atol=1e-6)


def test_scanned_model_saves_per_layer_keys_that_transformers_loads(llava_dir, both, tmp_path):
    folder, ref = llava_dir
    _, scanned = both
    save_hf(scanned, tmp_path / "out", max_shard_bytes=40_000)   # several shards: layers split across files
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())["weight_map"]
    assert {f"language_model.model.layers.{i}.mlp.down_proj.weight" for i in range(L)} <= set(index)
    back = type(ref).from_pretrained(tmp_path / "out").eval()
    for (name, a), (_, b) in zip(ref.state_dict().items(), back.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    again = load_hf(tmp_path / "out", scan_layers=True)      # the shards' stacked slices reassemble
    for a, b in zip(jax.tree.leaves(nnx.state(again)), jax.tree.leaves(nnx.state(scanned))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_stacked_parameters_shard_with_a_replicated_layer_axis(llava_dir):
    folder, _ = llava_dir
    mesh = shd.make_mesh((2, 2, 2))
    cfg = hf_config.with_decoder_options(hf_config.load_config(folder), scan_layers=True)
    model = load_hf(folder, scan_layers=True, shardings=shd.path_shardings(cfg, mesh))
    spec = model.language_model.model.layers.mlp.gate_proj.kernel[...].sharding.spec
    assert spec[0] is None and "tensor" in jax.tree.leaves(tuple(spec))
    logits, _ = jax.jit(lambda m: m(IDS, attention_mask=MASK, pixel_values=PIXELS))(model)
    plain, _ = load_hf(folder)(IDS, attention_mask=MASK, pixel_values=PIXELS)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(plain), atol=2e-5)


def test_lora_on_scanned_layers_equals_lora_on_unscanned(both, tmp_path):
    """LoRA on stacked layers (one adapter per layer, stacked): the same logits and gradients as per-layer
    adapters holding the same values, the same merged kernels, and `save_hf` writes the same merged weights."""
    from vlmcls_jax.train.lora import merge_lora
    plain, scanned = nnx.clone(both[0]), nnx.clone(both[1])
    apply_lora(plain, rank=2, alpha=4.0)
    assert len(apply_lora(scanned, rank=2, alpha=4.0)) == 7          # q k v o gate up down, each stacked
    rng = np.random.default_rng(0)
    for name in ("self_attn/q_proj", "mlp/down_proj", "self_attn/v_proj"):
        stacked = scanned.language_model.model.layers
        for part in name.split("/"):
            stacked = getattr(stacked, part)
        for leaf in ("lora_a", "lora_b"):
            values = rng.standard_normal(getattr(stacked.lora, leaf).shape).astype(np.float32)
            getattr(stacked.lora, leaf)[...] = jnp.asarray(values)
            for i in range(L):
                layer = plain.language_model.model.layers[i]
                for part in name.split("/"):
                    layer = getattr(layer, part)
                getattr(layer.lora, leaf)[...] = jnp.asarray(values[i])
    assert scanned.language_model.model.layers.self_attn.q_proj.lora.lora_a.get_metadata()["logical_axes"] == \
        ("layers", "embed", None)
    logits = lambda m: np.asarray(m(IDS, attention_mask=MASK, pixel_values=PIXELS)[0])
    np.testing.assert_allclose(logits(scanned), logits(plain), atol=2e-5)

    def grad_a(model):   # d loss / d lora_a of q_proj, per layer
        graphdef, lora, rest = nnx.split(model, nnx.All(nnx.Param, nnx.PathContains("lora")), ...)
        loss = lambda p: jax.nn.log_softmax(nnx.merge(graphdef, p, rest)(IDS, attention_mask=MASK,
                                                                           pixel_values=PIXELS)[0]).mean()
        return jax.grad(loss)(lora)["language_model"]["model"]["layers"]
    g_scan, g_plain = grad_a(scanned), grad_a(plain)
    for i in range(L):
        np.testing.assert_allclose(g_scan["self_attn"]["q_proj"]["lora"]["lora_a"][...][i],
                                   g_plain[i]["self_attn"]["q_proj"]["lora"]["lora_a"][...], rtol=1e-4, atol=1e-6)
    save_hf(scanned, tmp_path / "scanned")
    save_hf(plain, tmp_path / "plain")
    a, b = load_hf(tmp_path / "scanned"), load_hf(tmp_path / "plain")
    np.testing.assert_allclose(logits(a), logits(b), atol=2e-5)
    np.testing.assert_allclose(logits(merge_lora(scanned)), logits(plain), atol=2e-5)


def test_refusals_name_the_option_and_the_layer(llava_dir, tmp_path, both):
    tiny_hf.clip(tmp_path / "clip")
    with pytest.raises(ValueError, match="config.model.scan_layers"):
        load_hf(tmp_path / "clip", scan_layers=True)
    folder, _ = llava_dir
    bad = tmp_path / "short"
    tiny_hf.llava(bad, text={"num_hidden_layers": L, "intermediate_size": 48})
    with pytest.raises(ValueError, match=r"layer 0 of the stack\) expects"):
        load_weights_into(bad, folder)


def load_weights_into(weights_folder, config_folder):
    """Loads `weights_folder`'s tensors into the scanned model of `config_folder`'s config."""
    from vlmcls_jax.convert.hf import load_weights, safetensors_files
    cfg = hf_config.with_decoder_options(hf_config.load_config(config_folder), scan_layers=True)
    return load_weights(cfg, safetensors_files(weights_folder))


def test_jobs_load_scanned_models_from_the_config(llava_dir):
    """`config.model.scan_layers` reaches the training and evaluation loaders."""
    from vlmcls_jax import defaults
    from vlmcls_jax.train.trainer import load_model

    folder, _ = llava_dir
    config = defaults.train_config()
    config.model.checkpoint, config.model.scan_layers, config.model.remat = str(folder), True, True
    model, _ = load_model(config, shd.make_mesh((-1, 1, 1)))
    assert model.config.text_config.scan_layers and model.config.text_config.remat
    assert num_stacked(model.language_model.model.layers) == L
    for job_config in (defaults.eval_config(), defaults.probe_config(), defaults.imagewikiqa_config()):
        assert job_config.model.scan_layers is False
