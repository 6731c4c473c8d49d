"""The training input pipeline's throughput (issue 7, benchmark 7): images per second that
`data.pipeline.make_train_iterator` delivers (JPEG decode, pad to square, CLIP resize/crop/normalise,
tokenize the conversation, batch) with 0, 1 and 2 grain worker processes, against the images per second the
train step consumes (the small LLaVA's bfloat16 step of benchmark 4, measured in the same run).

    python benchmarks/data_pipeline.py [--images 96] [--batches 40] [--workers 0,1,2] [--tiny]

Data: JPEGs of 500 x 375 (ImageNet's typical size; smooth random content, quality 90), each a LLaVA-format
classification record ("What type of object is in this photo?" -> a class name), tokenized with the real
Llama-2 tokenizer (tests/data/tokenizers/llama2.model); batch 4, pixels at the step's 224 px.  The first
batch (worker start-up) is not timed.  With 0 workers grain still decodes in a thread pool of the main
process (its `ReadOptions`, 16 threads; PIL and NumPy release the GIL), so 0 workers is not one core; each
worker process decodes on one thread.  On 2 cores the workers share the CPU with the main process; on a
TPU/GPU host the decode runs beside a step that leaves the host's cores free.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import benchlib

BATCH = 4


def write_images(folder: str, n: int, size=(500, 375)) -> list[dict]:
    """`n` JPEGs under `folder` and their LLaVA-format records."""
    from PIL import Image

    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    records = []
    for i in range(n):
        a, b, c = rng.uniform(0.005, 0.05, 3)
        base = np.stack([np.sin(a * xx + i), np.cos(b * yy), np.sin(c * (xx + yy))], -1) * 100 + 128
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)
        records.append({"id": str(i), "image": f"{i:05d}.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat type of object is in this photo?"},
            {"from": "gpt", "value": "goldfish"}]})
    return records


def pipeline_rate(records, encode, workers: int, batches: int) -> float:
    """Images per second over `batches` batches after the first."""
    from vlmcls_jax.data.pipeline import make_train_iterator

    it = make_train_iterator(records, encode, batch_size=BATCH, seed=0, buckets=(256, 1024), pad_id=32001,
                             worker_count=workers)
    try:
        next(it)
        start = time.perf_counter()
        for _ in range(batches):
            batch = next(it)
        assert batch["pixel_values"].shape[0] == BATCH
        return batches * BATCH / (time.perf_counter() - start)
    finally:
        getattr(it, "close", lambda: None)()


def step_rate(tiny: bool, repeats: int = 3) -> float:
    """Images per second of our bfloat16 train step on the small LLaVA (batch 4)."""
    import train_step

    with tempfile.TemporaryDirectory() as folder:
        _, cfg = benchlib.hf_llava(folder, tiny=tiny)
        ids, pixels = benchlib.inputs(cfg, batch=BATCH)
        step = train_step.ours_train_step(folder, "bfloat16", ids, pixels, train_step.text_loss_mask(cfg, ids), [])
        seconds = benchlib.alternate({"step": step}, repeats)["step"]
    return BATCH / seconds


def run(images: int = 96, batches: int = 40, workers=(0, 1, 2), tiny: bool = False) -> dict:
    from absl import flags

    from vlmcls_jax.data.pipeline import EncodeRecord
    from vlmcls_jax.data.preprocess import ClipPreprocessConfig

    flags.FLAGS.mark_as_parsed()       # grain's worker processes read absl flags
    results = {"pipeline": {}}
    with tempfile.TemporaryDirectory() as folder:
        records = write_images(folder, images)
        tokenizer = benchlib.llama2_tokenizer(folder)
        size = 32 if tiny else 224
        encode = EncodeRecord(tokenizer, num_image_tokens=(size // 16) ** 2, image_root=folder,
                              preprocess=ClipPreprocessConfig(size=size, crop_size=(size, size), pad_to_square=True))
        for w in workers:
            results["pipeline"][w] = pipeline_rate(records, encode, w, batches)
            print(f"pipeline, {w} grain workers: {results['pipeline'][w]:7.1f} images/s", flush=True)
    results["step"] = step_rate(tiny)
    best = max(results["pipeline"].values())
    print(f"train step (small LLaVA, bfloat16, batch {BATCH}): {results['step']:.2f} images/s; the pipeline's "
          f"best delivers {best / results['step']:.0f}x that", flush=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=96, help="distinct JPEGs (the iterator repeats them)")
    parser.add_argument("--batches", type=int, default=40, help="timed batches per setting")
    parser.add_argument("--workers", default="0,1,2", help="comma-separated grain worker counts")
    parser.add_argument("--tiny", action="store_true", help="tiny images and model (the smoke test's setting)")
    args = parser.parse_args()
    run(args.images, args.batches, tuple(int(w) for w in args.workers.split(",")), args.tiny)
