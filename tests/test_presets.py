"""Full-size configs: parameter counts from jax.eval_shape equal transformers' models built on the meta
device from the same config; configs survive the trip through transformers' config classes."""

import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from vlmcls_jax.convert import abstract_model, config_from_hf, config_to_hf
from vlmcls_jax.models.presets import PRESETS

EXPECTED = {"llava-hf/llava-1.5-7b-hf": 7_063_427_072, "llava-hf/llava-1.5-13b-hf": 13_351_494_656,
            "openai/clip-vit-large-patch14-336": 427_944_193}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_parameter_count_equals_transformers(name):
    cfg = PRESETS[name]
    ours = sum(int(np.prod(v.shape)) for _, v in nnx.to_flat_state(nnx.state(abstract_model(cfg), nnx.Param)))
    hf_cfg = config_to_hf(cfg)
    with torch.device("meta"):
        model = transformers.CLIPModel(hf_cfg) if name.startswith("openai") \
            else transformers.LlavaForConditionalGeneration(hf_cfg)
    assert ours == sum(p.numel() for p in model.parameters()) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trip(name):
    assert config_from_hf(config_to_hf(PRESETS[name])) == PRESETS[name]
