"""Command line converter between Hugging Face checkpoints and our orbax checkpoints.

    python -m vlmcls_jax.convert hf-to-orbax llava-hf/llava-1.5-7b-hf /ckpt/llava7b [--dtype bfloat16]
    python -m vlmcls_jax.convert orbax-to-hf /ckpt/llava7b /export/llava7b-hf
"""

from __future__ import annotations

import argparse
import sys

import jax.numpy as jnp

from vlmcls_jax import checkpoint
from vlmcls_jax.convert.hf import load_hf, save_hf


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

    if args.command == "hf-to-orbax":
        model = load_hf(args.source, dtype=jnp.dtype(args.dtype), revision=args.revision)
        checkpoint.save_model(model, args.target)
    else:
        save_hf(checkpoint.load_model(args.source), args.target)
    print(f"{args.command}: {args.source} -> {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
