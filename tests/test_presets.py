"""Full-size configs: parameter counts from jax.eval_shape (`abstract_model`) equal transformers' models built on
the meta device from `config_to_hf(cfg)`; configs survive the trip through transformers' config classes."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

import tiny_models
from vlmcls_jax.convert import abstract_model, config_from_hf, config_to_hf
from vlmcls_jax.convert.hf import _to_torch, canonical_key, hf_key
from vlmcls_jax.models import CLIPConfig, LlavaConfig, LlavaNextConfig
from vlmcls_jax.models.presets import PRESETS, preset, with_dtype

# Published sizes of the hub checkpoints.
EXPECTED = {"llava-hf/llava-1.5-7b-hf": 7_063_427_072, "llava-hf/llava-1.5-13b-hf": 13_351_494_656,
            "openai/clip-vit-large-patch14-336": 427_944_193,
            # LLaVA-NeXT: + image_newline [4096]; Mistral-7B's GQA (8 kv heads) and 14336-wide MLP.
            "llava-hf/llava-v1.6-mistral-7b-hf": 7_566_747_648, "llava-hf/llava-v1.6-vicuna-7b-hf": 7_063_431_168}
# BLIP-2 / InstructBLIP: EVA ViT-g 985,952,256 + Q-Former (BLIP-2 105,137,664; InstructBLIP 185,660,160 with its
# word/position embeddings and text feed-forward) + 32 x 768 query tokens + language_projection + the decoder
# (OPT-2.7B with 50304 vocabulary rows, tied: 2,651,678,720; Vicuna-7B / 13B with 32002 rows, untied).
EXPECTED.update({"Salesforce/blip2-opt-2.7b": 3_744_761_856, "Salesforce/instructblip-vicuna-7b": 7_913_218_816,
                 "Salesforce/instructblip-vicuna-13b": 14_191_459_072})


def test_every_preset_has_an_expected_count():
    assert set(PRESETS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_parameter_count_equals_transformers(name):
    cfg = PRESETS[name]
    leaves = nnx.to_flat_state(nnx.state(abstract_model(cfg), nnx.Param))
    ours = sum(int(np.prod(v.shape)) for _, v in leaves)
    hf_cfg = config_to_hf(cfg)
    cls = {LlavaConfig: transformers.LlavaForConditionalGeneration, CLIPConfig: transformers.CLIPModel,
           LlavaNextConfig: transformers.LlavaNextForConditionalGeneration}.get(type(cfg))
    cls = cls or getattr(transformers, hf_cfg.architectures[0])      # BLIP-2 / InstructBLIP: one config type
    with torch.device("meta"):
        model = cls(hf_cfg)
    assert ours == sum(p.numel() for p in model.parameters()) == EXPECTED[name]
    # The same tensors one by one, under the converter's naming rule (HF in-memory names -> file layout).
    hf_shapes = {canonical_key(k, cfg): tuple(p.shape) for k, p in model.named_parameters()}
    ours_shapes = {hf_key(path): _to_torch(np.broadcast_to(np.zeros((), bool), v.shape), str(path[-1])).shape
                   for path, v in leaves}                                  # zero-stride views: no memory
    assert ours_shapes == hf_shapes


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trip(name):
    cfg = PRESETS[name]
    assert config_from_hf(config_to_hf(cfg)) == cfg
    # And through config.json text, as save_hf / load_hf do.
    hf = config_to_hf(cfg)
    again = type(hf).from_dict(hf.to_dict())
    assert config_from_hf(again) == cfg
    if type(cfg) is LlavaConfig:
        assert cfg.num_image_tokens == hf.image_seq_length == 576                    # (336 / 14)^2 patches


def test_preset_dtypes():
    cfg = preset("llava-hf/llava-1.5-7b-hf", jnp.bfloat16)
    assert cfg.vision_config.dtype == cfg.text_config.param_dtype == jnp.bfloat16
    cfg = preset("openai/clip-vit-large-patch14-336", jnp.float32, jnp.bfloat16)
    assert cfg.text_config.dtype == jnp.float32 and cfg.vision_config.param_dtype == jnp.bfloat16
    tiny = with_dtype(tiny_models.LLAVA, jnp.float32, jnp.bfloat16)            # (a full-size eval_shape takes s)
    leaves = nnx.to_flat_state(nnx.state(abstract_model(tiny), nnx.Param))
    assert {v.dtype for _, v in leaves} == {jnp.dtype(jnp.bfloat16)}
    with pytest.raises(KeyError, match="unknown preset"):
        preset("llava-hf/llava-1.5-70b-hf")
