"""The study's Table 3 on one dataset.  Left / Table 10: linear probes on LLaVA-1.5-7B's last-layer hidden
states (the prompt's last token and the mean over all tokens) recover the class far better than the VLM's
own answers.  The study's probe: the whole train split in its seed-1234 order, Adam 1e-3, batch 512, 500
epochs (100 on ImageNet), reported at the best epoch on the test set; beside it, a second probe with 10% of
train held out reports the test accuracy at the epoch chosen on that validation split.

    python -m vlmcls_jax.main --config configs/table3_probe.py:flowers --workdir runs/probe_flowers \\
        --config.data.image_root=DATA     # laid out by vlmcls_jax.data.prepare (configs/table1.py)

More features (other layers, the vision tower, the projector): e.g.
`--config.features='("llm:-1/last", "llm:16/last", "vision/mean", "projector/mean")'`
(names in vlmcls_jax/analysis/features.py).

Right: the same probe on a CLIP model's L2-normalised image embeddings, `configs/table3_probe.py:flowers,clip`
(openai CLIP ViT-L/14-336) or `:flowers,evaclip` (EVA01-CLIP-g-14-plus from open_clip's hub checkpoint): the
study's training_analysis/clip/run_finetune.sh, 40 epochs on ImageNet and 300 on the others, the training set
shuffled every epoch.
Its script logs the test accuracy every epoch and picks none: both the last epoch's (`final_test_accuracy`)
and the best epoch's are reported.
"""

import ml_collections

from vlmcls_jax import defaults

CLIP_CHECKPOINTS = {"clip": "openai/clip-vit-large-patch14-336",
                    "evaclip": "timm/eva_giant_patch14_plus_clip_224.merged2b_s11b_b114k"}


def get_config(args: str = "flowers") -> ml_collections.ConfigDict:
    dataset, _, model = args.partition(",")
    c = defaults.probe_config(dataset)   # every field, with its meaning: vlmcls_jax/defaults.py
    if model:
        if model not in CLIP_CHECKPOINTS:
            raise ValueError(f"configs/table3_probe.py:{args}: the model is one of {sorted(CLIP_CHECKPOINTS)}")
        # The study's CLIP linear probe (Table 3 right; training_analysis/clip/run_finetune.sh `--epochs 300`
        # (40 for ImageNet) `--param_to_ft linear`, finetune_clip.py:62-179): encode_image features of the
        # train split in manifest order, L2-normalised, reshuffled every epoch by Python's random seeded with
        # its --seed 0, Adam 1e-3, batch 512.
        c.model.checkpoint = CLIP_CHECKPOINTS[model]
        c.features = ("clip/embed",)
        c.batch_size = 64
        c.seed = 0
        # float32, not the VLM jobs' bfloat16: finetune_clip_eva.py:193 builds EVA-CLIP with open_clip's
        # default precision (fp32); for CLIP-L, clip.load (:226) gives float16 weights on a GPU and the
        # features are cast with .float() before the probe (:98) -- float32 here, a documented difference
        c.model.dtype, c.model.param_dtype = "float32", "float32"
        c.probe.update(epochs=40 if dataset == "imagenet" else 300, order="file", shuffle=True, normalize=True)
    return c
