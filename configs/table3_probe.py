"""The study's Table 3 left / Table 10 on one dataset: linear probes on LLaVA-1.5-7B's last-layer hidden
states (the prompt's last token and the mean over all tokens) recover the class far better than the VLM's
own answers.  The study's probe: the whole train split in its seed-1234 order, Adam 1e-3, batch 512, 500
epochs (100 on ImageNet), reported at the best epoch on the test set; beside it, a second probe with 10% of
train held out reports the test accuracy at the epoch chosen on that validation split.

    python -m vlmcls_jax.main --config configs/table3_probe.py:flowers --workdir runs/probe_flowers \\
        --config.data.manifest=VLMClassifier/data/flowers.jsonl \\
        --config.data.classes=VLMClassifier/data/flowers_classes.json --config.data.image_root=VLMClassifier

More features (other layers, the vision tower, the projector): e.g.
`--config.features='("llm:-1/last", "llm:16/last", "vision/mean", "projector/mean")'`
(names in vlmcls_jax/analysis/features.py).

The study's CLIP linear-probe baseline on the same probe code (Table 3 right, CLIP ViT-L/14-336):

    python -m vlmcls_jax.main --config configs/table3_probe.py:flowers,clip --workdir runs/probe_flowers_clip ...

Its script logs the test accuracy every epoch and picks none: both the last epoch's (`final_test_accuracy`)
and the best epoch's are reported.
"""

import ml_collections

from vlmcls_jax import defaults


def get_config(arg: str = "flowers") -> ml_collections.ConfigDict:
    dataset, _, variant = arg.partition(",")
    c = defaults.probe_config(dataset)   # every field, with its meaning: vlmcls_jax/defaults.py
    if variant == "clip":
        # The study's CLIP linear probe (Table 3 right, the CLIP-L row; training_analysis/clip/run_finetune.sh
        # `--epochs 300` (40 for ImageNet) `--param_to_ft linear`, finetune_clip.py:62-179): encode_image
        # features of the train split in manifest order, L2-normalised, reshuffled every epoch by Python's
        # random seeded with its --seed 0, Adam 1e-3, batch 512.
        c.model.checkpoint = "openai/clip-vit-large-patch14-336"
        c.features = ("clip/embed",)
        c.batch_size = 64
        c.seed = 0
        c.probe.update(epochs=40 if dataset == "imagenet" else 300, order="file", shuffle=True, normalize=True)
    elif variant:
        raise ValueError(f"variant {variant!r} (in {arg!r}) is not 'clip'")
    return c
