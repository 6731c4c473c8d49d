"""LLaVA-1.5-7B projector fine-tuning on a classification dataset (the study's Table 3 right, "projector").

The study's hyperparameters: only the projector trains, learning rate 2e-5, global batch 64, cosine
schedule with 3% warmup, 1 epoch on ImageNet and 50 on the small datasets (Flowers102, StanfordCars,
Caltech101), bfloat16 compute with float32 master weights.  Data: a manifest JSONL of {"image", "label",
"split"} (the study's files in its data/ folder have this format), turned into the classification template
`USER: <image>\\nWhat type of object is in this photo? ASSISTANT: {class name}`.

Compare with the study's Table 3 (fine-tuned LLaVA-1.5-7B reaches about CLIP's accuracy on each dataset).

    python -m vlmcls_jax.main --config configs/finetune_projector.py:flowers --workdir runs/proj_flowers \\
        --config.data.classification_manifest=data/flowers.jsonl --config.data.image_root=/data/flowers
    # TPU pod / GPU cluster: see launch/README.md
"""

import ml_collections

from configs import common

EPOCHS = {"imagenet": 1, "flowers": 50, "cars": 50, "caltech": 50}


def get_config(dataset: str = "flowers") -> ml_collections.ConfigDict:
    if dataset not in EPOCHS:
        raise ValueError(f"dataset {dataset!r} is not one of {sorted(EPOCHS)}")
    c = common.train_config()
    c.model.checkpoint = "llava-hf/llava-1.5-7b-hf"
    c.learning_rates = {"projector": 2e-5}
    c.data.batch_size = 64
    c.num_epochs = EPOCHS[dataset]
    c.mesh_shape = (1, -1, 1)               # FSDP over all devices
    return c
