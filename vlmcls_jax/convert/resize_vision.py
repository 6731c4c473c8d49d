"""A BLIP-2 / InstructBLIP checkpoint at another input resolution: the ViT's position embeddings interpolated as
LAVIS does when it builds BLIP-2 at 364 px (the study's BLIP-2 fine-tuning, training_analysis/blip/config.yaml
`image_size: 364`; LAVIS `eva_vit.interpolate_pos_embed`: the patch grid's embeddings resized with
`torch.nn.functional.interpolate(mode="bicubic", align_corners=False)`, the CLS embedding kept).

    python -m vlmcls_jax.convert.resize_vision Salesforce/blip2-opt-2.7b checkpoints/blip2-opt-2.7b-364 --image-size 364

writes a Hugging Face folder (transformers loads it too) whose config.json and preprocessor_config.json say the new
size; every other tensor and file is copied unchanged.  Tensors are streamed one at a time
(`safetensors_stream`), so a shard never sits in memory whole.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import sys

import numpy as np

from vlmcls_jax.convert import safetensors_stream
from vlmcls_jax.convert.families import BLIP2
from vlmcls_jax.convert.hf import resolve_checkpoint, safetensors_files

POSITION_KEY = "vision_model.embeddings.position_embedding"
WEIGHT_FILES = (".safetensors", "model.safetensors.index.json")


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """torch's bicubic coefficients (upsample_bicubic2d, A = -0.75) for taps at -1, 0, 1, 2 around t in [0, 1)."""
    near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1                 # |x| <= 1
    far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a            # 1 < |x| < 2
    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def bicubic_matrix(size_in: int, size_out: int) -> np.ndarray:
    """float64[size_out, size_in]: `torch.nn.functional.interpolate(..., mode="bicubic", align_corners=False)`
    along one axis as a matrix (source index (i + 0.5) * in / out - 0.5, not clamped; taps clamped to the edge)."""
    src = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    base = np.floor(src).astype(np.int64)
    weights = _cubic_weights(src - base)
    out = np.zeros((size_out, size_in))
    for tap in range(4):
        np.add.at(out, (np.arange(size_out), np.clip(base - 1 + tap, 0, size_in - 1)), weights[:, tap])
    return out


def interpolate_position_embedding(embedding: np.ndarray, grid_out: int) -> np.ndarray:
    """[1, 1 + g*g, D] (CLS first, then the g x g patch grid row by row) -> [1, 1 + grid_out**2, D], computed in
    float64 and returned in the input's dtype (LAVIS computes in float32)."""
    _, n, d = embedding.shape
    grid_in = math.isqrt(n - 1)
    if grid_in * grid_in != n - 1:
        raise ValueError(f"position embedding of {n} rows is not CLS + a square grid")
    grid = embedding[0, 1:].astype(np.float64).reshape(grid_in, grid_in, d)
    rows, cols = bicubic_matrix(grid_in, grid_out), bicubic_matrix(grid_in, grid_out)
    resized = np.einsum("ih,jw,hwd->ijd", rows, cols, grid).reshape(1, grid_out * grid_out, d)
    return np.concatenate([embedding[:, :1].astype(np.float64), resized], axis=1).astype(embedding.dtype)


def _header(file: str) -> dict:
    """A safetensors file's header: {key: {"dtype", "shape", "data_offsets"}, "__metadata__"?: {...}}."""
    with open(file, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(size))


def _numpy_dtype(name: str) -> np.dtype:
    names = {v: k for k, v in safetensors_stream.DTYPE_NAMES.items()}
    if name not in names:
        raise ValueError(f"safetensors dtype {name} is not supported here")
    import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy)
    return np.dtype(names[name])


def resize_checkpoint(source: str, out_dir: str, image_size: int, revision: str | None = None) -> None:
    """Writes `source` (folder or hub id) at `image_size` pixels to `out_dir` (see the module docstring)."""
    from safetensors import safe_open
    src = resolve_checkpoint(source, revision)
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    if config.get("model_type") not in BLIP2.model_types:
        raise ValueError(f"{source}: model_type {config.get('model_type')!r}; only BLIP-2 / InstructBLIP are resized")
    vision = config.setdefault("vision_config", {})
    patch = vision.get("patch_size", 14)
    if image_size % patch:
        raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}")
    if os.path.abspath(src) == os.path.abspath(out_dir):
        raise ValueError("the output folder must differ from the source")
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(src):
        path = os.path.join(src, name)
        if os.path.isfile(path) and not name.endswith(WEIGHT_FILES) and name not in ("config.json",
                                                                                       "preprocessor_config.json"):
            shutil.copy(path, out_dir)
        elif os.path.isdir(path) and not name.startswith("."):
            shutil.copytree(path, os.path.join(out_dir, name), dirs_exist_ok=True)
    found = False
    for file in safetensors_files(src):
        header = _header(file)
        keys = [k for k in header if k != "__metadata__"]
        specs = []
        for key in keys:
            shape = list(header[key]["shape"])
            if key == POSITION_KEY:
                shape[1], found = 1 + (image_size // patch) ** 2, True
            specs.append(safetensors_stream.TensorSpec(key, shape, _numpy_dtype(header[key]["dtype"])))

        def arrays(file=file, keys=keys):
            for key in keys:
                with safe_open(file, framework="numpy") as f:
                    array = f.get_tensor(key)
                yield interpolate_position_embedding(array, image_size // patch) if key == POSITION_KEY else array
        tmp = os.path.join(out_dir, f".{os.path.basename(file)}.tmp")
        safetensors_stream.write(tmp, specs, arrays(), metadata=header.get("__metadata__", {"format": "pt"}))
        os.replace(tmp, os.path.join(out_dir, os.path.basename(file)))
    if not found:
        raise ValueError(f"{source}: no tensor {POSITION_KEY}")
    index = os.path.join(src, "model.safetensors.index.json")
    if os.path.exists(index):
        shutil.copy(index, out_dir)        # same keys in the same files (total_size is informational)
    vision["image_size"] = image_size
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    processor = os.path.join(src, "preprocessor_config.json")
    if os.path.exists(processor):
        with open(processor) as f:
            pre = json.load(f)
        pre["size"] = {"height": image_size, "width": image_size}
        with open(os.path.join(out_dir, "preprocessor_config.json"), "w") as f:
            json.dump(pre, f, indent=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmcls_jax.convert.resize_vision", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="BLIP-2 / InstructBLIP folder or hub id")
    parser.add_argument("out_dir")
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--revision", default=None)
    args = parser.parse_args(argv)
    resize_checkpoint(args.source, args.out_dir, args.image_size, args.revision)
    print(f"{args.source} at {args.image_size} px -> {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
