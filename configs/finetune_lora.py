"""LLaVA-1.5-7B LoRA fine-tuning on a classification dataset (the study's Table 3 right, "LoRA").

The study's hyperparameters: LoRA on every linear layer of the LLM with rank 128, alpha 256, dropout 0.05,
LLM (LoRA) learning rate 2e-4 and projector learning rate 2e-5 (LLaVA's separate projector rate), global
batch 64, cosine schedule with 3% warmup, 1 epoch on ImageNet and 50 on the small datasets.  The merged
model is exported to WORKDIR/hf_export at the end.

    python -m vlmcls_jax.main --config configs/finetune_lora.py:imagenet --workdir runs/lora_imagenet \\
        --config.data.classification_manifest=data/imagenet.jsonl --config.data.image_root=/data/imagenet
"""

import ml_collections

from configs import common
from configs.finetune_projector import EPOCHS


def get_config(dataset: str = "flowers") -> ml_collections.ConfigDict:
    if dataset not in EPOCHS:
        raise ValueError(f"dataset {dataset!r} is not one of {sorted(EPOCHS)}")
    c = common.train_config()
    c.model.checkpoint = "llava-hf/llava-1.5-7b-hf"
    c.learning_rates = {"projector": 2e-5, "lora": 2e-4}
    c.lora.rank, c.lora.alpha, c.lora.dropout = 128, 256.0, 0.05
    c.data.batch_size = 64
    c.num_epochs = EPOCHS[dataset]
    c.mesh_shape = (1, -1, 1)
    return c
