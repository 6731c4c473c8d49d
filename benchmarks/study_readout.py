"""How much the study's BLIP-2 class-name read-out changes probabilistic inference (issue 17 item 8): the
same tiny random BLIP-2 (OPT decoder), the same images and prompt `Question: What type of object is in this
photo? Answer: A`, class names scored two ways (`eval.vlm_scoring`, `ScoringSettings.name_tokens`):

  context   each name tokenised as it follows the prompt (ids and positions agree; our default)
  study     the study's inference_analysis/main.py:83-103: ids of the name tokenised alone (BOS dropped),
            read at the last positions of the in-context sequence (`StudyReadout`)

The tokenizer is a byte-level BPE (GPT-2's scheme, which OPT uses: a word's ids depend on its leading
space) trained on the prompt followed by each class name, `</s>` prepended as OPT's tokenizer does.  With
the study's Flowers list (../shared/paper_data/flowers_classes.json) when present, else six flower names.

    python benchmarks/study_readout.py [--images 12]

Prints how many names get other ids / another token count alone, the mean and largest |sum difference|
(nats) and how often the two sum-rule argmaxes agree.  A random model's accuracies are chance either way:
the point is that the two read-outs rank classes differently.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

PROMPT = "Question: What type of object is in this photo? Answer: A"      # inference_analysis/main.py:162
FALLBACK_NAMES = ["daisy", "sunflower", "globe thistle", "king protea", "bird of paradise", "rose"]


def gpt2_like_tokenizer(names, train_names=None):
    """Byte-level BPE trained on `PROMPT name` for train_names (default: all) and the bare last name, with
    `</s>` (id 1) prepended as OPT's tokenizer does; `<pad>` 0, `<image>` 2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    train_names = names if train_names is None else train_names
    tok.train_from_iterator([f"{PROMPT} {n}" for n in train_names] * 3 + [names[-1]],
                            trainers.BpeTrainer(vocab_size=330 + 4 * len(names),
                                                special_tokens=["<pad>", "</s>", "<image>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="</s> $A", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                                   additional_special_tokens=["<image>"])


def tiny_blip2(tokenizer, image_size: int = 28, seed: int = 0):
    """A random BLIP-2 (1-layer EVA ViT and Q-Former, 2-layer OPT) over `tokenizer`'s vocabulary."""
    from flax import nnx

    from vlmcls_jax.models.blip2 import Blip2Config, Blip2ForConditionalGeneration
    from vlmcls_jax.models.blip2_vision import Blip2VisionConfig
    from vlmcls_jax.models.opt import OPTConfig
    from vlmcls_jax.models.qformer import QFormerConfig

    cfg = Blip2Config(
        vision_config=Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=4, image_size=image_size, patch_size=14),
        qformer_config=QFormerConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                                     encoder_hidden_size=32),
        text_config=OPTConfig(vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                              num_attention_heads=4, max_position_embeddings=128, bos_token_id=1, eos_token_id=1,
                              pad_token_id=0),
        num_query_tokens=4, image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    return Blip2ForConditionalGeneration(cfg, rngs=nnx.Rngs(seed))


def run(images: int = 12, names=None) -> dict:
    from vlmcls_jax import demo
    from vlmcls_jax.data.preprocess import ClipPreprocessConfig
    from vlmcls_jax.data.sources import Example
    from vlmcls_jax.eval.vlm_inputs import VLMInputs
    from vlmcls_jax.eval.vlm_scoring import ScoringSettings, class_name_tokens, evaluate_scoring, study_name_tokens

    if names is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "paper_data",
                            "flowers_classes.json")
        names = json.load(open(path)) if os.path.exists(path) else FALLBACK_NAMES
    tok = gpt2_like_tokenizer(names)
    model = tiny_blip2(tok)
    inputs = VLMInputs(model, ClipPreprocessConfig(size=28, crop_size=(28, 28)), "blip2")
    root = tempfile.mkdtemp()
    rng = np.random.default_rng(1)
    shapes = demo.class_names()
    examples = []
    for i in range(images):
        demo.render(shapes[i % len(shapes)], 28, rng).save(os.path.join(root, f"{i}.png"))
        examples.append(Example(f"{i}.png", os.path.join(root, f"{i}.png"), i % len(names), names[i % len(names)]))
    alone, ctx = study_name_tokens(tok, names), class_name_tokens(tok, PROMPT, names)
    sums, out = {}, {}
    for mode in ("context", "study"):
        path = os.path.join(root, f"{mode}.jsonl")
        out[mode] = evaluate_scoring(model, tok, examples, names, path,
                                     ScoringSettings(prefix="A", name_tokens=mode, chunk_size=256), inputs)
        sums[mode] = np.array([json.loads(line)["sum"] for line in open(path)])
    diff = np.abs(sums["study"] - sums["context"])
    result = {"names": len(names), "images": images,
              "ids_differ": sum(a != c for a, c in zip(alone, ctx)),
              "count_differs": sum(len(a) != len(c) for a, c in zip(alone, ctx)),
              "mean_abs_sum_diff": float(diff.mean()), "max_abs_sum_diff": float(diff.max()),
              "argmax_agreement": float(np.mean(sums["study"].argmax(1) == sums["context"].argmax(1))),
              **{f"{rule}_accuracy_{mode}": out[mode][f"{rule}_accuracy"] for mode in out
                 for rule in ("sum", "avg")}}
    print(f"{result['names']} names, {images} images: ids differ alone for {result['ids_differ']}, token count "
          f"for {result['count_differs']}; |sum study - sum context| mean {result['mean_abs_sum_diff']:.2f}, max "
          f"{result['max_abs_sum_diff']:.2f} nats; sum-rule argmax agrees on {100 * result['argmax_agreement']:.0f}% "
          f"of images")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12)
    run(parser.parse_args().images)
