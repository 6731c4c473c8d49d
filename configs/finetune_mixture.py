"""LLaVA-1.5-7B projector fine-tuning on ImageNet classification data mixed with LLaVA-665K (the study's Table 5:
classification data added to instruction tuning, evaluated on ImageWikiQA).

Values and their sources (yuhui-zh15/VLMClassifier, training_analysis/llava/ at commit 24544323; notes C):

  data                 prepare_data.ipynb cell 3: `imagenet + llava` (all of llava_v1_5_mix665k.json, no
                       reweighting), `random.seed(1234); random.shuffle(...)` -> here `data.mix_with` mixed with the
                       manifest's classification records by `finetune_data.mix_records(seed=data.mix_seed)`
  trained              projector only (finetune_imagenet_llava.sh `--tune_mm_mlp_adapter`), learning rate 2e-5
                       (`--mm_projector_lr 2e-5`)
  batch                `--per_device_train_batch_size 8 --gradient_accumulation_steps 2` on the README's 4 GPUs:
                       8 x 4 = 32 examples a micro-batch (data.batch_size), 2 accumulated (optim.accumulate_steps),
                       so 8 x 2 x 4 = 64 examples an update
  epochs 1             `--num_train_epochs 1` (output dir `imagenetllava-1epochs`)
  checkpoints          every 2000 steps (`--save_steps 2000`)
  schedule             cosine, warmup ratio 0.03, weight decay 0

Not reproducible exactly: the script trains on `imagenet_and_llava_filtered.json` and the notebook reads
`imagenet_llava_train_full.jsonl`; neither the filtering nor how that file differs from cell 1's classification
file is released.  Records longer than `data.max_length` (2048, the study's model_max_length) stop the run here
(LLaVA truncates them), so filter the 665K file first if it has such records.  Image paths of both sources are
relative to one `data.image_root` (the study: ./playground/data for both).

Compare ImageWikiQA accuracy of WORKDIR/hf_export with LLaVA-1.5-7B's (configs/table5_imagewikiqa.py with
`--config.model.checkpoint=runs/mixture/hf_export --config.baseline=...`): the study reports 49.8 against
38.0, +11.8 points (Table 5; vlmcls_jax/eval/study_published.json).

    python -m vlmcls_jax.main --config configs/finetune_mixture.py --workdir runs/mixture \\
        --config.data.classification_manifest=data/imagenet.jsonl \\
        --config.data.mix_with=/data/llava/llava_v1_5_mix665k.json --config.data.image_root=/data/playground
"""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
    c = common.train_config()
    c.model.checkpoint = "llava-hf/llava-1.5-7b-hf"
    c.learning_rates = {"projector": 2e-5}
    # 64 per update (finetune_imagenet_llava.sh: 8 per device x 4 GPUs x 2 accumulated), here 16 x 4 with remat
    # and scanned layers: 8.8 GiB a chip on a v5e-8 at 2048 tokens (python -m vlmcls_jax.plan ... --seq_len 2048)
    c.data.batch_size, c.optim.accumulate_steps = 16, 4
    c.model.remat, c.model.scan_layers = True, True
    c.data.mix_seed = 1234
    c.num_epochs = 1
    c.checkpoint_every = 2000
    c.mesh_shape = (1, -1, 1)               # FSDP over all devices
    return c
