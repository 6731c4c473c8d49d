"""Greedy generation of 32 new tokens with the small LLaVA (issue 7, benchmark 2): ours vs transformers'
`generate`, batch 4 (`--batch-1`: one image, as in an interactive session), same random weights and prompt
(1 + 196 image tokens + 31 text tokens).

    python benchmarks/generation.py [--dtypes float32,bfloat16] [--repeats 5] [--tiny] [--scan-layers] [--batch-1]

EOS is never emitted (no EOS id), so both sides produce exactly 32 tokens.  Also: the time of one decode step
of ours ((generate - prefill) / 31) against the time to read every weight once at the memory bandwidth
measured in the same rounds (a jitted reduction over a 1 GiB array, median), since single-token decoding is
bandwidth-bound.
The weights one step reads are the language model's, less the input embedding table (`decode_weight_bytes`).
"""

from __future__ import annotations

import numpy as np

import benchlib

NEW_TOKENS = 32


def decode_weight_bytes(model) -> int:
    """Bytes of the weights one decode step reads: the language model's, without the input embedding table
    (a step gathers B of its rows; when the head is tied to it, the table is read as the head) and without
    the vision tower and projector (they run in the prefill only)."""
    import jax
    from flax import nnx

    lm = model.language_model
    total = sum(x.nbytes for x in jax.tree.leaves(nnx.state(lm, nnx.Param)))
    return total if lm.lm_head is None else total - lm.embed_tokens.embedding[...].nbytes


def run(dtypes=("float32", "bfloat16"), repeats: int = 5, tiny: bool = False, scan_layers: bool = False,
        batch_1: bool = False) -> dict:
    import jax
    import torch

    from vlmcls_jax.inference.generate import generate

    results = {}
    reference_bytes = 1 << 24 if tiny else 1 << 30
    reference = benchlib.read_reference(reference_bytes)
    for dtype, ref, ours, ids, pixels, t_ids, t_pixels in benchlib.both_sides(dtypes, tiny, scan_layers,
                                                                                              1 if batch_1 else 4):
        mask = np.ones_like(ids)
        weight_bytes = decode_weight_bytes(ours)
        j_pixels = jax.numpy.asarray(pixels, dtype)

        def torch_generate():
            with torch.inference_mode():
                out = ref.generate(input_ids=t_ids, pixel_values=t_pixels, attention_mask=torch.ones_like(t_ids),
                                   max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                                   eos_token_id=None, pad_token_id=0)
            assert out.shape[1] - ids.shape[1] == NEW_TOKENS

        def ours_generate(n=NEW_TOKENS):
            out = generate(ours, ids, mask, j_pixels, max_new_tokens=n, eos_token_id=[], pad_token_id=0)
            assert out.shape[1] == n

        times = benchlib.alternate({"transformers": torch_generate, "ours": ours_generate,
                                    "ours_prefill": lambda: ours_generate(1), "reference": reference}, repeats)
        step = (times["ours"] - times["ours_prefill"]) / (NEW_TOKENS - 1)
        bytes_per_s = reference_bytes / times["reference"]
        read = weight_bytes / bytes_per_s
        results[dtype] = dict(times, ratio=times["transformers"] / times["ours"], decode_step=step,
                              weight_read=read, bandwidth=bytes_per_s)
        r = results[dtype]
        print(f"{dtype:9s} transformers {len(ids) * NEW_TOKENS / r['transformers']:7.1f} new tokens/s  ours "
              f"{len(ids) * NEW_TOKENS / r['ours']:7.1f}  speed-up {r['ratio']:.2f}x   decode step "
              f"{step * 1e3:.1f} ms = {step / read:.2f}x the {read * 1e3:.1f} ms to read the "
              f"{weight_bytes / 2 ** 20:.0f} MiB of weights at {bytes_per_s / 1e9:.1f} GB/s", flush=True)
    return results


if __name__ == "__main__":
    benchlib.cli(run, __doc__, repeats=5, flags={"--scan-layers": "ours with scanned decoder layers",
                                                 "--batch-1": "one image instead of 4"})
