"""BLIP-2 (OPT-2.7B) Q-Former fine-tuning on a classification dataset, as the study ran it with LAVIS (the study's
Table 3 right, BLIP-2 row; training_analysis/blip/ of yuhui-zh15/VLMClassifier at d069792).

Values and their sources:

  model                LAVIS `blip2_opt` / `caption_coco_opt2.7b` (config.yaml:7-8), `load_finetuned: False`: the
                       pretrained BLIP-2 OPT-2.7B weights = the hub's Salesforce/blip2-opt-2.7b, at 364 px
  trained              Q-Former, query tokens, the projection into OPT (`opt_proj`), and the vision LayerNorm
                       LAVIS applies after the ViT (`ln_vision`, which `freeze_vit: True` does not freeze;
                       config.yaml:11); ViT and OPT frozen (blip2_opt.py freezes every OPT parameter)
  data                 blip/prepare_data.py: caption = the class name; LAVIS's `blip_caption` text processor with
                       `prompt: "a photo of "` (config.yaml:25) -> `a photo of {pre_caption(label)}\\n` after the
                       image tokens, loss on what follows the prompt (template "blip2_lavis_caption",
                       data.conversation.CaptionTemplate)
  optimizer            AdamW, `init_lr: 2e-5`, `weight_decay: 0.05` (not on biases / norms, as LAVIS),
                       `warmup_steps: 1000`, cosine to `min_lr: 0` (config.yaml:35-40)
  batch 128            `batch_size_train: 32` per GPU x 4 processes (train.sh `--nproc_per_node=4`)
  epochs 10            config.yaml says `max_epoch: 100`, but the evaluated run is `imagenet_10epochs` with epochs
                       0-9 (blip/eval.ipynb); the study reports the best epoch (87.958 on ImageNet)
  evaluation           configs/finetuned_eval.py:DATASET,blip2 (caption prompt `a photo of`, the label with its
                       parentheses removed in the caption)
  364 px               config.yaml:18-21 `image_size: 364` (train and eval): LAVIS interpolates the ViT's position
                       embeddings (bicubic, eva_vit.interpolate_pos_embed); here once, before training, with
                       `python -m vlmcls_jax.convert.resize_vision` (below), whose output is `model.checkpoint`

Differs from LAVIS, documented: (1) LAVIS's `linear_warmup_cosine_lr` warms up over `warmup_steps: 1000` (here
too) from `warmup_lr: 1e-8` (here from 0), then sets a cosine value once per epoch over `max_epoch` (here a
per-step cosine over the run).  (2) LAVIS's training augmentation (`blip2_image_train`: random resized crop
0.5-1, horizontal flip) is not applied; images are resized as at evaluation.  (3) Mixed precision: LAVIS
`amp: True`; here the model's dtype.  (4) The best epoch: the study evaluates every epoch and reports the
maximum; here evaluate each epoch's export and take it (not automated).

    python -m vlmcls_jax.convert.resize_vision Salesforce/blip2-opt-2.7b checkpoints/blip2-opt-2.7b-364 --image-size 364
    python -m vlmcls_jax.main --config configs/finetune_blip2_qformer.py:imagenet --workdir runs/blip2_imagenet \\
        --config.data.classification_manifest=VLMClassifier/data/imagenet.jsonl --config.data.image_root=VLMClassifier
    python -m vlmcls_jax.main --config configs/finetuned_eval.py:imagenet,blip2 --workdir runs/blip2_imagenet_eval \\
        --config.model.checkpoint=runs/blip2_imagenet/hf_export ...
"""

import ml_collections

from configs import common
from configs.finetune_projector import EPOCHS


def get_config(dataset: str = "imagenet") -> ml_collections.ConfigDict:
    if dataset not in EPOCHS:
        raise ValueError(f"dataset {dataset!r} is not one of {sorted(EPOCHS)}")
    c = common.train_config()
    c.model.checkpoint = "checkpoints/blip2-opt-2.7b-364"   # Salesforce/blip2-opt-2.7b resized to 364 px (above)
    c.learning_rates = {"qformer": 2e-5, r"^vision_model/post_layernorm/": 2e-5}
    c.data.template = "blip2_lavis_caption"
    c.data.max_length = 32 + 32                # the image's 32 query tokens + LAVIS's max_txt_len 32
    c.data.buckets = (64,)
    c.data.batch_size = 128                    # 32 per GPU x 4 (train.sh, config.yaml batch_size_train)
    c.optim.weight_decay = 0.05
    c.optim.warmup_steps = 1000                # config.yaml:39 warmup_steps: 1000
    c.num_epochs = 10
    c.data.classification_manifest = common.study_manifest(dataset)   # the study's (shipped)
    c.seed = 42                                # config.yaml run.seed
    c.mesh_shape = (1, -1, 1)
    return c
