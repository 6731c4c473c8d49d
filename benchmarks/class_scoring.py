"""Probabilistic inference over the 1000 ImageNet class names (issue 7, benchmark 3): ours
(`inference.score_candidates`) against three PyTorch ways of scoring them with transformers, on the same
random small LLaVA, one image, the study's prompt `USER: <image>\\nWhat type of object is in this
photo?\\nASSISTANT: The photo features a` and the names tokenized in context by the real Llama-2 tokenizer
(tests/data/tokenizers/llama2.model; the study's imagenet_classes.json, shipped in vlmcls_jax/data/study_data).

    python benchmarks/class_scoring.py [--dtypes float32] [--repeats 3] [--subset 8] [--tiny]

PyTorch baselines (all give the same scores as ours; the script checks them on the subset):
  full forward   one forward pass of prompt + name per class
  token loop     the study's: the prompt prefilled once, then per class a copy of its cache and the name's
                 tokens fed one at a time
  packed         the best shared-prefix scoring we could write: the prompt prefilled once, then every name's
                 tokens but its last packed into one sequence behind it, with a block-diagonal causal mask
                 (each name sees the prompt and itself) and explicit position ids
The first two take minutes per image, so they run on `--subset` classes and are scaled to 1000 (printed as
such).  Ideal work: the prompt once (vision tower, projector, decoder) plus each name's tokens but its last
through the decoder, and the output head at every scored position: 2 x parameters x tokens, attention's
own FLOPs left out; achieved FLOP/s is that over the measured time, against the matmul peak of this run.
"""

from __future__ import annotations

import copy
import json
import tempfile

import numpy as np

import benchlib


def class_names(n: int | None) -> list[str]:
    from vlmcls_jax.data.study import class_list_path

    with open(class_list_path("imagenet")) as f:
        names = json.load(f)
    return names[:n] if n else names


def ideal_flops(ours, prompt_tokens: int, lengths: np.ndarray) -> float:
    """2 x parameters x tokens: vision tower + projector over the image, decoder over the prompt and every
    name's tokens but its last, the output head at the prompt's last position and at those tokens."""
    from flax import nnx
    count = lambda module: sum(int(np.prod(v.shape)) for _, v in nnx.to_flat_state(nnx.state(module, nnx.Param)))
    cfg = ours.config
    lm = ours.language_model
    decoder = count(lm.model) - count(lm.model.embed_tokens)
    head = cfg.text_config.vocab_size * cfg.text_config.hidden_size
    fed = int((lengths - 1).sum())
    return 2.0 * (count(ours.vision_tower) * (cfg.vision_config.num_patches + 1)
                  + count(ours.multi_modal_projector) * cfg.num_image_tokens
                  + decoder * (prompt_tokens + fed) + head * (1 + fed))


def torch_scorers(ref, prompt_ids, pixels, candidates):
    """The three PyTorch scorers: each maps a list of candidate indices to their summed log-probs."""
    import torch

    ids = torch.tensor([prompt_ids])
    lm = ref.model.language_model

    def full_forward(which):
        out = []
        for i in which:
            c = candidates[i]
            logits = ref(input_ids=torch.tensor([prompt_ids + c]), pixel_values=pixels).logits[0].float()
            logp = torch.log_softmax(logits[len(prompt_ids) - 1: -1], -1)
            out.append(float(logp[torch.arange(len(c)), torch.tensor(c)].sum()))
        return out

    def prefill():
        out = ref(input_ids=ids, pixel_values=pixels, use_cache=True)
        return out.cache, torch.log_softmax(out.logits[0, -1].float(), -1)

    def token_loop(which):
        cache, first = prefill()
        out = []
        for i in which:
            c, past, total = candidates[i], copy.deepcopy(cache), float(first[candidates[i][0]])
            for j in range(len(c) - 1):
                step = ref(input_ids=torch.tensor([[c[j]]]), cache=past, use_cache=True)
                past = step.cache
                total += float(torch.log_softmax(step.logits[0, -1].float(), -1)[c[j + 1]])
            out.append(total)
        return out

    def packed(which):
        cache, first = prefill()
        P = len(prompt_ids)
        fed, targets, pos, owner = [], [], [], []
        for n, i in enumerate(which):
            c = candidates[i]
            fed += c[:-1]
            targets += c[1:]
            pos += list(range(P, P + len(c) - 1))
            owner += [n] * (len(c) - 1)
        scores = [float(first[candidates[i][0]]) for i in which]
        if fed:
            S = len(fed)
            owner_t = torch.tensor(owner)
            causal = torch.tril(torch.ones(S, S, dtype=torch.bool)) & (owner_t[:, None] == owner_t[None, :])
            mask = torch.cat([torch.ones(S, P, dtype=torch.bool), causal], dim=1)[None, None]
            hidden = lm(input_ids=torch.tensor([fed]), attention_mask=mask, position_ids=torch.tensor([pos]),
                        cache=cache, use_cache=True).last_hidden_state
            logp = torch.log_softmax(ref.lm_head(hidden)[0].float(), -1)
            picked = logp[torch.arange(S), torch.tensor(targets)]
            sums = torch.zeros(len(which)).index_add_(0, owner_t, picked)
            scores = [s + float(t) for s, t in zip(scores, sums)]
        return scores

    return {"full forward": full_forward, "token loop": token_loop, "packed": packed}


def run(dtypes=("float32",), repeats: int = 3, tiny: bool = False, subset: int = 8, classes: int | None = None,
        chunk_size: int = 1024) -> dict:
    import jax.numpy as jnp
    import torch

    from vlmcls_jax.data.prompts import OPEN_QUESTION, SCORING_PREFIX, llava_prompt, tokenize_prompts
    from vlmcls_jax.eval.vlm_scoring import class_name_tokens
    from vlmcls_jax.inference import score_candidates

    with tempfile.TemporaryDirectory() as folder:
        tok = benchlib.llama2_tokenizer(folder)
    names = class_names(classes or (20 if tiny else None))
    prompt = llava_prompt(OPEN_QUESTION, SCORING_PREFIX)
    candidates = class_name_tokens(tok, prompt, names)
    lengths = np.array([len(c) for c in candidates])
    results = {}
    for dtype, ref, ours, _, pixels, _, t_pixels in benchlib.both_sides(dtypes, tiny):
        n_image = ours.config.num_image_tokens
        batch = tokenize_prompts(tok, [prompt], n_image)
        prompt_ids = batch["input_ids"][0].tolist()
        px = jnp.asarray(pixels[:1], dtype)
        t_px = t_pixels[:1]
        flops = ideal_flops(ours, len(prompt_ids), lengths)

        def ours_all():
            return score_candidates(ours, batch["input_ids"], batch["attention_mask"], candidates, px,
                                    chunk_size=chunk_size)[0][0]

        scorers = torch_scorers(ref, prompt_ids, t_px, candidates)
        which = list(range(min(subset, len(names))))
        everything = list(range(len(names)))
        with torch.inference_mode():
            # Same scores on the subset (float32: to 1e-3; bfloat16 differs in rounding, so it is not compared).
            mine = np.asarray(ours_all())[which]
            for name, fn in scorers.items():
                theirs = np.asarray(fn(which))
                if dtype == "float32":
                    assert np.allclose(mine, theirs, atol=2e-3), (name, mine, theirs)
            fns = {"ours": ours_all, "packed": lambda: scorers["packed"](everything),
                   "full forward (subset)": lambda: scorers["full forward"](which),
                   "token loop (subset)": lambda: scorers["token loop"](which)}
            times = benchlib.alternate(fns, repeats)
        scale = len(names) / len(which)
        per_image = {"ours": times["ours"], "packed": times["packed"],
                     "full forward": times["full forward (subset)"] * scale,
                     "token loop": times["token loop (subset)"] * scale}
        peak = benchlib.matmul_peak(dtype)
        results[dtype] = dict(per_image=per_image, flops=flops, peak=peak, classes=len(names),
                              mean_tokens=float(lengths.mean()), max_tokens=int(lengths.max()))
        print(f"{dtype}: {len(names)} classes (mean {lengths.mean():.2f} tokens, max {lengths.max()}), prompt "
              f"{len(prompt_ids)} tokens, ideal work {flops / 1e12:.3f} TFLOP per image", flush=True)
        for name, t in per_image.items():
            note = f" (measured on {len(which)} classes, x{scale:.0f})" if name in ("full forward", "token loop") \
                else ""
            speed = f"ours {t / per_image['ours']:7.1f}x faster" if name != "ours" else \
                f"{flops / t / 1e9:6.1f} GFLOP/s = {100 * flops / t / peak:.0f}% of the {peak / 1e9:.0f} GFLOP/s peak"
            print(f"  {name:13s} {t:9.2f} s per image{note}   {speed}", flush=True)
    return results


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--subset", type=int, default=8, help="classes the slow baselines are timed on")
    parser.add_argument("--classes", type=int, default=0, help="the first N class names (0: all 1000)")
    parser.add_argument("--chunk_size", type=int, default=1024, help="candidate token positions per call")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    run(tuple(args.dtypes.split(",")), args.repeats, args.tiny, args.subset, args.classes or None, args.chunk_size)
