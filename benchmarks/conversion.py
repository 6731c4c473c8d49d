"""Converting a ~1.5B-parameter sharded safetensors checkpoint (issue 7, benchmark 6): wall time and peak
resident memory of each direction of our converter, beside transformers' own `from_pretrained`.

    python benchmarks/conversion.py [--repeats 1] [--tiny] [--keep DIR]

The checkpoint: a LLaVA written by transformers' `save_pretrained` in bfloat16, sharded (1 GB shards, as the
hub's LLaVA checkpoints are): CLIP ViT-L/14 at 336 px (304M) + a 24-layer, 2048-wide Llama with grouped-query
attention (4 key/value heads, 5632 MLP, 32064 vocabulary: TinyLlama's shapes, 1.19B), 1.50B parameters in all,
about 3.0 GB.  Each measurement is a fresh process; its peak resident set size is the kernel's high-water
mark of that process's memory (`VmHWM` in /proc/self/status: unlike `ru_maxrss`, it does not inherit the
parent's peak across fork + exec):

  baseline       imports jax, transformers and vlmcls_jax, converts nothing (what any of the below pays)
  load_hf        `load_hf(folder, dtype=bfloat16)`: the checkpoint as our model in JAX arrays
  hf-to-orbax    `python -m vlmcls_jax.convert hf-to-orbax` (load_hf, then orbax save)
  orbax-to-hf    `python -m vlmcls_jax.convert orbax-to-hf` (orbax restore, then sharded safetensors)
  transformers   `LlavaForConditionalGeneration.from_pretrained(folder, dtype=bfloat16)`, for comparison

Target (issue 7): peak resident memory at most 1.3x the checkpoint's size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

KINDS = ("baseline", "load_hf", "hf-to-orbax", "orbax-to-hf", "transformers")


def write_checkpoint(folder: str, tiny: bool) -> int:
    """A random bfloat16 LLaVA saved by transformers under `folder`; -> its parameter count."""
    import torch
    import transformers

    if tiny:
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      image_size=28, patch_size=14)
        text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2)
        shard = "200KB"
    else:
        vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                      image_size=336, patch_size=14)
        text = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=24, num_attention_heads=32,
                    num_key_value_heads=4)
        shard = "1GB"
    cfg = transformers.LlavaConfig(
        vision_config=transformers.CLIPVisionConfig(**vision, projection_dim=768),
        text_config=transformers.LlamaConfig(**text, vocab_size=32064, pad_token_id=0, bos_token_id=1,
                                             eos_token_id=2, max_position_embeddings=4096),
        image_token_index=32000)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = transformers.LlavaForConditionalGeneration(cfg).eval()
    finally:
        torch.set_default_dtype(default)
    model.save_pretrained(folder, max_shard_size=shard)
    return sum(p.numel() for p in model.parameters())


def worker(kind: str, source: str, target: str) -> None:
    """Runs one measurement in this process; prints {"seconds", "max_rss"} (bytes) as JSON."""
    import jax
    import jax.numpy as jnp
    import transformers

    from vlmcls_jax.convert import __main__ as cli
    from vlmcls_jax.convert import load_hf

    start = time.perf_counter()
    if kind == "load_hf":
        jax.block_until_ready(jax.tree.leaves(load_hf(source, dtype=jnp.bfloat16)))
    elif kind == "hf-to-orbax":
        cli.main(["hf-to-orbax", source, target, "--dtype", "bfloat16"])
    elif kind == "orbax-to-hf":
        cli.main(["orbax-to-hf", source, target])
    elif kind == "transformers":
        transformers.LlavaForConditionalGeneration.from_pretrained(source, dtype="bfloat16")
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "max_rss": peak_resident_bytes()}))


def peak_resident_bytes() -> int:
    """This process's peak resident memory: VmHWM on Linux; elsewhere ru_maxrss (which on Linux would also
    count the parent's memory at fork time)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def measure(kind: str, source: str, target: str) -> dict:
    if target and os.path.exists(target):
        shutil.rmtree(target)
    out = subprocess.run([sys.executable, __file__, "--worker", kind, source, target], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def checkpoint_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.endswith(".safetensors"))


def run(repeats: int = 1, tiny: bool = False, keep: str | None = None, kinds=KINDS) -> dict:
    root = keep or tempfile.mkdtemp(prefix="conversion-bench-")
    hf_dir, orbax_dir, export_dir = (os.path.join(root, name) for name in ("hf", "orbax", "export"))
    try:
        if not os.path.exists(os.path.join(hf_dir, "config.json")):
            params = write_checkpoint(hf_dir, tiny)
            print(f"wrote a {params / 1e9:.2f}B-parameter checkpoint", flush=True)
        size = checkpoint_bytes(hf_dir)
        shards = len([f for f in os.listdir(hf_dir) if f.endswith(".safetensors")])
        if "orbax-to-hf" in kinds and "hf-to-orbax" not in kinds:
            raise ValueError("orbax-to-hf converts what hf-to-orbax wrote: measure both")
        runs = {kind: [] for kind in kinds}
        sources = {"orbax-to-hf": orbax_dir}       # hf-to-orbax (run just before) writes it
        targets = {"hf-to-orbax": orbax_dir, "orbax-to-hf": export_dir}
        for _ in range(repeats):      # the kinds in turn, so drift hits each alike
            for kind in kinds:
                runs[kind].append(measure(kind, sources.get(kind, hf_dir), targets.get(kind, "")))
        results = {"checkpoint_bytes": size, "shards": shards}
        print(f"checkpoint: {size / 1e9:.2f} GB in {shards} safetensors shards", flush=True)
        for kind in kinds:
            seconds = sorted(r["seconds"] for r in runs[kind])[len(runs[kind]) // 2]
            rss = max(r["max_rss"] for r in runs[kind])
            results[kind] = {"seconds": seconds, "max_rss": rss, "rss_ratio": rss / size}
            print(f"{kind:13s} {seconds:7.1f} s   peak resident {rss / 1e9:6.2f} GB = {rss / size:.2f}x the "
                  f"checkpoint", flush=True)
        return results
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:5])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs of each kind (median time, max memory)")
    parser.add_argument("--tiny", action="store_true", help="a tiny checkpoint (the smoke test's setting)")
    parser.add_argument("--keep", default=None, help="folder to keep (and reuse) the checkpoint in")
    args = parser.parse_args()
    run(args.repeats, args.tiny, args.keep)
