"""Every config file loads through ml-collections as `main` loads it, and is locked (unknown keys fail)."""

import pathlib

import pytest
from absl import flags
from ml_collections import config_flags

CONFIGS = sorted(p for p in (pathlib.Path(__file__).resolve().parents[1] / "configs").glob("*.py")
                 if p.stem not in ("__init__", "common"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_loads_and_is_locked(path):
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", str(path), flag_values=fv, lock_config=True)
    fv(["prog"])
    config = fv.config
    assert config.job in ("demo", "train", "eval")
    with pytest.raises(AttributeError):
        config.no_such_field = 1


def test_study_hyperparameters():
    from configs import finetune_lora, finetune_projector
    proj, lora = finetune_projector.get_config("imagenet"), finetune_lora.get_config("flowers")
    assert dict(proj.learning_rates) == {"projector": 2e-5} and proj.num_epochs == 1 and proj.data.batch_size == 64
    assert (lora.lora.rank, lora.lora.alpha) == (128, 256.0) and lora.learning_rates["lora"] == 2e-4
    assert lora.num_epochs == 50 and lora.optim.warmup_ratio == 0.03
    with pytest.raises(ValueError, match="dataset"):
        finetune_projector.get_config("mnist")
