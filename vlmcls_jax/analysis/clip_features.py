"""A CLIP model's image embeddings as probe features (the study's Table 3 right: linear probes on CLIP ViT-L/14
and EVA01-CLIP-g-14-plus), written in `features.py`'s resumable chunk format.

    clip/embed   the projected image embedding, float32[N, E]: open_clip's `model.encode_image(images)`, which
                 the study saved (VLMClassifier training_analysis/clip/finetune_clip_eva.py, `extract_features`)
    clip/unit    the same divided by its L2 norm: what the study's probe reads
                 (`classifier(F.normalize(test_features[i : i + eval_bsz].cuda(), dim=-1))`, same file)

Any two-tower model with `get_image_features` (`CLIPModel`, `EvaCLIPModel`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from vlmcls_jax.analysis.features import write_features
from vlmcls_jax.data.preprocess import ClipPreprocessConfig, clip_preprocess, load_image
from vlmcls_jax.eval.clip_zero_shot import image_features
from vlmcls_jax.sharding import put_batch

CLIP_FEATURES = ("clip/embed", "clip/unit")


def check_clip_features(names: Sequence[str]) -> tuple[str, ...]:
    unknown = [n for n in names if n not in CLIP_FEATURES]
    if unknown or not names:
        raise ValueError(f"features {list(names)}: a CLIP model's features are {list(CLIP_FEATURES)}")
    return tuple(names)


def extract_clip_features(model, examples: Sequence, out_dir: str, features: Sequence[str] = ("clip/unit",),
                          preprocess: ClipPreprocessConfig = ClipPreprocessConfig(), batch_size: int = 64,
                          chunk_size: int = 256, shard: tuple[int, int] | None = None, mesh=None) -> int:
    """Writes this process's share of `examples` (.id, .image, .label) to OUT_DIR; returns how many it computed
    now (a rerun skips examples already on disk).  mesh: split each batch over its batch axes."""
    features = check_clip_features(features)
    graphdef, state = nnx.split(model)

    def compute(chunk):
        (px,) = put_batch((np.stack([clip_preprocess(load_image(e.image), preprocess) for e in chunk]),), mesh)
        embed = np.asarray(jax.device_get(image_features(graphdef, state, px)), np.float32)
        return {"clip/embed": embed, "clip/unit": embed / np.linalg.norm(embed, axis=-1, keepdims=True)}

    return write_features(examples, out_dir, features, compute, batch_size, chunk_size, shard)
