"""The study's Table 1 / Table 2 / Figure 2 on one dataset: CLIP zero-shot, the VLM by open- and closed-world
generation, and by probabilistic inference (optionally on label sets of size 100, 20, 5, 2).

The study's manifests and class lists ship with the package (vlmcls_jax/data/study_data); the images are laid
out under DATA by `python -m vlmcls_jax.data.prepare flowers --from DOWNLOADS --out DATA` (README, "The
study's data"). ImageNet: prepare writes DATA/data/imagenet.jsonl; add --config.data.manifest=DATA/data/imagenet.jsonl.

    python -m vlmcls_jax.main --config configs/table1.py:flowers --workdir runs/table1_flowers \\
        --config.data.image_root=DATA
    # then, after one run per dataset, one table with a column per dataset:
    python -m vlmcls_jax.eval.tables runs/table1_* --out runs/table1

Compare with the study's Table 1 (LLaVA-1.5-7B vs CLIP ViT-L/14-336 on the same dataset).  Variants:
configs/table2.py (prompt wordings, label order, chain of thought, probabilistic inference) and
configs/figure2.py (label-set size).
"""

import ml_collections

from vlmcls_jax import defaults

DATASETS = defaults.DATASETS


def get_config(dataset: str = "flowers") -> ml_collections.ConfigDict:
    return defaults.eval_config(dataset)   # every field, with its meaning: vlmcls_jax/defaults.py
