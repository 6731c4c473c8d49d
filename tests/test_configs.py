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
    assert config.job in ("demo", "train", "eval", "probe", "imagewikiqa", "toyworld", "general")
    with pytest.raises(AttributeError):
        config.no_such_field = 1


def test_study_hyperparameters():
    from configs import finetune_caption, finetune_lora, finetune_mixture, finetune_projector
    proj, lora = finetune_projector.get_config("imagenet"), finetune_lora.get_config("flowers")
    # global batches: per-device batch x accumulation x the README's 4 GPUs (training_analysis/llava/*.sh)
    assert dict(proj.learning_rates) == {"projector": 2e-5} and proj.num_epochs == 1 and \
        proj.data.batch_size * proj.optim.accumulate_steps == 128
    assert (lora.lora.rank, lora.lora.alpha) == (128, 256.0) and lora.learning_rates["lora"] == 2e-4
    assert lora.num_epochs == 50 and lora.optim.warmup_ratio == 0.03 and \
        lora.data.batch_size * lora.optim.accumulate_steps == 128
    caption = finetune_caption.get_config("flowers")
    assert dict(caption.learning_rates) == {"projector": 2e-5} and caption.num_epochs == 50
    assert caption.data.batch_size * caption.optim.accumulate_steps == 256 and caption.lora.rank == 0
    mix = finetune_mixture.get_config()
    assert dict(mix.learning_rates) == {"projector": 2e-5} and mix.num_epochs == 1 and mix.lora.rank == 0
    assert mix.data.batch_size * mix.optim.accumulate_steps == 64 and mix.data.mix_seed == 1234
    for c in (proj, lora, caption, mix):
        assert c.optim.warmup_ratio == 0.03 and c.optim.weight_decay == 0.0
    with pytest.raises(ValueError, match="dataset"):
        finetune_projector.get_config("mnist")
    with pytest.raises(ValueError, match="dataset"):
        finetune_caption.get_config("mnist")


def test_default_questions_are_the_data_modules():
    from configs import common
    from vlmcls_jax.data.finetune_data import CAPTION_QUESTION, FINETUNE_QUESTION
    data = common.train_config().data
    assert data.question == FINETUNE_QUESTION == "What type of object is in the photo?"
    assert data.caption_question == CAPTION_QUESTION == "Generate a caption for the image."   # the paper's (Table 4)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_fits_its_jobs_fields(path):
    """Every recipe uses only its job's fields, with their types (the jobs check this before they start)."""
    from vlmcls_jax.config_check import check_job_config
    from vlmcls_jax.defaults import JOB_FIELDS
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", str(path), flag_values=fv, lock_config=True)
    fv(["prog"])
    if fv.config.job in JOB_FIELDS:
        check_job_config(fv.config, fv.config.job)


def test_misspelt_or_mistyped_fields_fail_before_anything_loads(tmp_path):
    """A config built in Python (not through flags, which ml-collections checks itself): each problem is
    named, and the job stops before it touches the (here nonexistent) checkpoint or devices."""
    import ml_collections

    from vlmcls_jax.defaults import train_config
    from vlmcls_jax.eval import job as eval_job
    from vlmcls_jax.train import trainer

    c = train_config().to_dict()
    c["model"]["checkpoint"] = str(tmp_path / "no_such_checkpoint")
    c["data"]["batch_sise"] = 8
    c["num_steps"], c["export_hf"], c["lora"], c["model"]["revision"] = 2.5, 1, "none", 3
    c["learning_rates"] = {"^my/own/group$": 1e-4}          # free-form: group names are the user's
    with pytest.raises(ValueError) as error:
        trainer.run(ml_collections.ConfigDict(c), str(tmp_path / "run"))
    assert str(error.value).splitlines()[1:] == [
        "  config.data.batch_sise is not a field of this job (did you mean batch_size?)",
        "  config.export_hf must be bool, got int 1",
        "  config.lora must be a section of fields, got str 'none'",
        "  config.model.revision must be str, got int 3",
        "  config.num_steps must be int, got float 2.5"]
    assert not (tmp_path / "run").exists()

    from configs import table1
    e = table1.get_config("flowers").to_dict()
    e["generation"]["max_new_token"] = 5
    with pytest.raises(ValueError, match=r"config.generation.max_new_token is not a field of this job \(did you "
                                         r"mean max_new_tokens\?\)"):
        eval_job.run(ml_collections.ConfigDict(e), str(tmp_path / "eval"))


def test_an_impossible_mesh_fails_naming_it_before_loading(tmp_path):
    from vlmcls_jax.defaults import train_config
    from vlmcls_jax.train import trainer
    c = train_config()
    c.model.checkpoint, c.mesh_shape = str(tmp_path / "no_such_checkpoint"), (3, 1, 1)     # 8 test devices
    with pytest.raises(ValueError, match=r"mesh_shape \(3, 1, 1\) does not divide the 8 devices"):
        trainer.run(c, str(tmp_path / "run"))


def test_fine_tuned_models_are_evaluated_as_the_study_does():
    """training_analysis/llava/eval_classification.sh: `python -m llava.eval.model_vqa ... --temperature 0
    --conv-mode vicuna_v1`; model_vqa.py:101 `max_new_tokens=1024`; finetune.sh:15 `--image_aspect_ratio pad`;
    eval_classification.ipynb: `label.lower() == pred.lower()`; prepare_data.ipynb: "What type of object is in
    the photo?"."""
    from configs import finetuned_eval
    from vlmcls_jax.data.prompts import WORDINGS
    c = finetuned_eval.get_config("imagenet")
    assert c.experiments == ("open",) and c.model.prompt_format == "llava_v1"
    assert WORDINGS[c.generation.wording] == "What type of object is in the photo?"
    assert c.generation.max_new_tokens == 1024 and c.generation.headline == "exact" and c.pad_to_square
    assert c.data.split == "valid"


def test_table5_variants_and_paper_batch():
    from configs import finetune_lora, finetune_projector, table5_imagewikiqa
    assert table5_imagewikiqa.get_config().generation.protocol == "main"
    literal = table5_imagewikiqa.get_config("finetuned")
    assert (literal.generation.protocol, literal.model.prompt_format, literal.pad_to_square) == \
        ("model_vqa", "llava_v1", True)
    assert table5_imagewikiqa.get_config("finetuned_corrected").generation.protocol == "main"
    # finetune.sh / finetune_lora.sh: --per_device_train_batch_size 32 on 4 GPUs = 128; the paper's appendix: 64
    # (the global batch per update: per-step batch x accumulation, as the plan fits it on a v5e-8)
    glob = lambda c: c.data.batch_size * c.optim.accumulate_steps
    assert glob(finetune_projector.get_config("flowers")) == 128
    assert glob(finetune_projector.get_config("flowers,paper_batch")) == 64
    assert glob(finetune_lora.get_config("cars,paper_batch")) == 64
    with pytest.raises(ValueError, match="batch"):
        finetune_projector.get_config("flowers,huge")
    # ",13b": LLaVA-1.5-13B with the step size the plan fits on a v5e-8 (32), the same global batch
    for recipe in (finetune_projector, finetune_lora):
        big = recipe.get_config("imagenet,13b")
        assert big.model.checkpoint == "llava-hf/llava-1.5-13b-hf"
        assert (big.data.batch_size, glob(big)) == (32, 128)
        assert glob(recipe.get_config("imagenet,paper_batch,13b")) == 64
        assert recipe.get_config("imagenet").model.checkpoint == "llava-hf/llava-1.5-7b-hf"


def test_blip2_qformer_recipe_is_the_studys_lavis_config():
    """training_analysis/blip/config.yaml: `init_lr: 2e-5`, `warmup_steps: 1000`, `weight_decay: 0.05`,
    `batch_size_train: 32` (x `--nproc_per_node=4`, train.sh), text prompt `"a photo of "`; blip/eval.ipynb
    reads epochs 0-9 of `imagenet_10epochs`."""
    from configs import finetune_blip2_qformer
    from vlmcls_jax.data.conversation import CAPTION_TEMPLATES
    from vlmcls_jax.train.optimizer import warmup_cosine
    c = finetune_blip2_qformer.get_config("imagenet")
    assert c.model.checkpoint.endswith("blip2-opt-2.7b-364") and set(c.learning_rates.values()) == {2e-5}
    assert (c.optim.warmup_steps, c.optim.weight_decay, c.data.batch_size, c.num_epochs) == (1000, 0.05, 128, 10)
    assert CAPTION_TEMPLATES[c.data.template].prompt == "a photo of "
    schedule = warmup_cosine(2e-5, 10_000, 0.03, warmup_steps=1000)
    assert float(schedule(500)) == pytest.approx(1e-5) and float(schedule(1000)) == pytest.approx(2e-5)
