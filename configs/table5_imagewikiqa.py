"""The study's Table 5: ImageWikiQA accuracy (2000 four-way questions about ImageNet objects that need
knowledge of what the object is), LLaVA-1.5 as released vs after fine-tuning with classification data.
The study's protocol (VLMClassifier imagewikiqa/main.py, eval.ipynb): the question text verbatim, "Let's
think step by step." in the assistant turn, greedy, up to 1024 new tokens, MMMU's answer parser with a
seeded random fallback. The questions ship with the package; DATA holds images/ILSVRC2012_val_*.JPEG (the
study's image folder, or what `python -m vlmcls_jax.data.prepare imagenet --out DATA` links there).

    # the released model
    python -m vlmcls_jax.main --config configs/table5_imagewikiqa.py --workdir runs/iwqa_base \\
        --config.data.image_root=DATA
    # a fine-tuned one (configs/finetune_mixture.py), with the gain over the first run beside the study's +11.8
    python -m vlmcls_jax.main --config configs/table5_imagewikiqa.py --workdir runs/iwqa_mix \\
        --config.model.checkpoint=runs/mixture/hf_export --config.baseline=runs/iwqa_base \\
        --config.data.image_root=DATA
"""

import ml_collections

from vlmcls_jax import defaults


def get_config() -> ml_collections.ConfigDict:
    return defaults.imagewikiqa_config()   # every field, with its meaning: vlmcls_jax/defaults.py
