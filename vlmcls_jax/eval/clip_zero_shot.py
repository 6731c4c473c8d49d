"""CLIP zero-shot classification (the study's CLIP rows): a text classifier from class names x prompt
templates (each template's text embedding normalised, averaged over templates, normalised again), cached
on disk per (model, class list, templates); images scored by cosine similarity.

The headline is the study's substring rule on the predicted class name (as the VLM is scored), with top-1
by class index, top-5 and mean per-class recall beside it; with candidate lists the argmax runs over each
image's candidates (`eval.candidates`, the same lists the VLM sees).  A repeated class name (CLIP's ImageNet list)
gets one text embedding for both of its indices, and a prediction of either index is right for both.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

from vlmcls_jax.data.preprocess import ClipPreprocessConfig, clip_preprocess, load_image
from vlmcls_jax.eval import shards
from vlmcls_jax.eval.candidates import candidate_set, names_to_mask
from vlmcls_jax.eval.metrics import mean_per_class_recall, substring_match
from vlmcls_jax.fileio import replacing, write_jsonl
from vlmcls_jax.sharding import put_batch

_text_features = jax.jit(lambda graphdef, state, ids, mask: nnx.merge(graphdef, state).get_text_features(ids, mask),
                         static_argnums=0)
image_features = jax.jit(lambda graphdef, state, px: nnx.merge(graphdef, state).get_image_features(px),
                          static_argnums=0)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def text_classifier(clip, tokenizer, class_names: Sequence[str], templates: Sequence[str], *,
                    cache_dir: str | None = None, model_id: str = "", batch_size: int = 256,
                    mesh=None) -> np.ndarray:
    """float32[C, E] unit class embeddings.  Cached in `cache_dir` under a hash of (model_id, names,
    templates) when both are given.  mesh: split each batch of prompts over the mesh's batch axes (the
    model placed on it, `sharding.shard_model`; batch_size must divide over them)."""
    key = hashlib.sha256(json.dumps([model_id, list(class_names), list(templates)]).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"clip_text_{key}.npy") if cache_dir and model_id else None
    if path and os.path.exists(path):
        return np.load(path)
    graphdef, state = nnx.split(clip)
    texts = [t.format(name) for name in class_names for t in templates]
    max_len = clip.config.text_config.max_position_embeddings
    feats = []
    for chunk, real in shards.padded_batches(texts, batch_size):
        enc = tokenizer(chunk, padding="max_length", truncation=True, max_length=max_len, return_tensors="np")
        ids, mask = put_batch((enc["input_ids"], enc["attention_mask"]), mesh)
        feats.append(np.asarray(_text_features(graphdef, state, ids, mask))[:real])
    per_template = _unit(np.concatenate(feats).reshape(len(class_names), len(templates), -1))
    classifier = _unit(per_template.mean(1)).astype(np.float32)
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        with replacing(path) as tmp:              # processes sharing the folder never share a temp file
            np.save(tmp, classifier)
    return classifier


def evaluate_clip(clip, classifier: np.ndarray, examples: Sequence, class_names: Sequence[str], *,
                  preprocess: ClipPreprocessConfig = ClipPreprocessConfig(), batch_size: int = 64,
                  label_set_size: int | None = None, label_set_seed: int = 0,
                  choices: Mapping[str, Sequence[str]] | None = None, out_path: str | None = None,
                  mesh=None) -> dict:
    """Scores `examples` (.id, .image, .label, .label_name) against the class embeddings.

    Returns {"examples", "substring_accuracy" (the study's rule, the headline), "top1" (by class index),
    "top5", "mean_per_class_recall"}.  The study scores CLIP as it scores the VLM
    (`data_analysis/correlation.ipynb` cell 0, `acc = item["label"].lower() in item["pred"].lower()`, on
    the `pred` = `classes[...argmax()]` that `main_results/main.py:233-242` writes): the true name a
    substring of the predicted class's *name*, so predicting "acorn squash" is right for "acorn" (138 such
    contained-name pairs in ImageNet's list, 6 in Flowers', 6 in Caltech's, none in Cars').  `top1` is the
    index rule (a repeated name's indices count as one class).
    Candidates: `choices` (the study sampler's names per example id), else `label_set_size` (the hashed
    sampler), else every class.  out_path: one JSONL record per example (id, label, label_name, pred (the
    predicted name), pred_index, substring_match, top1_match), for per-class analyses (Figure 3 / Table 11);
    written by process 0.
    Every process scores every example (CLIP is cheap next to the VLM); mesh: split each batch over the
    mesh's batch axes (the model placed on it; batch_size must divide over them)."""
    graphdef, state = nnx.split(clip)
    sims = []
    for chunk, real in tqdm(shards.padded_batches(examples, batch_size), desc="clip eval", unit="batch",
                            total=-(-len(examples) // batch_size)):
        px = np.stack([clip_preprocess(load_image(e.image), preprocess) for e in chunk])
        (px,) = put_batch((px,), mesh)
        feats = _unit(np.asarray(image_features(graphdef, state, px)))
        sims.append((feats @ classifier.T)[:real])
    sims = np.concatenate(sims)
    if choices is not None:
        sims = np.where(names_to_mask(choices, [e.id for e in examples], class_names), sims, -np.inf)
    elif label_set_size is not None:
        masked = np.full_like(sims, -np.inf)
        for i, e in enumerate(examples):
            allowed = candidate_set(e.label, len(class_names), label_set_size, label_set_seed, e.id)
            masked[i, allowed] = sims[i, allowed]
        sims = masked
    first = {n: i for i, n in reversed(list(enumerate(class_names)))}        # a name's first index
    true = np.array([first[e.label_name] for e in examples])
    top = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    top_names = np.vectorize(lambda i: first[class_names[i]])(top)
    substring = [substring_match(class_names[p], e.label_name) for p, e in zip(top[:, 0], examples)]
    if out_path and jax.process_index() == 0:
        os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
        write_jsonl(out_path, [{"id": e.id, "label": int(e.label), "label_name": e.label_name,
                                "pred": class_names[p], "pred_index": int(p), "substring_match": bool(m),
                                "top1_match": bool(top_names[i, 0] == true[i])}
                               for i, (e, p, m) in enumerate(zip(examples, top[:, 0], substring))])
    return {"examples": len(examples), "substring_accuracy": float(np.mean(substring)) if substring else 0.0,
            "top1": float((top_names[:, 0] == true).mean()),
            "top5": float((top_names == true[:, None]).any(1).mean()),
            "mean_per_class_recall": mean_per_class_recall(top_names[:, 0], true, len(class_names))}
