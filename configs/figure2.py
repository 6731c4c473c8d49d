"""The study's Figure 2 / Table 9 on one dataset: accuracy against the number of candidate labels (the true
class plus k - 1 random others, the same sets for CLIP and the VLM), for CLIP, closed-world generation and
probabilistic inference.  Writes WORKDIR/label_set_size.png beside the tables.  The candidate lists are the
study's own draws (`sampling="study"`, eval/candidates.py: main_results/main.py's seeded random.sample /
random.shuffle over the split, one run per k); `--config.sampling=hashed` draws them per example instead.

    python -m vlmcls_jax.main --config configs/figure2.py:imagenet --workdir runs/figure2_imagenet \\
        --config.data.manifest=VLMClassifier/data/imagenet.jsonl \\
        --config.data.classes=VLMClassifier/data/imagenet_classes.json --config.data.image_root=VLMClassifier
"""

import ml_collections

from configs import table1


def get_config(dataset: str = "imagenet") -> ml_collections.ConfigDict:
    c = table1.get_config(dataset)
    c.experiments = ("clip", "closed", "scoring")
    c.label_set_sizes = (100, 20, 5, 2)
    return c
