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

Variants (`configs/table5_imagewikiqa.py:VARIANT`):
  released             a released checkpoint through imagewikiqa/main.py's prompt (the default)
  finetuned            the study's fine-tuned row as its code ran it: LLaVA's model_vqa.py with its ImageWikiQA
                       lines enabled (training_analysis/llava/model_vqa.py:76-77, eval_imagewikiqa.sh
                       `--conv-mode vicuna_v1`): `{system} USER: <image>\n{text} ASSISTANT:ASSISTANT: Let's think
                       step by step. ` (the empty assistant turn rendered before the appended one), LLaVA's
                       tokenization, pad-to-square, the generated text alone parsed
  finetuned_corrected  the same model and path with one `ASSISTANT: Let's think step by step.` (what the lines
                       meant), parsed with the prefix as for the released models
"""

import ml_collections

from vlmcls_jax import defaults

VARIANTS = ("released", "finetuned", "finetuned_corrected")


def get_config(variant: str = "released") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {VARIANTS}")
    c = defaults.imagewikiqa_config()   # every field, with its meaning: vlmcls_jax/defaults.py
    if variant != "released":
        c.model.checkpoint = "runs/mixture/hf_export"      # configs/finetune_mixture.py's export
        c.model.prompt_format = "llava_v1"
        c.pad_to_square = True
        c.generation.protocol = "model_vqa" if variant == "finetuned" else "main"
    return c
