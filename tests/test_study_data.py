"""The study's data files shipped in the package: byte for byte the study's, and what the configs start from."""

import hashlib
from pathlib import Path

import pytest

from vlmcls_jax import defaults
from vlmcls_jax.data import study
from vlmcls_jax.data.sources import ClassList, read_manifest

# `git ls-tree d069792 data/` in yuhui-zh15/VLMClassifier (the study's repository, at the commit the copies
# were taken from): the git blob id of each file.
BLOBS = {
    "caltech.jsonl": "3c1cba743795aad7f1e148bd6e1ab3a4debb5ccc",
    "caltech_classes.json": "846b59f7fe536fbd13d2ab2059f2101547349633",
    "cars.jsonl": "d457d033709dc39a49b18d5251ca7221e4d139ee",
    "cars_classes.json": "ba6efe2e1ce99e3a71aae087419f22c87dde0589",
    "flowers.jsonl": "89310e7d19ca1702465687ed15b7e88a961630fa",
    "flowers_classes.json": "6c82030c1622fcc17caea1aab072d36d0dbc640f",
    "imagenet_classes.json": "59ebec8a8b9ce8def59ea7e8417bd41c12b1bf33",
    "imagenet_small.jsonl": "f45f821853e64ab26dbd58c6f3ccf9866c5026ab",
    "imagewikiqa.jsonl": "9870649dceb9361022930dd38a1c8a40403c594e",
}


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_shipped_files_are_the_studys_byte_for_byte():
    shipped = {p.name for p in study.STUDY_DATA_DIR.iterdir()} - {"README.md", "LICENSE"}
    assert shipped == set(BLOBS)
    for name, blob in BLOBS.items():
        assert git_blob_id((study.STUDY_DATA_DIR / name).read_bytes()) == blob, name
    readme = (study.STUDY_DATA_DIR / "README.md").read_text()
    assert all(f"| {name} | {blob} |" in readme for name, blob in BLOBS.items())
    license_text = (study.STUDY_DATA_DIR / "LICENSE").read_text()
    assert "d06979295059d01cf3810d30839750399f9d0a88" in license_text and "MIT License" in license_text


@pytest.mark.parametrize("dataset", ["flowers", "cars", "caltech"])
def test_eval_and_probe_defaults_read_the_shipped_manifest(dataset, tmp_path):
    """With only image_root set (as `configs/table1.py:NAME --config.data.image_root=DIR`), the manifest reads
    and its image paths land under DIR."""
    for config in (defaults.eval_config(dataset), defaults.probe_config(dataset)):
        assert Path(config.data.manifest) == study.STUDY_DATA_DIR / f"{dataset}.jsonl"
        assert Path(config.data.classes) == study.STUDY_DATA_DIR / f"{dataset}_classes.json"
        examples = read_manifest(config.data.manifest, tmp_path, ClassList.from_file(config.data.classes), "test")
        assert examples and all(e.image.startswith(str(tmp_path) + "/data/") for e in examples)


def test_imagenet_and_imagewikiqa_defaults():
    config = defaults.eval_config("imagenet")
    assert config.data.manifest == study.IMAGENET_MANIFEST == "data/imagenet.jsonl"     # prepare writes it
    assert Path(config.data.classes) == study.STUDY_DATA_DIR / "imagenet_classes.json"
    assert Path(defaults.imagewikiqa_config().data.questions) == study.STUDY_DATA_DIR / "imagewikiqa.jsonl"
    with pytest.raises(ValueError, match="prepare imagenet"):
        study.manifest_path("imagenet")
    with pytest.raises(ValueError, match="no shipped class list for 'cifar10'"):
        study.class_list_path("cifar10")
