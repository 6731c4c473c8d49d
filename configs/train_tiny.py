"""Fine-tuning recipe, tiny and offline: projector + LoRA on a classification manifest in the study's
template.  It exercises every part of a full-size run (mesh, LoRA, grain, checkpoints, resume) in a
minute on a CPU; point `model.checkpoint` and the data fields at real ones for a real run.

    python -m vlmcls_jax.main --config configs/train_tiny.py --workdir runs/tiny \\
        --config.model.checkpoint=DIR --config.data.classification_manifest=FILE --config.data.image_root=DIR
"""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
    config = common.train_config()
    config.learning_rates = {"projector": 1e-3, "lora": 1e-3}
    config.lora.rank = 4
    config.lora.alpha = 8
    config.lora.dropout = 0.0
    config.data.batch_size = 8
    config.data.template = "llava_hf"         # the tiny tokenizer was not trained on the system prompt
    config.data.buckets = (64, 128)
    config.num_steps = 8
    config.checkpoint_every = 4
    config.log_every = 2
    config.model.dtype = "float32"
    return config
