"""LLaVA-1.5 prompts and their token ids, identical to transformers' `LlavaProcessor`.

The conversation format is llava-hf's (`llava-hf/llava-1.5-*-hf` model cards):

    USER: <image>\\n{question}\\nASSISTANT:[ {assistant_prefix}]

`tokenize_prompts` expands each `<image>` into `num_image_tokens` copies (576 for CLIP ViT-L/14 at 336 px)
in the text and tokenizes the result, exactly as `LlavaProcessor.__call__` does, then pads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IMAGE_TOKEN = "<image>"


def llava_prompt(question: str, assistant_prefix: str = "") -> str:
    """The one-turn LLaVA-1.5 prompt for `question`, optionally with the start of the answer.

    llava_prompt("What type of object is in this photo?", "The photo features a")
      == "USER: <image>\\nWhat type of object is in this photo?\\nASSISTANT: The photo features a"
    """
    prompt = f"USER: {IMAGE_TOKEN}\n{question}\nASSISTANT:"
    return f"{prompt} {assistant_prefix}" if assistant_prefix else prompt


def tokenize_prompts(tokenizer, prompts: Sequence[str], num_image_tokens: int | Sequence[int],
                     image_token: str = IMAGE_TOKEN, padding_side: str = "left", max_length: int | None = None,
                     images_first: bool = False, image_chunks: bool = False) -> dict[str, np.ndarray]:
    """Tokenizes prompts with image placeholders expanded; pads to the longest prompt.

    Args:
      tokenizer: any transformers tokenizer that knows `image_token` as one token and has a pad token.
      prompts: B strings, each with at least one `image_token` when `num_image_tokens > 0` (none with
        `images_first`).
      num_image_tokens: image features per image (`(size // patch) ** 2` for LLaVA-1.5's "default"
        feature selection, which drops CLS), or one count per prompt (LLaVA-NeXT, whose count depends on
        the image's size). With 0, placeholders are removed from the text.
      padding_side: "left" (for batched decoding) or "right".
      max_length: if set, a prompt longer than this (after expansion, with BOS) is an error.
      images_first: put the image tokens before everything, BOS included (BLIP-2 / InstructBLIP's
        processors: "BLIP expects image tokens to be at the beginning even before BOS token").
      image_chunks: tokenize the text between placeholders chunk by chunk, as LLaVA's own code does
        (`tokenize_image_chunks`), instead of the whole expanded text at once as `LlavaProcessor` does.

    Returns:
      input_ids: int32[B, T], pad id where attention_mask is 0.
      attention_mask: int32[B, T], 1 on real tokens.
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not one string")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer.pad_token is not set (pad_token_id is None); llava-hf tokenizers use '<pad>'")
    counts = [num_image_tokens] * len(prompts) if isinstance(num_image_tokens, int) else list(num_image_tokens)
    if len(counts) != len(prompts):
        raise ValueError(f"{len(counts)} image-token counts for {len(prompts)} prompts")
    if any(counts) and len(tokenizer.encode(image_token, add_special_tokens=False)) != 1:
        raise ValueError(f"image_token {image_token!r} is not a single token for this tokenizer; add it as a "
                         "special token first")

    rows = []
    for i, (prompt, n) in enumerate(zip(prompts, counts)):
        if images_first:
            if image_token in prompt:
                raise ValueError(f"prompt {i} has an {image_token!r} placeholder, but images go first here: "
                                 f"{prompt!r}")
            image_ids = tokenizer.encode(image_token * n, add_special_tokens=False) if n else []
            ids = image_ids + tokenizer(prompt)["input_ids"]
        else:
            if n > 0 and image_token not in prompt:
                raise ValueError(f"prompt {i} has no {image_token!r} placeholder: {prompt!r}")
            ids = tokenize_image_chunks(tokenizer, prompt, n, image_token) if image_chunks else \
                tokenizer(prompt.replace(image_token, image_token * n))["input_ids"]
        if max_length is not None and len(ids) > max_length:
            raise ValueError(f"prompt {i} is {len(ids)} tokens (with {n} image tokens per image), "
                             f"more than max_length={max_length}: {prompt!r}")
        rows.append(ids)

    length = max((len(ids) for ids in rows), default=0)
    input_ids = np.full((len(rows), length), tokenizer.pad_token_id, np.int32)
    attention_mask = np.zeros((len(rows), length), np.int32)
    for b, ids in enumerate(rows):
        span = slice(length - len(ids), length) if padding_side == "left" else slice(0, len(ids))
        input_ids[b, span] = ids
        attention_mask[b, span] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def tokenize_image_chunks(tokenizer, prompt: str, num_image_tokens: int, image_token: str = IMAGE_TOKEN) -> list[int]:
    """LLaVA's `tokenizer_image_token` (haotian-liu/LLaVA, llava/mm_utils.py:185-204), with each placeholder as
    `num_image_tokens` image ids: every text chunk between placeholders is tokenized on its own, and the BOS of
    every chunk but the first is dropped.  With a SentencePiece tokenizer the chunk after `<image>` so starts
    with its own "▁" (`USER: <image>\nWhat` -> `▁USER : ▁ <image> ▁ <0x0A> What`, where `LlavaProcessor` gives
    `... <image> <0x0A> What`): the ids the models LLaVA's code trains and evaluates (model_vqa) see."""
    chunks = [tokenizer(chunk)["input_ids"] for chunk in prompt.split(image_token)]
    offset = 1 if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id else 0
    image_ids = tokenizer.encode(image_token * num_image_tokens, add_special_tokens=False) if num_image_tokens else []
    ids = list(chunks[0][:offset])
    for i, chunk in enumerate(chunks):
        ids += (image_ids if i else []) + list(chunk[offset:])
    return ids


# The study's classification prompts (Zhang et al. 2024, Table 1 and Table 2).
OPEN_QUESTION = "What type of object is in this photo?"
QUESTION_WORDINGS = {   # the study's four wordings (VLMClassifier main_results/analyze_prompt.sh, prompt1-4)
    "default": OPEN_QUESTION,
    "name_item": "Can you name the specific item pictured here?",
    "identify": "Identify the object in this image.",
    "main_object": "What is the main object depicted in this photograph?",
}
# The study's fine-tuning question (training_analysis/llava/prepare_data.ipynb cell 1: "the photo", not "this
# photo"), which its fine-tuned models are also asked at evaluation (the `text` of its *_llava_val.jsonl).
FINETUNE_QUESTION = "What type of object is in the photo?"
# Every question a generation evaluation can ask (`GenerationSettings.wording`).
WORDINGS = {**QUESTION_WORDINGS, "finetuned": FINETUNE_QUESTION}
CHAIN_OF_THOUGHT = "Let's think step by step."      # where the study puts it: prompt_formats.study_prompt
SCORING_PREFIX = "The photo features a"             # probabilistic inference scores class names after it


def closed_world_question(question: str, names: Sequence[str]) -> str:
    """`{question} Choose one from "a, b, c".` — the study's closed-world prompt."""
    return f'{question} Choose one from "{", ".join(names)}".'
