"""Converters: every LLaVA key layout loads; save_hf round trips through transformers; errors name keys."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from safetensors.numpy import save_file
from safetensors.torch import save_file as save_torch

import tiny_hf
from vlmcls_jax.convert import load_hf, save_hf


def params(model):
    return {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def write_layout(src_model, folder, rename):
    """The model's weights under other key names (a hub layout), with its config.json."""
    folder.mkdir()
    state = {rename(k): v.contiguous() for k, v in src_model.state_dict().items()}
    save_torch(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    src_model.config.save_pretrained(folder)


def to_v4(key):
    key = key.replace("model.vision_tower.", "vision_tower.vision_model.")
    key = key.replace("model.language_model.", "language_model.model.")
    key = key.replace("model.multi_modal_projector.", "multi_modal_projector.")
    return key.replace("lm_head.", "language_model.lm_head.") if key.startswith("lm_head.") else key


def test_all_llava_layouts_load_to_the_same_params(tmp_path):
    ref = tiny_hf.llava(tmp_path / "v5")
    base = params(load_hf(str(tmp_path / "v5")))
    write_layout(ref, tmp_path / "v4", to_v4)                    # transformers-4 hub files
    write_layout(ref, tmp_path / "mem", lambda k: k)             # in-memory names (model.*, lm_head.*)
    for layout in ("v4", "mem"):
        other = params(load_hf(str(tmp_path / layout)))
        assert other.keys() == base.keys()
        assert all(np.array_equal(other[k], base[k]) for k in base), layout


@pytest.mark.parametrize("kind", ["llava", "clip", "llama", "llama_tied"])
def test_save_hf_round_trip_through_transformers(tmp_path, kind):
    build = {"llava": tiny_hf.llava, "clip": tiny_hf.clip, "llama": tiny_hf.llama,
             "llama_tied": lambda f: tiny_hf.llama(f, tie_word_embeddings=True)}[kind]
    ref = build(tmp_path / "src")
    save_hf(load_hf(str(tmp_path / "src")), str(tmp_path / "out"))
    cls = type(ref)
    again, info = cls.from_pretrained(str(tmp_path / "out"), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    for (k, a), (k2, b) in zip(sorted(ref.state_dict().items()), sorted(again.state_dict().items())):
        assert k == k2 and torch.equal(a, b), k


def test_sharded_save_and_bfloat16(tmp_path):
    tiny_hf.llava(tmp_path / "src")
    model = load_hf(str(tmp_path / "src"), dtype=jnp.bfloat16)
    save_hf(model, str(tmp_path / "out"), max_shard_bytes=20_000)
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    files = set(index["weight_map"].values())
    assert len(files) > 1 and all((tmp_path / "out" / f).exists() for f in files)
    reloaded = load_hf(str(tmp_path / "out"), dtype=jnp.bfloat16)
    a, b = params(model), params(reloaded)
    assert all(np.array_equal(a[k], b[k]) and b[k].dtype == jnp.bfloat16 for k in a)
    again, info = transformers.LlavaForConditionalGeneration.from_pretrained(str(tmp_path / "out"),
                                                                           output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def edit_checkpoint(src, dst, change):
    from safetensors.numpy import load_file
    dst.mkdir()
    tensors = load_file(str(src / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(dst / "model.safetensors"))
    (dst / "config.json").write_text((src / "config.json").read_text())


def test_key_and_shape_errors_name_the_keys(tmp_path):
    tiny_hf.llava(tmp_path / "src")
    edit_checkpoint(tmp_path / "src", tmp_path / "missing",
                    lambda t: t.pop("multi_modal_projector.linear_2.bias"))
    with pytest.raises(ValueError, match=r"missing keys \['multi_modal_projector.linear_2.bias'\]"):
        load_hf(str(tmp_path / "missing"))
    edit_checkpoint(tmp_path / "src", tmp_path / "extra",
                    lambda t: t.update({"vision_tower.extra.weight": np.zeros(2, np.float32)}))
    with pytest.raises(ValueError, match=r"unexpected keys \['vision_tower.extra.weight'\]"):
        load_hf(str(tmp_path / "extra"))
    edit_checkpoint(tmp_path / "src", tmp_path / "shape", lambda t: t.update(
        {"multi_modal_projector.linear_1.weight": np.zeros((3, 3), np.float32)}))
    with pytest.raises(ValueError, match="multi_modal_projector.linear_1.weight has shape"):
        load_hf(str(tmp_path / "shape"))
    edit_checkpoint(tmp_path / "src", tmp_path / "buffers", lambda t: t.update(
        {"vision_tower.embeddings.position_ids": np.arange(5)[None]}))
    load_hf(str(tmp_path / "buffers"))                           # known non-parameter buffers are skipped


def test_pickle_only_and_missing_config_are_refused(tmp_path):
    (tmp_path / "bin").mkdir()
    tiny_hf.llama(tmp_path / "src")
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "src" / "config.json").read_text())
    (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match="pickle weights.*safetensors"):
        load_hf(str(tmp_path / "bin"))
    os.remove(tmp_path / "src" / "config.json")
    with pytest.raises(ValueError, match="config.json"):
        load_hf(str(tmp_path / "src"))
