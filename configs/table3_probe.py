"""The study's Table 3 left / Table 10 on one dataset: linear probes on LLaVA-1.5-7B's last-layer hidden
states (the prompt's last token and the mean over all tokens) recover the class far better than the VLM's
own answers.  The study's probe: Adam 1e-3, batch 512, 500 epochs (100 on ImageNet), reported at the best
epoch on the test set; we also report the epoch chosen on a validation split held out from train.

    python -m vlmcls_jax.main --config configs/table3_probe.py:flowers --workdir runs/probe_flowers \\
        --config.data.manifest=VLMClassifier/data/flowers.jsonl \\
        --config.data.classes=VLMClassifier/data/flowers_classes.json --config.data.image_root=VLMClassifier

More features (other layers, the vision tower, the projector): e.g.
`--config.features='("llm:-1/last", "llm:16/last", "vision/mean", "projector/mean")'`
(names in vlmcls_jax/analysis/features.py).
"""

import ml_collections
from ml_collections.config_dict import placeholder

from configs.table1 import DATASETS

TEST_SPLIT = {"imagenet": "valid"}


def get_config(dataset: str = "flowers") -> ml_collections.ConfigDict:
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r} is not one of {DATASETS}")
    c = ml_collections.ConfigDict()
    c.job = "probe"
    c.seed = 0
    c.max_examples = 0                       # > 0: the first N of each split (smoke tests)
    c.mesh_shape = ()                        # e.g. (-1, 1, 1): split extraction batches over this process's devices
    c.model = ml_collections.ConfigDict(dict(checkpoint="llava-hf/llava-1.5-7b-hf", revision=placeholder(str)))
    c.data = ml_collections.ConfigDict(dict(name=dataset, manifest=f"data/{dataset}.jsonl",
                                            classes=f"data/{dataset}_classes.json", image_root=".",
                                            train_split="train", test_split=TEST_SPLIT.get(dataset, "test")))
    c.features = ("llm:-1/last", "llm:-1/mean")
    c.wording = "default"
    c.batch_size = 8
    c.pad_to_square = False                  # the study extracted through llava-hf's processor
    c.probe = ml_collections.ConfigDict(dict(epochs=100 if dataset == "imagenet" else 500, batch_size=512,
                                             learning_rate=1e-3, val_fraction=0.1, shuffle=False))
    return c
