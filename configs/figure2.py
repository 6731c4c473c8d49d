"""The study's Figure 2 / Table 9 on one dataset: accuracy against the number of candidate labels (the true
class plus k - 1 random others, the same sets for CLIP and the VLM), for CLIP, closed-world generation and
probabilistic inference.  Writes WORKDIR/label_set_size.png beside the tables.  The candidate lists are the
study's own draws (`sampling="study"`, eval/candidates.py: main_results/main.py's seeded random.sample /
random.shuffle over the split, one run per k); `--config.sampling=hashed` draws them per example instead.

    python -m vlmcls_jax.main --config configs/figure2.py:imagenet --workdir runs/figure2_imagenet \\
        --config.data.image_root=DATA --config.data.manifest=DATA/data/imagenet.jsonl
    # DATA: laid out by `python -m vlmcls_jax.data.prepare imagenet --from DOWNLOADS --out DATA`
"""

import ml_collections

from vlmcls_jax import defaults


def get_config(dataset: str = "imagenet") -> ml_collections.ConfigDict:
    c = defaults.eval_config(dataset)     # configs/table1.py
    c.experiments = ("clip", "closed", "scoring")
    c.label_set_sizes = (100, 20, 5, 2)
    return c
