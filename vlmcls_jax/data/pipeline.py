"""grain input pipelines for training: LLaVA-format records -> padded, bucketed batches.

    records --(this process's share)--> shuffle(seed) --> repeat --> encode (tokens, loss mask, pixels)
            --> batch, padding every batch to the smallest length bucket that fits it

Deterministic for a seed; the iterator's position is part of every checkpoint (`iterator.get_state()`
via `grain.checkpoint`), so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import grain
import jax
import numpy as np

from vlmcls_jax.data.conversation import tokenize_conversation
from vlmcls_jax.data.preprocess import ClipPreprocessConfig, clip_preprocess, expand_to_square, load_image


def read_records(path: str) -> list[dict]:
    """LLaVA's JSON (a list of records) or JSONL (one record a line).  Errors name the file and line."""
    with open(path) as f:
        text = f.read()
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
    else:
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not valid JSON ({e})") from e
    for n, record in enumerate(records):
        if not isinstance(record, dict) or "conversations" not in record:
            raise ValueError(f"{path}: record {n} has no 'conversations' field")
    return records


@dataclasses.dataclass
class EncodeRecord(grain.transforms.Map):
    """record -> {"input_ids", "loss_mask": int32[T], "pixel_values": float32[H, W, 3] (zeros without image),
    "has_image": int32[]}."""
    tokenizer: object
    num_image_tokens: int
    preprocess: ClipPreprocessConfig
    image_root: str = ""
    template: str = "llava_v1"
    max_length: int | None = None
    pad_to_square: bool = True

    def map(self, record: dict) -> dict:
        has_image = "image" in record
        out = tokenize_conversation(self.tokenizer, record, self.num_image_tokens if has_image else 0,
                                    self.template, self.max_length)
        h, w = self.preprocess.crop_size
        pixels = np.zeros((h, w, 3), np.float32)
        if has_image:
            try:
                image = load_image(os.path.join(self.image_root, record["image"]))
            except (ValueError, OSError) as e:   # the record names its source line (`{file}:{line}` ids)
                raise ValueError(f"record {record.get('id', '?')}: {e}; fix or remove it, or run with "
                                 "--config.data.on_bad_image=skip to leave out records whose image is "
                                 "unreadable (they are listed and counted)") from e
            if self.pad_to_square:
                image = expand_to_square(image, self.preprocess.pad_color)
            pixels = clip_preprocess(image, self.preprocess)
        return dict(out, pixel_values=pixels, has_image=np.int32(has_image))


def pad_batch(examples: Sequence[dict], buckets: Sequence[int], pad_id: int) -> dict[str, np.ndarray]:
    """Right-pads token fields to the smallest bucket >= the longest example (so few shapes compile);
    adds `attention_mask`.  Raises if an example is longer than the largest bucket."""
    longest = max(len(e["input_ids"]) for e in examples)
    fitting = [b for b in sorted(buckets) if b >= longest]
    if not fitting:
        raise ValueError(f"an example has {longest} tokens, more than the largest length bucket {max(buckets)}")
    T = fitting[0]
    ids = np.full((len(examples), T), pad_id, np.int32)
    loss_mask = np.zeros((len(examples), T), np.int32)
    attention = np.zeros((len(examples), T), np.int32)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n], loss_mask[i, :n], attention[i, :n] = e["input_ids"], e["loss_mask"], 1
    return {"input_ids": ids, "loss_mask": loss_mask, "attention_mask": attention,
            "pixel_values": np.stack([e["pixel_values"] for e in examples]),
            "has_image": np.stack([e["has_image"] for e in examples])}


def make_train_iterator(records: list[dict], encode: EncodeRecord, *, batch_size: int, seed: int,
                        buckets: Sequence[int], pad_id: int, num_epochs: int | None = None, worker_count: int = 0):
    """A checkpointable grain iterator of this process's batches (global batch = batch_size x processes).

    Records are split over processes (`records[i::n]`) before shuffling; each epoch is reshuffled.
    worker_count > 0 decodes in that many worker processes."""
    n, i = jax.process_count(), jax.process_index()
    ds = grain.MapDataset.source(records)[i::n].shuffle(seed=seed).repeat(num_epochs)
    ds = ds.map(encode).batch(batch_size, drop_remainder=True,
                              batch_fn=lambda examples: pad_batch(examples, buckets, pad_id))
    it_ds = ds.to_iter_dataset()
    if worker_count > 0:
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter(it_ds)
