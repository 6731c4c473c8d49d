"""Probe features: each named feature equals the same quantity computed directly from the model; chunks
on disk resume, split over shares, and load back in the examples' order."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

import train_fixtures
from vlmcls_jax.analysis.features import FeatureSettings, extract_features, load_features
from vlmcls_jax.data.preprocess import ClipPreprocessConfig, preprocess_batch
from vlmcls_jax.data.prompts import OPEN_QUESTION, llava_prompt, tokenize_prompts

PRE = ClipPreprocessConfig(size=28, crop_size=(28, 28))
FEATURES = ("llm:-1/last", "llm:-1/mean", "llm:1/index:0", "llm:2/index:-2", "vision/mean", "vision/cls",
            "projector/mean")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return train_fixtures.eval_world(tmp_path_factory.mktemp("feat"), 5)


def direct(model, tokenizer, example):
    """The features of one example, from one unpadded forward pass."""
    ids = tokenize_prompts(tokenizer, [llava_prompt(OPEN_QUESTION)], model.config.num_image_tokens)["input_ids"]
    px = preprocess_batch([example.image], PRE, pad_to_square=False)
    hs = model.decode(jnp.asarray(ids), pixel_values=jnp.asarray(px), output_hidden_states=True).hidden_states
    n = model.config.vision_config.num_hidden_layers
    layer = model.config.feature_layers[0] % (n + 1)
    vision = np.asarray(model.vision_tower.hidden_states(jnp.asarray(px), num_layers=layer)[layer])[0]
    return {"llm:-1/last": np.asarray(hs[-1])[0, -1], "llm:-1/mean": np.asarray(hs[-1])[0].mean(0),
            "llm:1/index:0": np.asarray(hs[1])[0, 0], "llm:2/index:-2": np.asarray(hs[2])[0, -2],
            "vision/mean": vision[1:].mean(0), "vision/cls": vision[0],
            "projector/mean": np.asarray(model.get_image_features(jnp.asarray(px)))[0].mean(0)}


def test_features_equal_direct_computation_and_resume(world, tmp_path):
    model, tok, examples, _ = world
    settings = FeatureSettings(features=FEATURES, batch_size=2, chunk_size=2, length_multiple=64)
    assert extract_features(model, tok, examples[:3], str(tmp_path), settings, PRE) == 3
    assert extract_features(model, tok, examples, str(tmp_path), settings, PRE) == 2   # resumes: only 2 new
    ids, labels, feats = load_features(str(tmp_path), examples)
    assert list(ids) == [e.id for e in examples] and list(labels) == [e.label for e in examples]
    for i, e in enumerate(examples):
        want = direct(model, tok, e)      # prompts are left-padded to 64 in the batch; here unpadded
        for name in FEATURES:
            np.testing.assert_allclose(feats[name][i], want[name], atol=2e-5, err_msg=name)


def test_shares_and_errors(world, tmp_path):
    model, tok, examples, _ = world
    settings = FeatureSettings(features=("llm:-1/last",), batch_size=2)
    for i in range(2):
        extract_features(model, tok, examples, str(tmp_path), settings, PRE, shard=(i, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part0-of-2", "part1-of-2"]
    ids, _, feats = load_features(str(tmp_path), examples)
    assert feats["llm:-1/last"].shape[0] == 5 and list(ids) == [e.id for e in examples]
    with pytest.raises(ValueError, match="1 examples have no features"):
        load_features(str(tmp_path), examples + [dataclasses.replace(examples[0], id="nope")])
    with pytest.raises(FileNotFoundError, match="no feature chunks"):
        load_features(str(tmp_path / "empty"))
    for bad in ("llm/last", "vision/last", "projector/cls", "llm:-1/cls"):
        with pytest.raises(ValueError, match="feature"):
            FeatureSettings(features=(bad,))
