"""LLaVA-1.5-7B projector fine-tuning on a classification dataset (the study's Table 3 right, "projector").

Only the projector trains.  Values and their sources (yuhui-zh15/VLMClassifier, training_analysis/llava/ at
commit 24544323; see the research notes, section C):

  learning rate 2e-5   finetune.sh `--mm_projector_lr 2e-5` (its `--learning_rate 2e-4` does not reach the
                       projector: upstream LLaVA gives mm_projector parameters mm_projector_lr when it is set)
  global batch 128     finetune.sh `--per_device_train_batch_size 32 --gradient_accumulation_steps 1` on the
                       README's 4 GPUs (32 x 1 x 4).  The paper's appendix says 64: `:DATASET,paper_batch`
                       gives 64 (the scripts' 128 is the default)
  model                LLaVA-1.5-7B; `:DATASET,13b` (e.g. `imagenet,13b`, `imagenet,paper_batch,13b`): LLaVA-1.5-13B
                       (the study's other LLaVA), 32 a step accumulated to the same global batch (MODELS)
  epochs               ImageNet 1: the evaluated run behind the study's printed 85.668 writes
                       `imagenet_llava_val_finetuned_1epochs.jsonl` (finetune.sh as stored says 50);
                       Flowers102 / StanfordCars / Caltech101 50: finetune.sh as stored (the eval file names say
                       `_100epochs`; the scripts were edited per run, so the study's count is uncertain)
  schedule             cosine, warmup ratio 0.03, weight decay 0 (all scripts); bf16 compute, fp32 master weights

Data: a manifest JSONL of {"image", "label", "split"} (the study's data/ folder has this format), turned into
the study's fine-tuning template (prepare_data.ipynb; `vlmcls_jax.data.finetune_data.FINETUNE_QUESTION`):
`USER: <image>\\nWhat type of object is in the photo? ASSISTANT: {class name}</s>` ("the photo", unlike the
zero-shot prompt's "this photo"), with the llava_v1 template (`--version v1`).

Evaluate the export as the study does (LLaVA's model_vqa path, exact match): configs/finetuned_eval.py.
Compare with the study's Table 3 right (fine-tuned LLaVA-1.5-7B reaches about CLIP's accuracy on each
dataset; the paper's numbers: vlmcls_jax/eval/study_published.json; the study's repository prints ImageNet 85.668).

    python -m vlmcls_jax.main --config configs/finetune_projector.py:flowers --workdir runs/proj_flowers \\
        --config.data.classification_manifest=data/flowers.jsonl --config.data.image_root=/data/flowers
    python -m vlmcls_jax.main --config configs/finetuned_eval.py:flowers --workdir runs/proj_flowers_eval \
        --config.model.checkpoint=runs/proj_flowers/hf_export --config.data.manifest=data/flowers.jsonl ...
    # TPU pod / GPU cluster: see launch/README.md
"""

import ml_collections

from configs import common

EPOCHS = {"imagenet": 1, "flowers": 50, "cars": 50, "caltech": 50}
# Global batch: the scripts' 32 per device x 4 GPUs (finetune.sh, finetune_lora.sh), or the paper appendix's 64.
BATCH = {"scripts": 128, "paper_batch": 64}


def dataset_and_batch(arg: str) -> tuple[str, int]:
    """"flowers", "flowers,paper_batch" (or either with ",13b") -> (dataset, global batch); unknown names are an
    error."""
    dataset, *rest = arg.split(",")
    if dataset not in EPOCHS:
        raise ValueError(f"dataset {dataset!r} is not one of {sorted(EPOCHS)}")
    batch = [p for p in rest if p not in MODELS]
    if len(batch) > 1 or (batch and batch[0] not in BATCH):
        raise ValueError(f"{','.join(batch)!r} (in {arg!r}) is not one of {sorted(BATCH)} or {sorted(MODELS)}")
    return dataset, BATCH[batch[0] if batch else "scripts"]


# Model size (",13b" after the dataset; 7B by default) -> (checkpoint, examples per step).  The step sizes fit a
# v5e-8 (16 GiB a chip) with remat and scanned layers, per chip (python -m vlmcls_jax.plan --config
# configs/finetune_projector.py:imagenet,13b --topology v5e:2x4): projector 7B 64 x 2 12.0 GiB (128 x 1 needs
# 18.3 GiB of temporaries), 13B 32 x 4 9.8 GiB; LoRA 7B 64 x 2 15.1 GiB, 13B 32 x 4 15.4 GiB.
MODELS = {"7b": ("llava-hf/llava-1.5-7b-hf", 64), "13b": ("llava-hf/llava-1.5-13b-hf", 32)}


def model_and_step(arg: str) -> tuple[str, int]:
    """"imagenet,13b" -> (the 13B checkpoint, 32); no size given: the 7B's."""
    return MODELS[next((p for p in arg.split(",")[1:] if p in MODELS), "7b")]


def get_config(arg: str = "flowers") -> ml_collections.ConfigDict:
    dataset, batch = dataset_and_batch(arg)
    c = common.train_config()
    c.model.checkpoint, step = model_and_step(arg)
    c.learning_rates = {"projector": 2e-5}
    # Global batch 128 per update (32 per device x 4 GPUs, finetune.sh; the paper's 64 with
    # :DATASET,paper_batch), as `step` examples a step, accumulated: sizes that fit a v5e-8 (MODELS)
    c.data.batch_size, c.optim.accumulate_steps = step, batch // step
    c.model.remat, c.model.scan_layers = True, True
    c.num_epochs = EPOCHS[dataset]
    c.data.classification_manifest = common.study_manifest(dataset)   # the study's (shipped)
    c.mesh_shape = (1, -1, 1)               # FSDP over all devices
    return c
