"""Our `Blip2ForConditionalGeneration` equals transformers' BLIP-2 and InstructBLIP on the same random weights
(tiny models saved with save_pretrained, loaded with `load_hf`).

Variants: BLIP-2 with an OPT decoder (tied head, learned positions) and InstructBLIP with a Llama decoder (GQA,
untied head) whose Q-Former also reads an instruction (one row right-padded).  Q-Former: 3 layers,
cross-attention in layers 0 and 2; 3 query tokens; query_tokens randomised (transformers initialises them at 0).
Inputs: 2 images, image tokens before BOS as transformers 5's processors place them, one row left-padded; HF's
Llama is given our default positions (cumsum(mask) - 1), OPT computes the same from the mask itself.

Tolerance (float32): max abs diff <= 1e-4 on logits (scale ~0.5) and decoder hidden states (scale ~1-3);
1e-5 on image features (scale ~0.3) and the vision tower's output (scale ~3).  Measured maxima over both
variants: logits 1.0e-7, decoder hidden states 7.2e-7, image features 8.9e-8, vision last hidden state 3.6e-7,
vision pooled output 2.7e-7.  Greedy generation (6 tokens, 2 left-padded rows): token-for-token equal.
"""

import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from safetensors.numpy import load_file, save_file

import tiny_hf
from tiny_hf import assert_close
from vlmcls_jax.convert import config_from_hf, load_hf, save_hf
from vlmcls_jax.inference import generate
from vlmcls_jax.models import Blip2ForConditionalGeneration, LlamaForCausalLM, OPTForCausalLM

TOL = 1e-4
FEATURE_TOL = 1e-5
IMG = 99                                                    # tiny_hf.blip2's image_token_index
Q = 3                                                       # query tokens = image tokens per image
VARIANTS = {"blip2-opt": dict(), "instructblip-llama": dict(instruct=True, text="llama")}
# InstructBLIP: one instruction per image (Q-Former tokenizer ids), the second right-padded as BERT's tokenizer does.
QFORMER_IDS = np.array([[5, 6, 7, 8], [9, 10, 0, 0]])
QFORMER_MASK = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])


def two_image_batch():
    """Row 0 full, row 1 left-padded by 2; each row: one image's Q tokens, BOS, text."""
    return tiny_hf.left_padded([[IMG] * Q + [1, 7, 5, 6, 8], [IMG] * Q + [1, 9, 10]])


def qformer_inputs(instruct, rows=slice(None)):
    """(torch kwargs, our kwargs) with the Q-Former instruction, or two empty dicts for BLIP-2."""
    if not instruct:
        return {}, {}
    ids, mask = QFORMER_IDS[rows], QFORMER_MASK[rows]
    return (dict(qformer_input_ids=torch.tensor(ids), qformer_attention_mask=torch.tensor(mask)),
            dict(qformer_input_ids=jnp.asarray(ids), qformer_attention_mask=jnp.asarray(mask)))


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    ref = tiny_hf.blip2(folder, **VARIANTS[request.param])
    ours = load_hf(str(folder))
    assert isinstance(ours, Blip2ForConditionalGeneration)
    return request.param, ref, ours, folder


def test_config_and_structure(pair):
    variant, ref, ours, _ = pair
    cfg, instruct = ours.config, variant.startswith("instructblip")
    assert cfg.num_image_tokens == Q and cfg.vision_config.image_size == 28 and cfg.image_token_index == IMG
    assert cfg.instruction_input == instruct
    assert isinstance(ours.language_model, LlamaForCausalLM if instruct else OPTForCausalLM)
    assert (ours.language_model.lm_head is None) == (not instruct)                     # OPT ties its head
    layers = ours.qformer.encoder.layer
    assert [layer.crossattention is not None for layer in layers] == [True, False, True]
    assert (layers[0].intermediate is not None) == instruct      # BLIP-2's Q-Former has no text feed-forward
    assert hasattr(ours.qformer, "embeddings") == instruct and hasattr(ours.qformer, "layernorm") != instruct


@nnx.jit
def forward(model, ids, mask, px, qformer_kw):
    """Everything the parity tests compare, in one compiled program (eager tiny ops compile one by one)."""
    last, pooled = model.vision_model(px)
    features = model.get_image_features(px, **qformer_kw)
    logits, cache = model(ids, pixel_values=px, attention_mask=mask, **qformer_kw)
    out = model.decode(ids, pixel_values=px, attention_mask=mask, output_hidden_states=True, **qformer_kw)
    return dict(last=last, pooled=pooled, features=features, logits=logits, cache=cache, hidden=out.hidden_states)


@pytest.fixture(scope="module")
def outputs(pair):
    """(ours, transformers') outputs on the left-padded 2-image batch."""
    variant, ref, ours, _ = pair
    ids, mask = two_image_batch()
    px = tiny_hf.rand_pixels(2)
    hf_kw, our_kw = qformer_inputs(variant.startswith("instructblip"))
    got = forward(ours, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(px), our_kw)
    with torch.no_grad():
        vision = ref.vision_model(pixel_values=tiny_hf.nchw(px))
        features = ref.get_image_features(pixel_values=tiny_hf.nchw(px), **hf_kw).pooler_output
        if variant.endswith("llama"):                # OPT derives these positions from the mask by itself
            hf_kw["position_ids"] = torch.tensor(tiny_hf.hf_positions(mask))
        out = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=tiny_hf.nchw(px),
                  output_hidden_states=True, **hf_kw)
    return got, dict(vision=vision, features=features, out=out), mask.astype(bool)


def test_vision_tower_and_image_features(pair, outputs):
    variant = pair[0]
    got, want, _ = outputs
    assert_close(got["last"], want["vision"].last_hidden_state, FEATURE_TOL, f"{variant} vision last_hidden_state")
    assert_close(got["pooled"], want["vision"].pooler_output, FEATURE_TOL, f"{variant} vision pooler_output")
    assert got["features"].shape == (2, Q, 32)
    assert_close(got["features"], want["features"], FEATURE_TOL, f"{variant} image features")


def test_logits_and_hidden_states_left_padded(pair, outputs):
    variant = pair[0]
    got, want, real = outputs
    assert got["cache"] is None and got["logits"].dtype == jnp.float32
    assert_close(got["logits"], want["out"].logits, TOL, f"{variant} logits", where=real)
    expected = want["out"].language_model_outputs.hidden_states
    assert len(got["hidden"]) == len(expected) == 3
    for i, (a, b) in enumerate(zip(got["hidden"], expected)):
        assert_close(a, b, TOL, f"{variant} decoder hidden_states[{i}]", where=real)


def hf_greedy(ref, ids, mask, px, max_new_tokens, **kwargs):
    gen = transformers.GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                                        eos_token_id=ref.config.text_config.eos_token_id,
                                        pad_token_id=ref.config.text_config.pad_token_id)
    with torch.no_grad():
        out = ref.generate(pixel_values=tiny_hf.nchw(px), input_ids=torch.tensor(ids),
                           attention_mask=torch.tensor(mask), generation_config=gen, **kwargs).numpy()
    return out[:, ids.shape[1]:] if out.shape[1] > max_new_tokens else out       # (the prompt comes back too)


def test_greedy_generation_equals_transformers(pair):
    """Left-padded 2-row batch, 6 new tokens, through `inference.generate` (jitted prefill + while loop);
    InstructBLIP's Q-Former inputs travel with the pixels as a dict of image inputs."""
    variant, ref, ours, _ = pair
    ids, mask = two_image_batch()
    px = tiny_hf.rand_pixels(2, seed=3)
    n = 6
    hf_kw, our_kw = qformer_inputs(variant.startswith("instructblip"))
    expected = hf_greedy(ref, ids, mask, px, n, **hf_kw)
    got = generate(ours, ids, mask, dict(pixel_values=px, **{k: np.asarray(v) for k, v in our_kw.items()}),
                   max_new_tokens=n)
    got, rest = got[:, :expected.shape[1]], got[:, expected.shape[1]:]
    assert (rest == ours.config.text_config.pad_token_id).all()       # HF stops once every row emitted EOS
    np.testing.assert_array_equal(got, expected)
    assert len(np.unique(got)) > 2                                    # not a degenerate all-pad comparison


def test_save_hf_round_trip_through_transformers(pair, tmp_path):
    variant, ref, ours, _ = pair
    save_hf(ours, str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["config.json", "generation_config.json", "model.safetensors"]
    again, info = type(ref).from_pretrained(str(tmp_path), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert again.config.architectures == [type(ref).__name__]
    ref_state, again_state = ref.state_dict(), again.state_dict()
    assert ref_state.keys() == again_state.keys()
    for k in ref_state:
        assert torch.equal(ref_state[k], again_state[k]), k
    ids, mask = two_image_batch()
    px = tiny_hf.nchw(tiny_hf.rand_pixels(2))
    hf_kw, _ = qformer_inputs(variant.startswith("instructblip"))
    with torch.no_grad():
        a = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=px, **hf_kw).logits
        b = again.eval()(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), pixel_values=px,
                         **hf_kw).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert config_from_hf(again.config) == ours.config
    reloaded = nnx.to_flat_state(nnx.state(load_hf(str(tmp_path)), nnx.Param))
    original = dict(nnx.to_flat_state(nnx.state(ours, nnx.Param)))
    assert {p for p, _ in reloaded} == set(original)
    for p, v in reloaded:
        np.testing.assert_array_equal(np.asarray(v[...]), np.asarray(original[p][...]), err_msg=str(p))


# ------------------------------------------------------------------------------------------------ errors


def test_wrong_shaped_or_missing_tensor_is_a_clear_error(pair, tmp_path):
    _, _, _, folder = pair
    tensors = load_file(str(folder / "model.safetensors"))
    (tmp_path / "shape").mkdir()
    (tmp_path / "shape" / "config.json").write_text((folder / "config.json").read_text())
    bad = dict(tensors, **{"qformer.encoder.layer.0.crossattention.attention.key.weight": np.zeros((32, 16),
                                                                                                   np.float32)})
    save_file(bad, str(tmp_path / "shape" / "model.safetensors"))
    with pytest.raises(ValueError, match=r"crossattention\.attention\.key\.weight has shape \(16, 32\) \(after "
                                         r"layout change\).*expects \(32, 32\)"):
        load_hf(str(tmp_path / "shape"))
    (tmp_path / "missing").mkdir()
    (tmp_path / "missing" / "config.json").write_text((folder / "config.json").read_text())
    save_file({k: v for k, v in tensors.items() if k != "query_tokens"},
              str(tmp_path / "missing" / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys \['query_tokens'\]"):
        load_hf(str(tmp_path / "missing"))


def test_qformer_input_errors(pair):
    variant, _, ours, _ = pair
    px = jnp.asarray(tiny_hf.rand_pixels(2))
    with pytest.raises(ValueError, match="qformer_input_ids has 1 rows for 2 images"):
        ours.get_image_features(px, qformer_input_ids=jnp.asarray(QFORMER_IDS[:1]))
    if variant.startswith("blip2"):
        with pytest.raises(ValueError, match="BLIP-2's Q-Former, which reads no instruction"):
            ours.get_image_features(px, qformer_input_ids=jnp.asarray(QFORMER_IDS))
    else:
        with pytest.raises(ValueError, match="qformer_attention_mask shape"):
            ours.qformer(ours.query_tokens[...], jnp.zeros((1, 5, 32)), jnp.asarray(QFORMER_IDS[:1]),
                         jnp.asarray(QFORMER_MASK[:1, :2]))


def test_unsupported_configs_are_clear_errors():
    vision, qformer = dict(tiny_hf.BLIP2_VISION), dict(tiny_hf.QFORMER)
    t5 = transformers.Blip2Config(vision_config=vision, qformer_config=qformer, image_token_index=IMG,
                                  text_config=transformers.T5Config(d_model=32, num_layers=1, num_heads=2))
    with pytest.raises(ValueError, match="only opt and llama are supported"):
        config_from_hf(t5)
    legacy = transformers.Blip2Config(vision_config=vision, qformer_config=qformer,
                                      text_config=tiny_hf.opt_config())                  # no image_token_index
    with pytest.raises(ValueError, match="no image_token_index"):
        config_from_hf(legacy)
    projected = transformers.Blip2Config(vision_config=vision, qformer_config=qformer, image_token_index=IMG,
                                         text_config=tiny_hf.opt_config(word_embed_proj_dim=16))
    with pytest.raises(ValueError, match="word_embed_proj_dim=16 != hidden_size=32"):
        config_from_hf(projected)
