"""The default job: the whole inference path of the study on a tiny random LLaVA, offline, on a CPU.

1. Train a small BPE tokenizer on the demo's text (with `<image>` and `<pad>` as llava-hf adds them).
2. Build a tiny random LLaVA (CLIP vision tower + mlp2x_gelu projector + Llama), save it in the
   Hugging Face format with `save_hf`, and load it back with `load_hf` (the converter path users take).
3. Render images of coloured shapes, preprocess them as LLaVA-1.5 does (pad to square, CLIP resize/crop/
   normalise) and classify each two ways, as in the study:
   - generation: the closed-world prompt, greedy decoding, substring match of the class name;
   - probabilistic inference: the log-likelihood of every class name after "The photo features a".
4. Print a table and write `WORKDIR/demo_results.jsonl`.

The weights are random, so accuracy is at chance: this shows the machinery running end to end, not the
study's findings (the toy-world job, once built, trains the models first).
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image, ImageDraw

from vlmcls_jax.convert import load_hf, save_hf
from vlmcls_jax.data.preprocess import ClipPreprocessConfig, preprocess_batch
from vlmcls_jax.data.prompts import OPEN_QUESTION, SCORING_PREFIX, closed_world_question, llava_prompt, tokenize_prompts
from vlmcls_jax.fileio import write_jsonl
from vlmcls_jax.inference import generate, score_candidates
from vlmcls_jax.models import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square", "triangle")


def class_names() -> list[str]:
    return [f"{c} {s}" for c in COLOURS for s in SHAPES]


def closed_question(names: list[str]) -> str:
    """The study's closed-world prompt: the open question plus ` Choose one from "a, b, ...".`"""
    return closed_world_question(OPEN_QUESTION, names)


def render(name: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A `size` x `size` image of the named coloured shape on a noisy grey background."""
    colour, shape = name.split()
    background = rng.integers(90, 160, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    r = int(size * rng.uniform(0.2, 0.35))
    cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=COLOURS[colour])
    elif shape == "square":
        draw.rectangle(box, fill=COLOURS[colour])
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=COLOURS[colour])
    return image


def build_tokenizer(texts: list[str], vocab_size: int, split_punctuation: bool = False,
                    specials: tuple[str, ...] = ("<unk>", "<s>", "</s>", "<pad>", "<image>")):
    """A byte-level-free BPE tokenizer trained on `texts`, as a transformers fast tokenizer.
    split_punctuation: punctuation becomes its own token ("circle." -> "circle", ".").  specials: the
    special tokens, taking ids 0, 1, ... in this order (a CLIP text tower whose EOS id is 2 pools at the
    highest id, transformers' legacy rule; put "</s>" elsewhere to pool at EOS)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()]) \
        if split_punctuation else pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                                           show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", specials.index("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", extra_special_tokens=["<image>"])


def tiny_llava_config(config, tokenizer) -> LlavaConfig:
    m = config.model
    vision = CLIPVisionConfig(hidden_size=m.vision_width, intermediate_size=4 * m.vision_width,
                              num_hidden_layers=m.vision_layers, num_attention_heads=m.heads,
                              image_size=config.image_size, patch_size=m.patch_size, projection_dim=m.vision_width)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=m.text_width, intermediate_size=4 * m.text_width,
                       num_hidden_layers=m.text_layers, num_attention_heads=m.heads, num_key_value_heads=m.kv_heads,
                       max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlavaConfig(vision_config=vision, text_config=text,
                       image_token_index=tokenizer.convert_tokens_to_ids("<image>"))


def run(config, workdir: str) -> list[dict]:
    """Runs the demo described in the module docstring; returns the per-image records."""
    t0 = time.time()
    os.makedirs(workdir, exist_ok=True)
    names = class_names()
    rng = np.random.default_rng(config.seed)

    corpus = [llava_prompt(closed_question(names), f"The photo features a {n}.") for n in names] * 4
    tokenizer = build_tokenizer(corpus + [OPEN_QUESTION], config.model.vocab_size)
    cfg = tiny_llava_config(config, tokenizer)

    checkpoint = os.path.join(workdir, "hf_checkpoint")
    save_hf(LlavaForConditionalGeneration(cfg, rngs=nnx.Rngs(config.seed)), checkpoint)
    tokenizer.save_pretrained(checkpoint)
    model = load_hf(checkpoint, dtype=jnp.dtype(config.dtype))
    print(f"random tiny LLaVA saved in the Hugging Face format and converted back: {checkpoint}")

    labels = [names[i % len(names)] for i in rng.permutation(config.num_images)]
    images = [render(label, config.image_size, rng) for label in labels]
    preprocess = ClipPreprocessConfig(size=config.image_size, crop_size=(config.image_size, config.image_size))
    pixels = preprocess_batch(images, preprocess, pad_to_square=True)

    n_img = model.config.num_image_tokens
    batch = tokenize_prompts(tokenizer, [llava_prompt(closed_question(names))] * len(images), n_img)
    tokens = np.asarray(generate(model, batch["input_ids"], batch["attention_mask"], pixels,
                                 max_new_tokens=config.max_new_tokens))
    outputs = tokenizer.batch_decode(tokens, skip_special_tokens=True)

    prefix = tokenize_prompts(tokenizer, [llava_prompt(OPEN_QUESTION, SCORING_PREFIX)] * len(images), n_img)
    # Class names tokenised in context: the ids they get after the prefix, not standalone.
    prefix_len = len(tokenizer(llava_prompt(OPEN_QUESTION, SCORING_PREFIX))["input_ids"])
    candidates = [tokenizer(llava_prompt(OPEN_QUESTION, f"{SCORING_PREFIX} {n}"))["input_ids"][prefix_len:]
                  for n in names]
    scores, lengths = score_candidates(model, prefix["input_ids"], prefix["attention_mask"], candidates, pixels)

    records = []
    for i, label in enumerate(labels):
        predicted = names[int(np.argmax(scores[i]))]
        records.append({"image": i, "label": label, "generation": outputs[i],
                        "generation_correct": label.lower() in outputs[i].lower(),
                        "scored_prediction": predicted, "scored_correct": predicted == label,
                        "class_log_likelihoods": {n: float(s) for n, s in zip(names, scores[i])}})
    write_jsonl(os.path.join(workdir, "demo_results.jsonl"), records)

    print(f"\n{'image':>5}  {'true class':<16} {'scored prediction':<18} generated text")
    for r in records:
        print(f"{r['image']:>5}  {r['label']:<16} {r['scored_prediction']:<18} {r['generation']!r}")
    n = len(records)
    print(f"\ngeneration accuracy (substring match): {sum(r['generation_correct'] for r in records)}/{n}")
    print(f"class-scoring accuracy: {sum(r['scored_correct'] for r in records)}/{n}  "
          f"(chance: {n / len(names):.1f}/{n}; the weights are random)")
    print(f"{len(names)} classes, {n_img} image tokens, devices: {jax.devices()}, {time.time() - t0:.1f} s; "
          f"results: {os.path.join(workdir, 'demo_results.jsonl')}")
    return records
