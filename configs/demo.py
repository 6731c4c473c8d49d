"""Demo: a tiny random LLaVA, saved in the Hugging Face format, converted back, and used to classify
rendered shapes by generation and by class-name scoring (the study's two inference modes).

Reproduces no number of the study (the weights are random); it shows the inference path end to end.

    python -m vlmcls_jax.main --config configs/demo.py --workdir runs/demo
    make demo    # the same, after creating .venv
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.job = "demo"
    config.seed = 0
    config.num_images = 8
    config.image_size = 56            # pixels; (56 / patch 14)^2 = 16 image tokens
    config.max_new_tokens = 8
    config.dtype = "float32"          # or "bfloat16"
    config.model = ml_collections.ConfigDict(dict(
        vocab_size=160, patch_size=14, vision_width=64, vision_layers=2, text_width=64, text_layers=2,
        heads=4, kv_heads=2))
    return config
