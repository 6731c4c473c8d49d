"""Writing a safetensors file one tensor at a time.

Why not `safetensors.numpy.save_file`: it takes the whole file as one dict of arrays, so exporting a model
through it holds a complete shard (the hub's LLaVA shards are 5 GB) in host memory beside the model.  The
format is small (https://github.com/huggingface/safetensors#format): an unsigned little-endian 64-bit header
size N, N bytes of JSON `{key: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`
padded with spaces to a multiple of 8, then the tensors' bytes, contiguous, in offset order.  Knowing every
tensor's shape and dtype up front, we write the header first and each tensor as soon as it exists.  Files
written here are read back by safetensors itself (our loader and transformers') in the tests.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence

import numpy as np

DTYPE_NAMES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
               "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


class TensorSpec:
    """What the header says of one tensor: its key, shape and dtype."""

    def __init__(self, key: str, shape: Sequence[int], dtype):
        self.key, self.shape, self.dtype = key, tuple(int(d) for d in shape), np.dtype(dtype)
        if self.dtype.name not in DTYPE_NAMES:
            raise ValueError(f"{key}: dtype {self.dtype.name} has no safetensors name")

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def write(path: str, specs: Sequence[TensorSpec], arrays: Iterable[np.ndarray], metadata: dict | None = None) -> None:
    """Writes `arrays` (one per spec, in order, each produced only when needed) as the safetensors file `path`.
    Raises if an array's shape or dtype differs from its spec, or if arrays and specs differ in number."""
    header, offset = {}, 0
    for spec in specs:
        header[spec.key] = {"dtype": DTYPE_NAMES[spec.dtype.name], "shape": list(spec.shape),
                            "data_offsets": [offset, offset + spec.nbytes]}
        offset += spec.nbytes
    if metadata:
        header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for spec, array in zip(specs, arrays, strict=True):
            if array.shape != spec.shape or array.dtype != spec.dtype:
                raise ValueError(f"{spec.key}: got {array.dtype.name}{list(array.shape)}, the header says "
                                 f"{spec.dtype.name}{list(spec.shape)}")
            f.write(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)


def plan_shards(specs: Sequence[TensorSpec], max_shard_bytes: int) -> list[list[TensorSpec]]:
    """Consecutive groups of specs of at most `max_shard_bytes` each (a larger tensor gets a shard alone)."""
    shards, current, size = [], [], 0
    for spec in specs:
        if current and size + spec.nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(spec)
        size += spec.nbytes
    return shards + [current] if current or not shards else shards
