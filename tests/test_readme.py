"""The README's API example runs as written, with the hub checkpoint and the image file swapped for a tiny
local checkpoint and a generated image (nothing is downloaded)."""

import pathlib
import re

import numpy as np
from flax import nnx
from PIL import Image
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from vlmcls_jax import demo
from vlmcls_jax.convert import save_hf

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python example"
    code = blocks[0]
    assert '"llava-hf/llava-1.5-7b-hf"' in code and '"cat.jpg"' in code

    # A tiny LLaVA checkpoint with a tokenizer and an image processor, like a hub folder.
    from ml_collections import config_dict
    config = config_dict.ConfigDict(dict(seed=0, image_size=28, model=dict(
        vocab_size=160, patch_size=14, vision_width=32, vision_layers=2, text_width=32, text_layers=2, heads=4,
        kv_heads=2)))
    names = ["tabby cat", "golden retriever"]
    tokenizer = demo.build_tokenizer([f"USER: <image>\nWhat type of object is in this photo?\nASSISTANT: "
                                      f"The photo features a {n}." for n in names] * 4, 160)
    ckpt = tmp_path / "ckpt"
    save_hf(demo.LlavaForConditionalGeneration(demo.tiny_llava_config(config, tokenizer), rngs=nnx.Rngs(0)), str(ckpt))
    tokenizer.save_pretrained(ckpt)
    CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(ckpt)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(tmp_path / "cat.png")

    code = code.replace('"llava-hf/llava-1.5-7b-hf"', repr(str(ckpt))).replace('"cat.jpg"', repr(str(tmp_path / "cat.png")))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["scores"].shape == (1, 2)
    assert np.isfinite(namespace["scores"]).all()
    assert namespace["logits"].shape[-1] == len(tokenizer)
    assert (tmp_path / "export" / "model.safetensors").exists()


# The README's commands: every config it names loads (placeholders filled) and fits its job's fields, every
# `--config.x=` override it shows is a field (of the config of the same command in a code block; in prose and
# tables, of some job's config), every `python -m vlmcls_jax...` module exists, every `make` target is in the Makefile.
CONFIG_REF = re.compile(r"configs/(\w+)\.py(?::([\w,:.\-]+))?")
OVERRIDE = re.compile(r"--config\.([\w.]+)")
PLACEHOLDERS = {"DATASET": "flowers", "VARIANT": "cot"}


def readme_units() -> list[tuple[str, bool]]:
    """The README cut into (text, is a command): a fenced block's commands (`\\` continuations joined), and
    each line elsewhere."""
    units, text = [], README.read_text()
    for i, part in enumerate(re.split(r"^```.*$", text, flags=re.M)):
        if i % 2:   # inside a fenced block
            units += [(" ".join(c.split()), True) for c in re.sub(r"\\\n", " ", part).splitlines() if c.strip()]
        else:
            units += [(line, False) for line in part.splitlines()]
    return units


def load_readme_config(name: str, arg: str | None):
    import importlib
    module = importlib.import_module(f"configs.{name}")
    for placeholder, value in PLACEHOLDERS.items():
        arg = arg.replace(placeholder, value) if arg else arg
    return module.get_config(arg) if arg else module.get_config()


def test_readme_configs_overrides_modules_and_make_targets_exist():
    import importlib.util

    from vlmcls_jax.config_check import check_job_config, override_problem
    from vlmcls_jax.defaults import JOB_FIELDS

    every_job = [fields() for fields, _ in JOB_FIELDS.values()]
    configs_seen, overrides_seen = set(), 0
    for unit, command in readme_units():
        named = []
        for name, arg in CONFIG_REF.findall(unit):
            arg = arg.rstrip(".,") or None
            config = load_readme_config(name, arg)
            if config.get("job") in JOB_FIELDS:
                check_job_config(config, config.job)
            named.append(config)
            configs_seen.add(f"{name}:{arg}")
        for dotted in OVERRIDE.findall(unit):
            dotted = dotted.rstrip(".")
            argument = f"--config.{dotted}=1"
            candidates = named if command and named else every_job
            problems = [override_problem(c, argument) for c in candidates]
            assert None in problems, f"README: `--config.{dotted}` in `{unit.strip()[:160]}`: {problems[0]}"
            overrides_seen += 1
        for module in re.findall(r"python -m (vlmcls_jax[\w.]*)", unit):
            assert importlib.util.find_spec(module) is not None, f"README runs `python -m {module}`: no such module"
    assert len(configs_seen) > 20 and overrides_seen > 20, (configs_seen, overrides_seen)
    targets = set(re.findall(r"^([\w-]+):", (README.parent / "Makefile").read_text(), flags=re.M))
    for target in re.findall(r"\bmake (?:PYTHON=\S+ )?([a-z][\w-]*)", README.read_text()):
        assert target in targets, f"README runs `make {target}`; the Makefile has {sorted(targets)}"


def test_a_checkpoint_the_hub_cannot_give_is_named_in_one_user_error(monkeypatch):
    """A README command run offline (or with a misspelt hub id) names the checkpoint and the fix, as a
    ValueError of ours (main.py prints it as one line, exit status 2), not the hub client's bare message."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    from vlmcls_jax.convert.hf import resolve_checkpoint
    from vlmcls_jax.main import is_user_error

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("An error happened while trying to locate the files on the Hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    try:
        resolve_checkpoint("llava-hf/llava-1.5-7b-hf", "abc123")
    except ValueError as e:
        assert "'llava-hf/llava-1.5-7b-hf' (revision abc123)" in str(e) and "--config.model.checkpoint=DIR" in str(e)
        assert is_user_error(e)
    else:
        raise AssertionError("no error")


def test_a_missing_folder_or_an_empty_checkpoint_is_a_user_error_naming_it(tmp_path):
    """A folder that does not exist is no hub id either: huggingface_hub's validation error becomes our one line,
    naming the path; an empty checkpoint says so (no hub call)."""
    import pytest

    from vlmcls_jax.convert.hf import resolve_checkpoint
    from vlmcls_jax.main import is_user_error

    missing = str(tmp_path / "checkpoints" / "llava-7b")
    with pytest.raises(ValueError, match=f"checkpoint '{missing}' is no local folder") as raised:
        resolve_checkpoint(missing)
    assert is_user_error(raised.value) and "--config.model.checkpoint=DIR" in str(raised.value)
    with pytest.raises(ValueError, match="no checkpoint given"):
        resolve_checkpoint("")


def test_a_wrong_data_folder_fails_before_any_download(monkeypatch, tmp_path):
    """`--config.data.image_root=DATA` misspelt: the eval, probe and ImageWikiQA jobs say so before the
    fingerprint resolves (downloads) the checkpoints, not after a 14 GB download."""
    import huggingface_hub
    import pytest

    from configs import table1, table3_probe, table5_imagewikiqa
    from vlmcls_jax.main import jobs

    def no_download(*args, **kwargs):
        raise AssertionError("the hub was asked before the data were checked")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_download)
    for job, config in (("eval", table1.get_config("flowers")), ("probe", table3_probe.get_config("flowers")),
                        ("imagewikiqa", table5_imagewikiqa.get_config())):
        config.data.image_root = str(tmp_path / "no_such_folder")
        with pytest.raises(FileNotFoundError, match="no_such_folder"):
            jobs()[job](config, str(tmp_path / job))


def test_the_training_recipes_find_the_studys_manifest_with_only_the_image_root():
    """`Reproduce the paper` runs the fine-tuning recipes with only `--config.data.image_root`: their default
    classification manifest is the study's, shipped (ImageNet's: the one `prepare imagenet` writes)."""
    import os

    from configs import finetune_blip2_qformer, finetune_lora, finetune_projector

    for recipe in (finetune_projector, finetune_lora, finetune_blip2_qformer):
        assert os.path.isfile(recipe.get_config("flowers").data.classification_manifest), recipe.__name__
        assert recipe.get_config("imagenet").data.classification_manifest == "data/imagenet.jsonl"
