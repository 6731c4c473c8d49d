"""The study's Table 13: LLaVA-1.5-7B as released and after projector fine-tuning on ImageNet + LLaVA-665K
(configs/finetune_mixture.py), on TextVQA, POPE (popular, adversarial) and MM-Vet, to check that classification
data does not cost general capability (the paper: 58.2 / 86.1 / 84.2 / 31.1 before, 58.0 / 86.3 / 84.5 / 31.1
after).  Protocol: LLaVA-1.5's evaluation scripts (scripts/v1_5/eval/{textvqa,pope,mmvet}.sh: greedy, padded
to a square, its prompts) and the benchmarks' own scoring (VQA accuracy, POPE F1, MM-Vet's GPT-4 grader,
gpt-4-0613, key from OPENAI_API_KEY).  Data: the public releases (TextVQA_0.5.1_val.json + train_images/,
POPE's coco_pope_{popular,adversarial}.json + COCO val2014, mm-vet.json + images/).

    # 1. fine-tune (configs/finetune_mixture.py), then 2. evaluate both models and write Table 13:
    python -m vlmcls_jax.main --config configs/finetune_mixture.py --workdir runs/mixture ...
    python -m vlmcls_jax.main --config configs/table13_general.py --workdir runs/table13 \\
        --config.models='("llava-hf/llava-1.5-7b-hf", "runs/mixture/hf_export")' \\
        --config.textvqa.annotations=/data/textvqa/TextVQA_0.5.1_val.json \\
        --config.textvqa.image_root=/data/textvqa/train_images \\
        --config.textvqa.questions=/data/llava_eval/textvqa/llava_textvqa_val_v051_ocr.jsonl \\
        --config.pope.folder=/data/pope/coco --config.pope.image_root=/data/coco/val2014 \\
        --config.mmvet.data=/data/mm-vet/mm-vet.json --config.mmvet.image_root=/data/mm-vet/images \\
        --config.reference=/work/shared/paper_data/study_published.json
    # runs/table13/table.md: one row per model, the paper's number in parentheses beside ours

The labels below are the ones the paper's numbers are filed under (study_published.json), so they line up.
"""

import ml_collections

from vlmcls_jax import defaults


def get_config() -> ml_collections.ConfigDict:
    c = defaults.general_config()   # every field, with its meaning: vlmcls_jax/defaults.py
    c.models = ("llava-hf/llava-1.5-7b-hf", "runs/mixture/hf_export")
    c.labels = ("llava-1.5-7b-hf", "llava-1.5-7b-hf + projector FT on imagenet+llava665k")
    c.prompt_format = "llava_v1"        # LLaVA's eval scripts: --conv-mode vicuna_v1 (system prompt + USER/ASSISTANT)
    return c
