"""Fields shared by the training recipes (each recipe overrides what it reproduces).

The fields, their defaults and meanings are in vlmcls_jax/defaults.py (the train job checks every config
against them, so a misspelt or mistyped field fails before anything is built); re-exported here.
"""

from vlmcls_jax.defaults import study_data, train_config  # noqa: F401


def study_manifest(dataset: str) -> str:
    """The classification manifest a recipe trains on by default: the study's, shipped with the package
    (ImageNet's: `data/imagenet.jsonl` under the folder `python -m vlmcls_jax.data.prepare imagenet` writes,
    relative, so run from there or set data.classification_manifest)."""
    return study_data(dataset)["manifest"]
