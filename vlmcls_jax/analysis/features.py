"""Hidden-state features of a VLM for probing (the study's Table 3 left / Table 10), written to disk.

A feature is named `SOURCE/POOLING`:

  SOURCE   llm:L       the decoder's hidden state L (0 = embeddings, 1..n = after each layer, -1 = the final
                       normed state, as transformers' `hidden_states[-1]`; negative counts from the end)
           vision      the vision tower at LLaVA's feature layer (before the projector), image tokens only
                       (LLaVA-1.5 only)
           projector   the projector's output (the image tokens as the LLM receives them; BLIP-2 /
                       InstructBLIP: the language-projected Q-Former outputs; not LLaVA-NeXT)
  POOLING  last        the prompt's last token (llm only)
           mean        the mean over the prompt's real tokens (llm: image tokens included, as the study's
                       `hidden_states[-1].mean(1)`; vision/projector: over the image tokens)
           index:K     the prompt's K-th real token (K < 0 counts from the end; llm only)
           cls         the vision tower's CLS token (vision only)

The study probes `llm:-1/last` and `llm:-1/mean` after the prompt `USER: <image>\\n{question}\\nASSISTANT:`
(VLMClassifier `feature_analysis/extract_feature.py`); other families use their own prompt format
(`eval.vlm_inputs`).

Features go to OUT_DIR/part{i}-of-{n}/chunk{k}.npz (ids, labels and one float32[N, D] array per feature),
each chunk written atomically once `chunk_size` examples are done; a rerun skips examples already in a
chunk, and several processes split the examples as the evaluators do (`eval.shards`).
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import os
import re
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from vlmcls_jax.data.preprocess import ClipPreprocessConfig, clip_preprocess, load_image
from vlmcls_jax.data.prompts import QUESTION_WORDINGS
from vlmcls_jax.eval import shards
from vlmcls_jax.eval.vlm_inputs import VLMInputs, as_inputs
from vlmcls_jax.sharding import put_batch

STUDY_FEATURES = ("llm:-1/last", "llm:-1/mean")
_NAME = re.compile(r"(llm:-?\d+|vision|projector)/(last|mean|cls|index:-?\d+)")


@dataclasses.dataclass(frozen=True)
class FeatureSettings:
    features: tuple[str, ...] = STUDY_FEATURES
    wording: str = "default"            # the question (a key of QUESTION_WORDINGS)
    batch_size: int = 8
    chunk_size: int = 256               # examples per file on disk
    length_multiple: int = 64
    pad_to_square: bool = False         # the study used llava-hf's processor (no padding)

    def __post_init__(self):
        for name in self.features:
            match = _NAME.fullmatch(name)
            if not match:
                raise ValueError(f"feature {name!r}: expected SOURCE/POOLING with SOURCE llm:L, vision or "
                                 f"projector and POOLING last, mean, cls or index:K")
            source, pooling = match.groups()
            if source.startswith("llm") and pooling == "cls":
                raise ValueError(f"feature {name!r}: cls pooling is for the vision tower")
            if not source.startswith("llm") and pooling not in ("mean", "cls"):
                raise ValueError(f"feature {name!r}: {source} features pool by mean (or cls for vision)")
            if source == "projector" and pooling == "cls":
                raise ValueError(f"feature {name!r}: the projector has no CLS token")


def _pool_text(h, mask, pooling: str):
    """h: [B, T, D]; mask: int[B, T] left-padded -> float32[B, D]."""
    h = h.astype(jnp.float32)
    if pooling == "last":
        return h[:, -1]
    if pooling == "mean":
        w = mask.astype(jnp.float32)[..., None]
        return (h * w).sum(1) / w.sum(1)
    k = int(pooling.split(":")[1])
    T = h.shape[1]
    position = T + k if k < 0 else T - mask.sum(1) + k                                  # [B] or scalar
    position = jnp.broadcast_to(position, (h.shape[0],))
    return jnp.take_along_axis(h, position[:, None, None], axis=1)[:, 0]


@functools.partial(jax.jit, static_argnames=("graphdef", "features"))
def _features(graphdef, state, input_ids, attention_mask, images: dict, *, features: tuple[str, ...]):
    model = nnx.merge(graphdef, state)
    cfg = model.config
    out = {}
    if any(f.startswith("llm") for f in features):
        hidden = model.decode(input_ids, attention_mask=attention_mask, output_hidden_states=True,
                              **images).hidden_states
    if any(f.startswith("vision") for f in features):
        n = cfg.vision_config.num_hidden_layers
        layer = cfg.feature_layers[0] % (n + 1)
        vision = model.vision_tower.hidden_states(images["pixel_values"], num_layers=layer)[layer]  # [B, 1+P, Dv]
    for name in features:
        source, pooling = name.split("/")
        if source.startswith("llm"):
            out[name] = _pool_text(hidden[int(source.split(":")[1])], attention_mask, pooling)
        elif source == "vision":
            out[name] = (vision[:, 0] if pooling == "cls" else vision[:, 1:].mean(1)).astype(jnp.float32)
        else:
            out[name] = model.get_image_features(**images).mean(1).astype(jnp.float32)
    return out


def _chunk_files(out_dir: str, index: int, count: int) -> list[str]:
    return sorted(glob.glob(os.path.join(out_dir, f"part{index}-of-{count}", "chunk*.npz")))


def _write_chunk(folder: str, number: int, ids, labels, feats: dict[str, list]) -> None:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"chunk{number:06d}.npz")
    tmp = path[:-4] + f".tmp{os.getpid()}.npz"
    np.savez(tmp, ids=np.array(ids), labels=np.array(labels, np.int64),
             **{f"feature:{k}": np.stack(v) for k, v in feats.items()})
    os.replace(tmp, path)


def extract_features(model, tokenizer, examples: Sequence, out_dir: str,
                     settings: FeatureSettings = FeatureSettings(),
                     preprocess: ClipPreprocessConfig | VLMInputs = ClipPreprocessConfig(),
                     shard: tuple[int, int] | None = None, mesh=None) -> int:
    """Writes this process's share of `examples` (.id, .image, .label) to OUT_DIR; returns how many it
    computed now (examples already on disk are skipped).  mesh: split each batch over its batch axes."""
    s, inputs = settings, as_inputs(model, preprocess).with_length_multiple(settings.length_multiple)
    unsupported = {"llava": (), "llava_next": ("vision", "projector"), "blip2": ("vision",)}[inputs.family]
    refused = [f for f in s.features if f.split("/")[0] in unsupported]
    if refused:
        raise ValueError(f"features {refused} are not defined for a {type(model.config).__name__} model")
    index, count = shards.resolve(shard)
    mine = list(examples[index::count])
    folder = os.path.join(out_dir, f"part{index}-of-{count}")
    existing = _chunk_files(out_dir, index, count)
    done = {str(i) for f in existing for i in np.load(f)["ids"]}
    todo = [e for e in mine if str(e.id) not in done]
    prompt = inputs.prompt(QUESTION_WORDINGS[s.wording])
    graphdef, state = nnx.split(model)
    number = len(existing)
    ids, labels, feats = [], [], {k: [] for k in s.features}
    for chunk, real in tqdm(shards.padded_batches(todo, s.batch_size), desc="features", unit="batch",
                            total=-(-len(todo) // s.batch_size)):
        batch = inputs.encode(tokenizer, [prompt] * len(chunk), [e.image for e in chunk],
                              pad_to_square=s.pad_to_square)
        ids_, mask_, *values = put_batch((batch["input_ids"].astype(np.int32),
                                          batch["attention_mask"].astype(np.int32), *batch["images"].values()), mesh)
        out = jax.device_get(_features(graphdef, state, ids_, mask_, dict(zip(batch["images"], values)),
                                       features=s.features))
        for i, e in enumerate(chunk[:real]):
            ids.append(str(e.id))
            labels.append(int(e.label))
            for k in s.features:
                feats[k].append(out[k][i])
        if len(ids) >= s.chunk_size:
            _write_chunk(folder, number, ids, labels, feats)
            number += 1
            ids, labels, feats = [], [], {k: [] for k in s.features}
    if ids:
        _write_chunk(folder, number, ids, labels, feats)
    shards.barrier(count)
    return len(todo)


CLIP_FEATURE = "clip/embed"


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _clip_embed(graphdef, state, pixel_values):
    return nnx.merge(graphdef, state).get_image_features(pixel_values).astype(jnp.float32)


def extract_clip_features(clip, examples: Sequence, out_dir: str, preprocess: ClipPreprocessConfig, *,
                          batch_size: int = 64, chunk_size: int = 256, shard: tuple[int, int] | None = None,
                          mesh=None) -> int:
    """CLIP's image embedding, feature `clip/embed` float32[D] (`get_image_features`: the projected CLS token,
    what the study's `model.encode_image` gives, training_analysis/clip/finetune_clip.py:373, unnormalised),
    written as `extract_features` writes (same files, resume and process split); returns how many it
    computed now."""
    index, count = shards.resolve(shard)
    mine = list(examples[index::count])
    folder = os.path.join(out_dir, f"part{index}-of-{count}")
    existing = _chunk_files(out_dir, index, count)
    done = {str(i) for f in existing for i in np.load(f)["ids"]}
    todo = [e for e in mine if str(e.id) not in done]
    graphdef, state = nnx.split(clip)
    number = len(existing)
    ids, labels, feats = [], [], {CLIP_FEATURE: []}
    for chunk, real in tqdm(shards.padded_batches(todo, batch_size), desc="clip features", unit="batch",
                            total=-(-len(todo) // batch_size)):
        (px,) = put_batch((np.stack([clip_preprocess(load_image(e.image), preprocess) for e in chunk]),), mesh)
        out = np.asarray(_clip_embed(graphdef, state, px))
        for i, e in enumerate(chunk[:real]):
            ids.append(str(e.id))
            labels.append(int(e.label))
            feats[CLIP_FEATURE].append(out[i])
        if len(ids) >= chunk_size:
            _write_chunk(folder, number, ids, labels, feats)
            number += 1
            ids, labels, feats = [], [], {CLIP_FEATURE: []}
    if ids:
        _write_chunk(folder, number, ids, labels, feats)
    shards.barrier(count)
    return len(todo)


def load_features(out_dir: str, examples: Sequence | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """-> (ids str[N], labels int64[N], {feature: float32[N, D]}) from every part and chunk of OUT_DIR.

    With `examples`, rows come in the examples' order and a missing example is an error naming it."""
    files = sorted(glob.glob(os.path.join(out_dir, "part*-of-*", "chunk*.npz")))
    if not files:
        raise FileNotFoundError(f"{out_dir}: no feature chunks (part*-of-*/chunk*.npz)")
    loaded = [np.load(f) for f in files]
    keys = sorted(k for k in loaded[0].files if k.startswith("feature:"))
    for f, d in zip(files, loaded):
        if sorted(k for k in d.files if k.startswith("feature:")) != keys:
            raise ValueError(f"{f}: holds other features than {files[0]}; extract into a fresh folder")
    ids = np.concatenate([d["ids"] for d in loaded])
    labels = np.concatenate([d["labels"] for d in loaded])
    feats = {k.split(":", 1)[1]: np.concatenate([d[k] for d in loaded]) for k in keys}
    _, first = np.unique(ids, return_index=True)
    if len(first) != len(ids):
        raise ValueError(f"{out_dir}: an example id occurs in two chunks")
    if examples is not None:
        where = {i: n for n, i in enumerate(ids)}
        missing = [str(e.id) for e in examples if str(e.id) not in where]
        if missing:
            raise ValueError(f"{out_dir}: {len(missing)} examples have no features, e.g. {missing[:3]}")
        order = np.array([where[str(e.id)] for e in examples], int)
        ids, labels, feats = ids[order], labels[order], {k: v[order] for k, v in feats.items()}
    return ids, labels, feats
