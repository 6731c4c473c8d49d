"""The study's Table 3 left / Table 10 on one dataset: linear probes on LLaVA-1.5-7B's last-layer hidden
states (the prompt's last token and the mean over all tokens) recover the class far better than the VLM's
own answers.  The study's probe: Adam 1e-3, batch 512, 500 epochs (100 on ImageNet), reported at the best
epoch on the test set; we also report the epoch chosen on a validation split held out from train.

    python -m vlmcls_jax.main --config configs/table3_probe.py:flowers --workdir runs/probe_flowers \\
        --config.data.image_root=DATA     # laid out by vlmcls_jax.data.prepare (configs/table1.py)

More features (other layers, the vision tower, the projector): e.g.
`--config.features='("llm:-1/last", "llm:16/last", "vision/mean", "projector/mean")'`
(names in vlmcls_jax/analysis/features.py).
"""

import ml_collections

from vlmcls_jax import defaults


def get_config(dataset: str = "flowers") -> ml_collections.ConfigDict:
    return defaults.probe_config(dataset)   # every field, with its meaning: vlmcls_jax/defaults.py
