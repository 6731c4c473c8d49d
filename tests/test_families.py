"""The family registry (`convert/families.py`) is complete and each record's translators agree with it: every
model the package defines has a record, every config it defines belongs to one, and each record's configs
survive its HF translation and our own checkpoint format.  Configs only (no model is built): well under a second."""

import dataclasses
import importlib
import pkgutil
import typing

import pytest
from flax import nnx

import vlmcls_jax.models
from vlmcls_jax.convert import families
from vlmcls_jax.convert.families import FAMILIES, family_of, for_model_type
from vlmcls_jax.convert.hf_config import from_hf, to_hf
from vlmcls_jax.data.prompt_formats import PROMPT_FORMATS
from vlmcls_jax.models.config_io import CONFIG_TYPES, config_from_dict, config_to_dict
from vlmcls_jax.models.presets import OPEN_CLIP_PRESETS, PRESETS

MODULES = [importlib.import_module(f"vlmcls_jax.models.{m.name}")
           for m in pkgutil.iter_modules(vlmcls_jax.models.__path__)]


def defined(predicate) -> set:
    """Classes defined (not imported) in the modules of `vlmcls_jax.models` that satisfy `predicate`."""
    return {c for m in MODULES for c in vars(m).values()
            if isinstance(c, type) and c.__module__ == m.__name__ and predicate(c)}


def nested_configs(cls) -> set:
    """`cls` and every config class its fields can hold (unions included), recursively."""
    out = {cls}
    for hint in typing.get_type_hints(cls).values():
        for t in typing.get_args(hint) or (hint,):
            if dataclasses.is_dataclass(t) and t not in out:
                out |= nested_configs(t)
    return out


def examples(family) -> list:
    """The full-size presets of this family, and the decoders inside the VLM presets (bare LM families)."""
    configs = list(PRESETS.values()) + list(OPEN_CLIP_PRESETS.values())
    configs += [c.text_config for c in configs if hasattr(c, "text_config")]
    return [c for c in configs if type(c) is family.config]


def test_every_model_and_config_has_a_record():
    # A model the jobs run (one that generates, or a two-tower model) is a record's, or a base class of one.
    entry_points = defined(lambda c: issubclass(c, nnx.Module) and (hasattr(c, "init_cache") or
                                                                    hasattr(c, "get_text_features")))
    models = {f.model for f in FAMILIES}
    bases = {b for m in models for b in m.__mro__[1:]}
    assert entry_points - models - bases == set()
    # Every config class is a family's or inside one, and `vlmcls_jax.models` exports it (our checkpoints' format).
    configs = defined(lambda c: dataclasses.is_dataclass(c) and c.__name__.endswith("Config"))
    assert configs - set().union(*(nested_configs(f.config) for f in FAMILIES)) == set()
    assert configs - set(CONFIG_TYPES.values()) == set()
    # One record per config type, per model_type, per name.
    assert len({f.config for f in FAMILIES}) == len({f.name for f in FAMILIES}) == len(FAMILIES)
    assert len(families.SUPPORTED_MODEL_TYPES) == sum(len(f.model_types) for f in FAMILIES)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_each_record_round_trips_its_configs(family):
    configs = examples(family)
    assert configs, f"no preset of {family.title} to check"
    for cfg in configs:
        assert family_of(cfg) is family
        assert config_from_dict(config_to_dict(cfg)) == cfg
        if family.to_hf is None:
            with pytest.raises(TypeError, match="no Hugging Face config"):
                to_hf(cfg)
            continue
        hf = to_hf(cfg)
        assert hf.model_type in family.model_types
        assert for_model_type(hf.model_type) is family
        assert from_hf(hf) == cfg == family.from_hf(hf)


def test_records_name_known_prompt_formats_and_training_support():
    for f in FAMILIES:
        for (model_type, _text), name in f.prompt_formats.items():
            assert model_type in f.model_types and name in PROMPT_FORMATS
        assert (f.kind == "vlm") == bool(f.prompt_formats)
    refused = {name: family_of(cfg).training_refusal(cfg) for name, cfg in PRESETS.items()}
    assert "InstructBLIP training is not supported" in refused["Salesforce/instructblip-vicuna-7b"]
    assert "LLaVA-NeXT training is not supported" in refused["llava-hf/llava-v1.6-vicuna-7b-hf"]
    assert refused["Salesforce/blip2-opt-2.7b"] is None and refused["llava-hf/llava-1.5-7b-hf"] is None


def test_unknown_configs_and_model_types_are_clear_errors():
    with pytest.raises(ValueError, match="model_type 'gpt2' is not supported; supported: .*'llava'"):
        for_model_type("gpt2")
    with pytest.raises(TypeError, match="no model for config type QFormerConfig"):
        family_of(vlmcls_jax.models.QFormerConfig())
