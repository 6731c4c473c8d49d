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
chunk, and several processes split the examples as the evaluators do (`eval.resumable`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import os
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vlmcls_jax.data.preprocess import ClipPreprocessConfig
from vlmcls_jax.data.prompts import QUESTION_WORDINGS
from vlmcls_jax.eval.resumable import run_resumable
from vlmcls_jax.eval.vlm_inputs import VLMInputs, as_inputs
from vlmcls_jax.fileio import replacing
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


class FeatureChunks:
    """`resumable.run_resumable`'s store for features: OUT_DIR/part{i}-of-{n}/chunk{k}.npz, each chunk (ids
    str[N], labels int64[N], "feature:NAME" float32[N, D]) written atomically once `chunk_size` examples are
    done, the rest when the share is finished.  Examples are keyed by str(id)."""

    def __init__(self, out_dir: str, names: Sequence[str], chunk_size: int):
        self.out_dir, self.names, self.chunk_size = out_dir, tuple(names), chunk_size

    @staticmethod
    def key(example) -> str:
        return str(example.id)

    def files(self, index: int, count: int) -> list[str]:
        return sorted(glob.glob(os.path.join(self.out_dir, f"part{index}-of-{count}", "chunk*.npz")))

    def read(self, index: int, count: int) -> set[str]:
        return {str(i) for f in self.files(index, count) for i in np.load(f)["ids"]}

    @contextlib.contextmanager
    def appender(self, index: int, count: int):
        """Yields append(rows), rows: {"id", "label", NAME: float32[D]}; a chunk is written per `chunk_size`
        rows and the remainder when the block ends without an error."""
        folder = os.path.join(self.out_dir, f"part{index}-of-{count}")
        number = len(self.files(index, count))
        rows: list[dict] = []

        def write():
            nonlocal number, rows
            os.makedirs(folder, exist_ok=True)
            with replacing(os.path.join(folder, f"chunk{number:06d}.npz")) as tmp:
                np.savez(tmp, ids=np.array([r["id"] for r in rows]),
                         labels=np.array([r["label"] for r in rows], np.int64),
                         **{f"feature:{k}": np.stack([r[k] for r in rows]) for k in self.names})
            number, rows = number + 1, []

        def append(new_rows):
            rows.extend(new_rows)
            if len(rows) >= self.chunk_size:
                write()

        yield append
        if rows:
            write()

    def gather(self, count: int, examples: Sequence) -> tuple[None, int]:
        """(None: `load_features` reads the arrays, how many examples no part holds)."""
        done = set().union(*(self.read(index, count) for index in range(count)))
        return None, sum(self.key(e) not in done for e in examples)


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
    prompt = inputs.prompt(QUESTION_WORDINGS[s.wording])
    graphdef, state = nnx.split(model)

    def compute(chunk):
        batch = inputs.encode(tokenizer, [prompt] * len(chunk), [e.image for e in chunk],
                              pad_to_square=s.pad_to_square)
        ids_, mask_, *values = put_batch((batch["input_ids"].astype(np.int32),
                                          batch["attention_mask"].astype(np.int32), *batch["images"].values()), mesh)
        return jax.device_get(_features(graphdef, state, ids_, mask_, dict(zip(batch["images"], values)),
                                        features=s.features))

    return write_features(examples, out_dir, s.features, compute, s.batch_size, s.chunk_size, shard)


def write_features(examples: Sequence, out_dir: str, names: Sequence[str], compute, batch_size: int,
                   chunk_size: int, shard: tuple[int, int] | None = None) -> int:
    """The resumable part of extraction: this process's share of `examples` not yet on disk, in padded batches
    through `compute(batch of examples) -> {name: array[len(batch), ...]}`, written as chunks of OUT_DIR.
    Returns how many examples it computed now."""

    def rows(chunk):
        out = compute(chunk)
        return [{"id": str(e.id), "label": int(e.label), **{k: out[k][i] for k in names}}
                for i, e in enumerate(chunk)]

    store = FeatureChunks(out_dir, names, chunk_size)
    return run_resumable(examples, out_dir, batch_size, rows, shard, store=store, desc="features",
                         unit="img").computed


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
