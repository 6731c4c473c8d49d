"""Command line converter between Hugging Face checkpoints and our orbax checkpoints.

    python -m vlmcls_jax.convert hf-to-orbax llava-hf/llava-1.5-7b-hf /ckpt/llava7b [--dtype bfloat16]
    python -m vlmcls_jax.convert orbax-to-hf /ckpt/llava7b /export/llava7b-hf

Both carry the source's tokenizer, image processor and generation config, so the output is usable as it is.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax.numpy as jnp

from vlmcls_jax import checkpoint
from vlmcls_jax.convert.hf import load_hf, resolve_checkpoint, save_hf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmcls_jax.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    to_orbax = sub.add_parser("hf-to-orbax", help="Hugging Face folder or hub id -> orbax checkpoint")
    to_orbax.add_argument("source", help="local folder with config.json + *.safetensors, or a hub id")
    to_orbax.add_argument("target", help="output folder (must not hold a checkpoint)")
    to_orbax.add_argument("--dtype", default="float32", help="parameter dtype to store (float32, bfloat16)")
    to_orbax.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) to pin")
    to_hf = sub.add_parser("orbax-to-hf", help="orbax checkpoint -> Hugging Face folder")
    to_hf.add_argument("source")
    to_hf.add_argument("target")
    args = parser.parse_args(argv)

    try:
        if args.command == "hf-to-orbax":
            folder = resolve_checkpoint(args.source, args.revision)
            checkpoint.save_model(load_hf(folder, dtype=jnp.dtype(args.dtype)), args.target, source=folder)
        else:
            save_hf(checkpoint.load_model(args.source), args.target, source=args.source)
    except (ValueError, FileNotFoundError, PermissionError) as e:   # the user's paths: one line, exit status 2
        print(f"error: {e}", file=sys.stderr)
        return 2
    carried = ", ".join(copied(args.target)) or "no tokenizer: the source had none, copy one in"
    print(f"{args.command}: {args.source} -> {args.target} (with {carried})")
    return 0


def copied(target: str) -> list[str]:
    """The companion files (tokenizer, processor, generation config) the converted checkpoint holds."""
    from vlmcls_jax.convert.companions import COMPANIONS
    return [name for name in COMPANIONS if os.path.exists(os.path.join(target, name))]


if __name__ == "__main__":
    sys.exit(main())
