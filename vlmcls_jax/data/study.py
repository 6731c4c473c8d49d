"""The study's data files, shipped in the package (vlmcls_jax/data/study_data/: source, license, blob ids).

    manifest_path("flowers")        -> .../study_data/flowers.jsonl       (flowers, cars, caltech)
    class_list_path("imagenet")     -> .../study_data/imagenet_classes.json (all four)
    imagewikiqa_path()              -> .../study_data/imagewikiqa.jsonl

The configs' defaults point at these absolute paths, so a run needs only `--config.data.image_root`, the
folder that holds `data/Flowers102/...` etc. (what `python -m vlmcls_jax.data.prepare` writes).

ImageNet is the exception: the study released only a 10-row sample of its ImageNet manifest
(`imagenet_small.jsonl`), so `prepare imagenet --out DIR` writes the validation manifest itself, to
DIR/data/imagenet.jsonl (IMAGENET_MANIFEST below, relative to DIR).
"""

from __future__ import annotations

from pathlib import Path

STUDY_DATA_DIR = Path(__file__).resolve().parent / "study_data"
SHIPPED_MANIFESTS = ("flowers", "cars", "caltech")
CLASS_LISTS = ("imagenet", "flowers", "cars", "caltech")
IMAGENET_MANIFEST = "data/imagenet.jsonl"     # under prepare's --out folder


def study_file(name: str) -> str:
    """The absolute path of a shipped file; FileNotFoundError naming it when the install lacks it."""
    path = STUDY_DATA_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the vlmcls_jax install lacks its study_data files "
                                "(reinstall the package; setup.py ships them as package data)")
    return str(path)


def manifest_path(dataset: str) -> str:
    """The study's manifest of `dataset` (flowers, cars or caltech). ImageNet's is written by prepare."""
    if dataset == "imagenet":
        raise ValueError("the study did not release its ImageNet manifest: `python -m vlmcls_jax.data.prepare "
                         f"imagenet --from DOWNLOADS --out DIR` writes DIR/{IMAGENET_MANIFEST}")
    if dataset not in SHIPPED_MANIFESTS:
        raise ValueError(f"no shipped manifest for {dataset!r}; shipped: {', '.join(SHIPPED_MANIFESTS)}")
    return study_file(f"{dataset}.jsonl")


def class_list_path(dataset: str) -> str:
    """The study's class list of `dataset` (imagenet, flowers, cars or caltech)."""
    if dataset not in CLASS_LISTS:
        raise ValueError(f"no shipped class list for {dataset!r}; shipped: {', '.join(CLASS_LISTS)}")
    return study_file(f"{dataset}_classes.json")


def imagewikiqa_path() -> str:
    """The 2000 ImageWikiQA questions (image paths `images/ILSVRC2012_val_*.JPEG`)."""
    return study_file("imagewikiqa.jsonl")
