"""Our orbax checkpoint format and the `python -m vlmcls_jax.convert` CLI, both directions."""

import filecmp
import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vlmcls_jax import checkpoint
from vlmcls_jax.convert import load_hf, save_hf
from vlmcls_jax.models import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
from vlmcls_jax.models.config_io import config_from_dict, config_to_dict
from vlmcls_jax.models.presets import PRESETS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = LlavaConfig(
    vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   image_size=28, patch_size=14, projection_dim=16),
    text_config=LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, pad_token_id=0),
    image_token_index=63, vision_feature_layer=(-2, -1))


@pytest.mark.parametrize("cfg", [TINY, *PRESETS.values()], ids=["tiny", *PRESETS])
def test_config_dict_round_trip(cfg):
    d = json.loads(json.dumps(config_to_dict(cfg)))
    assert config_from_dict(d) == cfg


def test_config_dict_errors_name_the_field():
    d = config_to_dict(TINY)
    d["text_config"]["hidden_sise"] = 3
    with pytest.raises(ValueError, match=r"config.text_config: unknown fields \['hidden_sise'\]"):
        config_from_dict(d)
    with pytest.raises(ValueError, match="type"):
        config_from_dict({"type": "GPT"})


def _params(model):
    return {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def test_save_load_model(tmp_path):
    model = LlavaForConditionalGeneration(TINY, rngs=nnx.Rngs(0))
    checkpoint.save_model(model, str(tmp_path / "ckpt"))
    restored = checkpoint.load_model(str(tmp_path / "ckpt"))
    assert restored.config == TINY
    a, b = _params(model), _params(restored)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    bf16 = checkpoint.load_model(str(tmp_path / "ckpt"), dtype=jnp.bfloat16)
    assert bf16.language_model.lm_head.kernel[...].dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="already exists"):
        checkpoint.save_model(model, str(tmp_path / "ckpt"))
    with pytest.raises(ValueError, match="model_config.json"):
        checkpoint.load_model(str(tmp_path))


def test_cli_round_trip_is_byte_identical(tmp_path):
    hf_dir, orbax_dir, back = tmp_path / "hf", tmp_path / "orbax", tmp_path / "back"
    save_hf(LlavaForConditionalGeneration(TINY, rngs=nnx.Rngs(1)), str(hf_dir))
    run = lambda *args: subprocess.run([sys.executable, "-m", "vlmcls_jax.convert", *map(str, args)], cwd=REPO,
                                       capture_output=True, text=True, timeout=300)
    r = run("hf-to-orbax", hf_dir, orbax_dir)
    assert r.returncode == 0, r.stderr
    r = run("orbax-to-hf", orbax_dir, back)
    assert r.returncode == 0, r.stderr
    assert filecmp.cmp(hf_dir / "model.safetensors", back / "model.safetensors", shallow=False)
    assert load_hf(str(back)).config == TINY


def test_converted_checkpoints_carry_tokenizer_processor_and_generation_config(tmp_path):
    """hf-to-orbax keeps the source's tokenizer, image processor and generation config beside the orbax
    checkpoint; orbax-to-hf carries them on, so the export loads in the eval job's loader like the source.
    The orbax folder itself and a folder without a tokenizer are refused with one line saying what to do."""
    from transformers import AutoTokenizer

    import train_fixtures
    from vlmcls_jax.convert.__main__ import main as convert
    from vlmcls_jax.eval.loading import load_for_eval

    source = train_fixtures.tiny_checkpoint(tmp_path / "hf")
    assert convert(["hf-to-orbax", str(source), str(tmp_path / "orbax")]) == 0
    assert convert(["orbax-to-hf", str(tmp_path / "orbax"), str(tmp_path / "back")]) == 0
    for name in ("tokenizer_config.json", "preprocessor_config.json"):
        assert (tmp_path / "orbax" / name).read_bytes() == (source / name).read_bytes()
        assert (tmp_path / "back" / name).read_bytes() == (source / name).read_bytes()
    generation = json.loads((tmp_path / "back" / "generation_config.json").read_text())
    text_config = json.loads((source / "config.json").read_text())["text_config"]
    assert [generation[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")] == \
        [text_config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")]
    loaded = load_for_eval(str(tmp_path / "back"))
    text = "USER: <image>\nWhat is it?"
    assert loaded.tokenizer(text)["input_ids"] == AutoTokenizer.from_pretrained(source)(text)["input_ids"]
    assert loaded.preprocess == load_for_eval(str(source)).preprocess

    with pytest.raises(ValueError, match=r"is a vlmcls_jax orbax checkpoint.*orbax-to-hf"):
        load_for_eval(str(tmp_path / "orbax"))
    save_hf(LlavaForConditionalGeneration(TINY, rngs=nnx.Rngs(1)), str(tmp_path / "bare"))
    with pytest.raises(ValueError, match=r"has no tokenizer"):
        load_for_eval(str(tmp_path / "bare"))
    assert convert(["orbax-to-hf", str(source), str(tmp_path / "x")]) == 2     # not an orbax checkpoint
