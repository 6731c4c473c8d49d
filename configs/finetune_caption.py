"""LLaVA-1.5-7B projector fine-tuning on caption-style data (the study's Table 4: caption-style vs
classification data; the classification side is configs/finetune_projector.py with the same dataset).

Values and their sources (yuhui-zh15/VLMClassifier, training_analysis/llava/finetune_caption.sh at commit
24544323, `dataset=flowers`; research notes C):

  trained              projector only (`--tune_mm_mlp_adapter`), learning rate 2e-5 (`--mm_projector_lr 2e-5`)
  global batch 256     `--per_device_train_batch_size 64 --gradient_accumulation_steps 1` on the README's 4 GPUs
                       (64 x 1 x 4); note the classification run (finetune.sh) used 32 per device, i.e. 128
  epochs               finetune_projector.EPOCHS (50 for Flowers102: `--num_train_epochs 50`, output dir
                       `flowers-caption-50epochs`)
  schedule             cosine, warmup ratio 0.03, weight decay 0

Data: the study trains on `flowers_llava_train_caption.json`, which no released code writes; the paper gives its
template, `<image> Generate a caption for the image.`  Here the captions are yours: a JSONL of
{"image", "caption"} (`data.caption_json`), asked with `data.caption_question` (default the paper's "Generate a
caption for the image."; `vlmcls_jax.data.finetune_data.CAPTION_QUESTION`; LLaVA's "Describe the image
concisely." is `LLAVA_CAPTION_QUESTION`).  The only caption format the study releases is BLIP's
(caption = the class name, text prompt "a photo of "; training_analysis/blip).

Compare the classification accuracy of this run with finetune_projector's on the same dataset (Table 4; no
number is printed in the repository), both evaluated with configs/finetuned_eval.py.

    python -m vlmcls_jax.main --config configs/finetune_caption.py:flowers --workdir runs/caption_flowers \\
        --config.data.caption_json=data/flowers_captions.jsonl --config.data.image_root=/data/flowers
"""

import ml_collections

from configs import common
from configs.finetune_projector import EPOCHS


def get_config(dataset: str = "flowers") -> ml_collections.ConfigDict:
    if dataset not in EPOCHS:
        raise ValueError(f"dataset {dataset!r} is not one of {sorted(EPOCHS)}")
    c = common.train_config()
    c.model.checkpoint = "llava-hf/llava-1.5-7b-hf"
    c.learning_rates = {"projector": 2e-5}
    # Global batch 256 (64 per device x 4 GPUs, finetune_caption.sh) as 64 x 4 accumulated, remat, scanned
    # layers: 12.0 GiB a chip on a v5e-8 at 7B (python -m vlmcls_jax.plan ... --topology v5e:2x4)
    c.data.batch_size, c.optim.accumulate_steps = 64, 4
    c.model.remat, c.model.scan_layers = True, True
    c.num_epochs = EPOCHS[dataset]
    c.mesh_shape = (1, -1, 1)               # FSDP over all devices
    return c
