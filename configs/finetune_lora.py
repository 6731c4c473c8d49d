"""LLaVA-1.5-7B LoRA fine-tuning on a classification dataset (the study's Table 3 right, "LoRA").

LoRA on the LLM plus the projector ("train both projector and LLM with LoRA", training_analysis/llava/README.md).
Values and their sources (yuhui-zh15/VLMClassifier, finetune_lora.sh at commit 24544323; research notes C):

  LoRA                 rank 128, alpha 256 (`--lora_r 128 --lora_alpha 256`), dropout 0.05 (LLaVA's default), on
                       the LLM's linear layers (upstream LLaVA excludes mm_projector, vision tower and lm_head)
  learning rates       LoRA 2e-4 (`--learning_rate 2e-4`), projector 2e-5 (`--mm_projector_lr 2e-5`)
  global batch 128     `--per_device_train_batch_size 32 --gradient_accumulation_steps 1` on the README's 4 GPUs
                       (32 x 1 x 4); the paper's appendix says 64: `:DATASET,paper_batch` gives 64
  epochs               as finetune_projector.EPOCHS: ImageNet 1 (the evaluated file names), the small datasets 50
                       (finetune_lora.sh says `--num_train_epochs 50`, though its output dir says `-100epochs-lora`)
  schedule             cosine, warmup ratio 0.03, weight decay 0
  model                LLaVA-1.5-7B; `:DATASET,13b`: LLaVA-1.5-13B, 32 a step (finetune_projector.MODELS)

Data and template as configs/finetune_projector.py.  The merged model is exported to WORKDIR/hf_export at the
end; evaluate it with configs/finetuned_eval.py (the study's model_vqa path, exact match).  Compare with the
study's Table 3 right, LoRA row (no number is printed in the repository).

    python -m vlmcls_jax.main --config configs/finetune_lora.py:imagenet --workdir runs/lora_imagenet \\
        --config.data.classification_manifest=data/imagenet.jsonl --config.data.image_root=/data/imagenet

On TPU v4 and v5p add `--config.mesh_shape=1,1,4` (tensor parallel): libtpu 0.0.42.1 aborts compiling this step
with FSDP and remat for them ("Check failed: s_count.has_value()", rotated_pincer_fusion_emitter.cc), with or
without dropout; v5e compiles the default mesh (README, "Planning a run").
"""

import ml_collections

from configs import common
from configs.finetune_projector import EPOCHS, dataset_and_batch, model_and_step


def get_config(arg: str = "flowers") -> ml_collections.ConfigDict:
    dataset, batch = dataset_and_batch(arg)
    c = common.train_config()
    c.model.checkpoint, step = model_and_step(arg)   # ",13b": LLaVA-1.5-13B, 32 a step
    c.learning_rates = {"projector": 2e-5, "lora": 2e-4}
    c.lora.rank, c.lora.alpha, c.lora.dropout = 128, 256.0, 0.05
    # Global batch 128 (32 per device x 4 GPUs, finetune_lora.sh; the paper's 64 with :DATASET,paper_batch) as
    # `step` a step, accumulated, remat, scanned layers (LoRA stacked per layer): fits a v5e-8 at 7B (64 x 2,
    # 15.1 GiB a chip) and 13B (32 x 4, 15.4 GiB): configs/finetune_projector.py MODELS
    c.data.batch_size, c.optim.accumulate_steps = step, batch // step
    c.model.remat, c.model.scan_layers = True, True
    c.num_epochs = EPOCHS[dataset]
    c.data.classification_manifest = common.study_manifest(dataset)   # the study's (shipped)
    c.mesh_shape = (1, -1, 1)
    return c
