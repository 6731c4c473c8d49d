"""Converters: every LLaVA key layout loads to the same params; save_hf round trips through transformers (no
missing / unexpected keys, identical weights and outputs); sharded and bfloat16 saves; errors name the keys."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from safetensors.torch import save_file as save_torch

import tiny_hf
from vlmcls_jax.convert import config_from_hf, load_hf, save_hf


def params(model):
    return {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def assert_same_params(a, b, what=""):
    assert a.keys() == b.keys(), what
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), (what, k)


def file_keys(folder):
    keys = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            with safe_open(str(folder / name), "np") as f:
                keys += list(f.keys())
    return keys


@pytest.fixture(scope="module")
def llava_src(tmp_path_factory):
    """A tiny HF LLaVA saved by save_pretrained, and our model loaded from it."""
    folder = tmp_path_factory.mktemp("llava_src")
    ref = tiny_hf.llava(folder)
    return ref, folder, load_hf(str(folder))


# ------------------------------------------------------------------------------------------------ layouts

def write_layout(src_model, folder, rename):
    """The model's in-memory state_dict under other key names (a hub layout), with its config.json."""
    folder.mkdir()
    state = {rename(k): v.detach().clone() for k, v in src_model.state_dict().items()}   # clone: tied weights
    save_torch(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    src_model.config.save_pretrained(folder)
    return set(state)


def to_v4(key):
    """transformers-4 hub files (e.g. llava-hf/llava-1.5-7b-hf)."""
    key = key.replace("model.vision_tower.", "vision_tower.vision_model.")
    key = key.replace("model.language_model.", "language_model.model.")
    key = key.replace("model.multi_modal_projector.", "multi_modal_projector.")
    return "language_model." + key if key.startswith("lm_head.") else key


LAYOUTS = {
    "v4_hub": to_v4,
    "memory": lambda k: k,                                                   # model.vision_tower.*, lm_head.*
    "memory_v4": lambda k: k.replace("model.vision_tower.", "model.vision_tower.vision_model."),
}


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_all_llava_layouts_load_to_the_same_params(tmp_path, tied):
    ref = tiny_hf.llava(tmp_path / "v5", text={"tie_word_embeddings": tied})
    # What transformers 5 writes: vision_tower.* (no vision_model.), language_model.model.*, language_model.lm_head.
    v5_keys = file_keys(tmp_path / "v5")
    assert {k.split(".")[0] for k in v5_keys} == {"vision_tower", "multi_modal_projector", "language_model"}
    assert not any(k.startswith("vision_tower.vision_model.") for k in v5_keys)
    assert ("language_model.lm_head.weight" in v5_keys) != tied
    base = params(load_hf(str(tmp_path / "v5")))
    assert ("language_model/lm_head/kernel" in {"/".join(map(str, k)) for k in base}) != tied
    for name, rename in LAYOUTS.items():
        keys = write_layout(ref, tmp_path / name, rename)
        if name == "v4_hub":
            assert "vision_tower.vision_model.post_layernorm.weight" in keys
            assert "language_model.lm_head.weight" in keys            # tied models list it too: it is skipped
        assert_same_params(params(load_hf(str(tmp_path / name))), base, name)


# ------------------------------------------------------------------------------------------------ round trips

KINDS = {
    "llava": lambda f: tiny_hf.llava(f),
    "llava_tied_layers_full": lambda f: tiny_hf.llava(f, text={"tie_word_embeddings": True},
                                                      vision_feature_layer=[-2, -3],
                                                      vision_feature_select_strategy="full"),
    "clip": lambda f: tiny_hf.clip(f, text={"eos_token_id": 7}),
    "llama": lambda f: tiny_hf.llama(f),
    "llama_tied_llama3": lambda f: tiny_hf.llama(f, tie_word_embeddings=True, head_dim=16,
                                                 rope_parameters={"rope_type": "llama3", "rope_theta": 5e5,
                                                                  "factor": 8.0, "low_freq_factor": 1.0,
                                                                  "high_freq_factor": 4.0,
                                                                  "original_max_position_embeddings": 8}),
}


def hf_outputs(model, kind):
    ids = torch.tensor([[1, 7, 5, 6, 2]])
    with torch.no_grad():
        if kind.startswith("clip"):
            out = model(input_ids=ids, pixel_values=tiny_hf.nchw(tiny_hf.rand_pixels(1)))
            return [out.logits_per_image, out.text_embeds, out.image_embeds]
        if kind.startswith("llava"):
            n = 5 if "full" in kind else 4
            ids = torch.tensor([[1, 7] + [99] * n + [5]])
            return [model(input_ids=ids, pixel_values=tiny_hf.nchw(tiny_hf.rand_pixels(1))).logits]
        return [model(input_ids=ids).logits]


@pytest.mark.parametrize("kind", list(KINDS))
def test_save_hf_round_trip_through_transformers(tmp_path, kind):
    ref = KINDS[kind](tmp_path / "src")
    ours = load_hf(str(tmp_path / "src"))
    save_hf(ours, str(tmp_path / "out"))
    generates = kind != "clip"      # a generation config as transformers' own save_pretrained writes one
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", *(["generation_config.json"] if generates else []),
                                                    "model.safetensors"]
    if generates:
        written = json.loads((tmp_path / "out" / "generation_config.json").read_text())
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            assert written.get(key) == getattr(ref.generation_config, key), key
    again, info = type(ref).from_pretrained(str(tmp_path / "out"), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert again.config.architectures == [type(ref).__name__]
    ref_state, again_state = ref.state_dict(), again.state_dict()
    assert ref_state.keys() == again_state.keys()
    for k in ref_state:
        assert ref_state[k].dtype == again_state[k].dtype and torch.equal(ref_state[k], again_state[k]), k
    # Same weights, so the same outputs (up to float32 rounding: a freshly built CLIPModel and one loaded from
    # disk differ by ~4e-7 in torch itself, whichever folder it is loaded from).
    for a, b in zip(hf_outputs(ref, kind), hf_outputs(again.eval(), kind)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert config_from_hf(again.config) == ours.config
    assert_same_params(params(load_hf(str(tmp_path / "out"))), params(ours), "our reload")


def test_clip_text_special_ids_survive_save_hf(tmp_path):
    tiny_hf.clip(tmp_path / "src")                               # bos 1, pad 0, eos 2
    save_hf(load_hf(str(tmp_path / "src")), str(tmp_path / "out"))
    text = json.loads((tmp_path / "out" / "config.json").read_text())["text_config"]
    assert (text["bos_token_id"], text["pad_token_id"], text["eos_token_id"]) == (1, 0, 2)


# ------------------------------------------------------------------------------------------------ sharding, dtypes

def test_sharded_save_writes_an_index_and_reloads(llava_src, tmp_path):
    ref, _, ours = llava_src
    save_hf(ours, str(tmp_path / "out"), max_shard_bytes=20_000)
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 2 and sorted(f for f in os.listdir(tmp_path / "out") if f.endswith(".safetensors")) == files
    assert files[0] == f"model-00001-of-{len(files):05d}.safetensors"
    assert not [f for f in os.listdir(tmp_path / "out") if f.endswith(".tmp")]
    total = 0
    for name in files:
        with safe_open(str(tmp_path / "out" / name), "np") as f:
            sizes = [f.get_tensor(k).nbytes for k in f.keys()]
            assert all(index["weight_map"][k] == name for k in f.keys())
        assert sum(sizes) <= 20_000 or len(sizes) == 1                       # one tensor may exceed the limit
        total += sum(sizes)
    assert index["metadata"]["total_size"] == total
    assert_same_params(params(load_hf(str(tmp_path / "out"))), params(ours), "sharded reload")
    again, info = transformers.LlavaForConditionalGeneration.from_pretrained(str(tmp_path / "out"),
                                                                           output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    for k, v in ref.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32_compute", "bf16_compute"])
def test_bfloat16_params_save_and_reload(llava_src, tmp_path, dtype):
    """param_dtype=bfloat16 is saved as bfloat16 tensors with dtype "bfloat16" in config.json; our reload and
    transformers' both get the float32 weights rounded to bfloat16 (round-to-nearest-even on both sides)."""
    ref, folder, _ = llava_src
    model = load_hf(str(folder), dtype=dtype, param_dtype=jnp.bfloat16)
    save_hf(model, str(tmp_path / "out"), max_shard_bytes=20_000 if dtype == jnp.bfloat16 else 2**30)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["text_config"]["dtype"] == "bfloat16"
    for name in os.listdir(tmp_path / "out"):
        if name.endswith(".safetensors"):
            with safe_open(str(tmp_path / "out" / name), "pt") as f:
                assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}, name
    reloaded = load_hf(str(tmp_path / "out"), dtype=dtype, param_dtype=jnp.bfloat16)
    assert_same_params(params(reloaded), params(model), "bf16 reload")
    as_f32 = params(load_hf(str(tmp_path / "out")))                         # default float32 storage
    for k, v in params(model).items():
        assert as_f32[k].dtype == np.float32 and np.array_equal(as_f32[k], v.astype(np.float32)), k
    again, info = transformers.LlavaForConditionalGeneration.from_pretrained(str(tmp_path / "out"), dtype="auto",
                                                                           output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    for k, v in ref.state_dict().items():
        assert again.state_dict()[k].dtype == torch.bfloat16 and torch.equal(again.state_dict()[k], v.bfloat16()), k


# ------------------------------------------------------------------------------------------------ errors

def edit_checkpoint(src, dst, change):
    """A copy of `src` (single-file checkpoint) with `change(tensors)` applied to its tensor dict."""
    dst.mkdir()
    tensors = load_file(str(src / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    (dst / "config.json").write_text((src / "config.json").read_text())
    return str(dst)


def test_missing_unexpected_and_misshapen_keys_are_named(llava_src, tmp_path):
    _, src, _ = llava_src
    missing = edit_checkpoint(src, tmp_path / "missing", lambda t: t.pop("multi_modal_projector.linear_2.bias"))
    with pytest.raises(ValueError, match=r"missing keys \['multi_modal_projector.linear_2.bias'\] \(1\)"):
        load_hf(missing)
    extra = edit_checkpoint(src, tmp_path / "extra",
                            lambda t: t.update({"vision_tower.extra.weight": np.zeros(2, np.float32)}))
    with pytest.raises(ValueError, match=r"unexpected keys \['vision_tower.extra.weight'\] \(1\)"):
        load_hf(extra)
    shape = edit_checkpoint(src, tmp_path / "shape", lambda t: t.update(
        {"multi_modal_projector.linear_1.weight": np.zeros((3, 3), np.float32)}))
    with pytest.raises(ValueError, match=r"multi_modal_projector.linear_1.weight has shape \(3, 3\)"):
        load_hf(shape)
    # The same weight under two accepted names (v5 and v4 layouts) is an error, not a silent overwrite.
    twice = edit_checkpoint(src, tmp_path / "twice", lambda t: t.update(
        {"vision_tower.vision_model.post_layernorm.bias": t["vision_tower.post_layernorm.bias"]}))
    with pytest.raises(ValueError, match="appears twice"):
        load_hf(twice)
    # An integer tensor where a float parameter belongs is refused, not cast.
    dtype = edit_checkpoint(src, tmp_path / "dtype", lambda t: t.update(
        {"multi_modal_projector.linear_2.bias": t["multi_modal_projector.linear_2.bias"].astype(np.int32)}))
    with pytest.raises(ValueError, match=r"multi_modal_projector.linear_2.bias has dtype int32, the model's "
                                         r"multi_modal_projector/linear_2/bias is a floating-point parameter"):
        load_hf(dtype)


def test_non_parameter_buffers_are_ignored(llava_src, tmp_path):
    _, src, ours = llava_src
    buffers = edit_checkpoint(src, tmp_path / "buffers", lambda t: t.update({
        "vision_tower.embeddings.position_ids": np.arange(5)[None],
        "language_model.model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(4, np.float32)}))
    assert_same_params(params(load_hf(buffers)), params(ours), "with buffers")


def test_llama_tied_checkpoint_with_an_lm_head_copy_loads(tmp_path):
    tiny_hf.llama(tmp_path / "src", tie_word_embeddings=True)
    assert "lm_head.weight" not in file_keys(tmp_path / "src")
    base = params(load_hf(str(tmp_path / "src")))
    copy = edit_checkpoint(tmp_path / "src", tmp_path / "copy",
                           lambda t: t.update({"lm_head.weight": t["model.embed_tokens.weight"]}))
    assert_same_params(params(load_hf(copy)), base, "tied + lm_head copy")
    missing = edit_checkpoint(tmp_path / "src", tmp_path / "missing", lambda t: t.pop("model.norm.weight"))
    with pytest.raises(ValueError, match=r"missing keys \['model.norm.weight'\]"):
        load_hf(missing)


def test_refused_folders(tmp_path):
    tiny_hf.llama(tmp_path / "src")
    config = (tmp_path / "src" / "config.json").read_text()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text(config)
    (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"never unpickled")
    with pytest.raises(ValueError, match="pickle weights.*safetensors"):
        load_hf(str(tmp_path / "bin"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(config)
    with pytest.raises(ValueError, match="no \\*.safetensors"):
        load_hf(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="is a file"):
        load_hf(str(tmp_path / "src" / "model.safetensors"))
    (tmp_path / "gpt2").mkdir()
    transformers.GPT2Config().save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError, match="model_type 'gpt2' is not supported"):
        load_hf(str(tmp_path / "gpt2"))
    os.remove(tmp_path / "src" / "config.json")
    with pytest.raises(ValueError, match="config.json"):
        load_hf(str(tmp_path / "src"))
