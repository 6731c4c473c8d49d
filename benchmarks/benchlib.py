"""Shared pieces of the benchmarks: the "small" LLaVA of issue 7 in both frameworks, alternated timing, and
the matmul peak measured in the same run.

The small config: CLIP ViT-B/16 at 224 px (196 image tokens) + a 12-layer, 768-wide Llama with a 32000
vocabulary.  `tiny=True` gives a model of a few MB for the smoke tests (tests/test_benchmarks.py).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

IMAGE_TOKEN = 32000
TOKENIZERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "tokenizers")


def hf_llava(folder: str, tiny: bool = False, seed: int = 0):
    """A random transformers LlavaForConditionalGeneration saved under `folder`; returns (model, config)."""
    import torch
    import transformers

    if tiny:
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      image_size=32, patch_size=16)
        text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
    else:
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=224, patch_size=16)
        text = dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12)
    torch.manual_seed(seed)
    cfg = transformers.LlavaConfig(
        vision_config=transformers.CLIPVisionConfig(**vision, projection_dim=vision["hidden_size"]),
        text_config=transformers.LlamaConfig(**text, vocab_size=IMAGE_TOKEN + 64, pad_token_id=0, bos_token_id=1,
                                             eos_token_id=2, max_position_embeddings=4096),
        image_token_index=IMAGE_TOKEN)
    model = transformers.LlavaForConditionalGeneration(cfg).eval()
    model.save_pretrained(folder)
    return model, cfg


def llama2_tokenizer(folder: str):
    """Llama-2's tokenizer with llava-hf's `<image>` (32000) and `<pad>` (32001), without the hub."""
    import json
    import shutil

    from transformers import AddedToken, AutoTokenizer

    shutil.copy(os.path.join(TOKENIZERS, "llama2.model"), os.path.join(folder, "tokenizer.model"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False}, f)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.add_tokens([AddedToken("<image>", special=True, normalized=False)], special_tokens=True)
    tok.add_special_tokens({"pad_token": AddedToken("<pad>", special=True, normalized=False)})
    return tok


def inputs(cfg, batch: int = 4, text_tokens: int = 32, seed: int = 0):
    """(input_ids int64[B, 1 + image tokens + text_tokens - 1], pixels float32[B, H, W, 3] NHWC)."""
    rng = np.random.default_rng(seed)
    n_image = (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2
    text = rng.integers(3, IMAGE_TOKEN, (batch, text_tokens - 1))
    ids = np.concatenate([np.ones((batch, 1), np.int64), np.full((batch, n_image), IMAGE_TOKEN), text], axis=1)
    size = cfg.vision_config.image_size
    return ids, rng.standard_normal((batch, size, size, 3)).astype(np.float32)


def both_sides(dtypes, tiny: bool = False, scan_layers: bool = False, batch: int = 4):
    """Yields, per dtype, the same random small LLaVA in both frameworks and its inputs:
    (dtype, transformers model, our model, ids int64[B, T], pixels float32 NHWC, torch ids, torch pixels NCHW
    in the dtype).  scan_layers: ours with scanned decoder layers; batch: B.  Each dtype's transformers model is
    converted from a float32 copy, so a float32 one after a bfloat16 one holds no rounded weights."""
    import jax.numpy as jnp
    import torch

    from vlmcls_jax.convert import load_hf

    with tempfile.TemporaryDirectory() as folder:
        master, cfg = hf_llava(folder, tiny=tiny)
        ids, pixels = inputs(cfg, batch)
        for dtype in dtypes:
            torch_dtype = getattr(torch, dtype)
            ref = copy.deepcopy(master).to(torch_dtype)
            yield (dtype, ref, load_hf(folder, dtype=jnp.dtype(dtype), scan_layers=scan_layers), ids, pixels,
                   torch.tensor(ids), torch.tensor(pixels.transpose(0, 3, 1, 2)).to(torch_dtype))


def alternate(fns: dict, repeats: int) -> dict:
    """Runs each function once to warm up, then `repeats` rounds of one call each, in turn; -> median seconds."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def matmul_peak(dtype: str, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of one n x n x n jitted matmul in `dtype` (float32 accumulation for bfloat16), best of repeats."""
    import jax
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
    f = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.float32))
    f(a, a).block_until_ready()
    best = min(timed(lambda: f(a, a).block_until_ready()) for _ in range(repeats))
    return 2 * n ** 3 / best


def read_reference(n_bytes: int = 1 << 30):
    """A function reading an n_bytes float32 array once (a jitted sum), compiled and run once: the time merely to
    read that many bytes.  Time it in the same rounds as what it is compared with (`alternate`): this kind of VM's
    bandwidth moves by 2x from one minute to the next."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones(n_bytes // 4, jnp.float32)
    f = jax.jit(jnp.sum)
    f(x).block_until_ready()
    return lambda: f(x).block_until_ready()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cli(run, doc: str, repeats: int, flags: dict[str, str] | None = None) -> None:
    """The command line every model benchmark shares: --dtypes, --repeats, --tiny, and the script's own
    boolean `flags` ({"--name": help}, passed to `run` as name=True/False)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated: float32, bfloat16")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed rounds (medians are reported)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model (the smoke test's setting)")
    for flag, text in (flags or {}).items():
        parser.add_argument(flag, action="store_true", help=text)
    args = parser.parse_args()
    extra = {flag.lstrip("-").replace("-", "_"): getattr(args, flag.lstrip("-").replace("-", "_")) for flag in flags or {}}
    run(tuple(args.dtypes.split(",")), args.repeats, args.tiny, **extra)
