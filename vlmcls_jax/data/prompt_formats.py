"""One-turn prompt formats of the checkpoints the study evaluates: `PROMPT_FORMATS[name](question, assistant_prefix)`.

    llava_hf             llava-hf/llava-1.5-*-hf         USER: <image>\\n{question}\\nASSISTANT:
    llava_next_mistral   llava-hf/llava-v1.6-mistral-7b-hf   [INST] <image>\\n{question} [/INST]
    llava_next_vicuna    llava-hf/llava-v1.6-vicuna-7b-hf    {VICUNA_SYSTEM} USER: <image>\\n{question} ASSISTANT:
    blip2                Salesforce/blip2-opt-2.7b           Question: {question} Answer:
    instructblip         Salesforce/instructblip-vicuna-*    {question}
    llava_v1             LLaVA-1.5's own evaluation scripts (conv_mode vicuna_v1): {LLAVA_V1_SYSTEM} USER: ...

as the llava-hf model cards (and transformers' LLaVA-NeXT docs) write them.  A non-empty `assistant_prefix`
(the start of the answer, e.g. the scoring prefix "The photo features a") follows after one space.  The strings
carry no BOS: the tokenizer adds it (`<s>` = 1 for both Llama-2 and Mistral).  `<image>` is expanded to the
model's image tokens at tokenization (`prompts.tokenize_prompts`; for LLaVA-NeXT the count depends on the
image size, `LlavaNextConfig.num_image_tokens_for`).
"""

from __future__ import annotations

from typing import Callable

from vlmcls_jax.data.prompts import IMAGE_TOKEN, SCORING_PREFIX, llava_prompt

VICUNA_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the human's questions.")


def _with_prefix(prompt: str, assistant_prefix: str) -> str:
    return f"{prompt} {assistant_prefix}" if assistant_prefix else prompt


def llava_next_mistral_prompt(question: str, assistant_prefix: str = "") -> str:
    """`[INST] <image>\\n{question} [/INST]` (Mistral-Instruct's format around LLaVA's image-then-question)."""
    return _with_prefix(f"[INST] {IMAGE_TOKEN}\n{question} [/INST]", assistant_prefix)


def llava_next_vicuna_prompt(question: str, assistant_prefix: str = "") -> str:
    """Vicuna-v1 with its system prompt: `{VICUNA_SYSTEM} USER: <image>\\n{question} ASSISTANT:`."""
    return _with_prefix(f"{VICUNA_SYSTEM} USER: {IMAGE_TOKEN}\n{question} ASSISTANT:", assistant_prefix)


def blip2_prompt(question: str, assistant_prefix: str = "") -> str:
    """BLIP-2's VQA format, the study's for BLIP-2: `Question: {question} Answer:` (image tokens go before
    the text, added at tokenization: `tokenize_prompts(..., images_first=True)`)."""
    return _with_prefix(f"Question: {question} Answer:", assistant_prefix)


def instructblip_prompt(question: str, assistant_prefix: str = "") -> str:
    """InstructBLIP: the instruction itself (its model cards pass the bare question; images go first)."""
    return _with_prefix(question, assistant_prefix)


# LLaVA's llava/conversation.py:242-244 `conv_vicuna_v1` (its eval scripts' --conv-mode vicuna_v1, Table 13).
LLAVA_V1_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                   "The assistant gives helpful, detailed, and polite answers to the user's questions.")


def llava_v1_prompt(question: str, assistant_prefix: str = "") -> str:
    """`{LLAVA_V1_SYSTEM} USER: <image>\\n{question} ASSISTANT:` (sep " ", as LLaVA's get_prompt joins it)."""
    return _with_prefix(f"{LLAVA_V1_SYSTEM} USER: {IMAGE_TOKEN}\n{question} ASSISTANT:", assistant_prefix)


PROMPT_FORMATS: dict[str, Callable[[str, str], str]] = {
    "llava_hf": llava_prompt,
    "llava_next_mistral": llava_next_mistral_prompt,
    "llava_next_vicuna": llava_next_vicuna_prompt,
    "blip2": blip2_prompt,
    "instructblip": instructblip_prompt,
    "llava_v1": llava_v1_prompt,
}

# Probabilistic inference scores class names after the prompt and this start of the answer: the study's
# "The photo features a" for the LLaVA formats; for BLIP-2, `Question: q Answer: A` followed by the name.
SCORING_PREFIXES = {"blip2": "A"}


def scoring_prefix(name: str) -> str:
    """The answer start class names are scored after, for prompt format `name`."""
    return SCORING_PREFIXES.get(name, SCORING_PREFIX)


# The format each checkpoint (by hub id, as in `models.presets.PRESETS`) was trained / documented with.
CHECKPOINT_FORMATS = {
    "llava-hf/llava-1.5-7b-hf": "llava_hf",
    "llava-hf/llava-1.5-13b-hf": "llava_hf",
    "llava-hf/llava-v1.6-mistral-7b-hf": "llava_next_mistral",
    "llava-hf/llava-v1.6-vicuna-7b-hf": "llava_next_vicuna",
    "Salesforce/blip2-opt-2.7b": "blip2",
    "Salesforce/instructblip-vicuna-7b": "instructblip",
    "Salesforce/instructblip-vicuna-13b": "instructblip",
}


def prompt_format(name: str) -> Callable[[str, str], str]:
    """The format called `name` (a key of PROMPT_FORMATS) or used by checkpoint `name` (a key of
    CHECKPOINT_FORMATS); unknown names are an error listing the known ones."""
    name = CHECKPOINT_FORMATS.get(name, name)
    if name not in PROMPT_FORMATS:
        raise KeyError(f"unknown prompt format {name!r}; known: {sorted(PROMPT_FORMATS)} and checkpoints "
                       f"{sorted(CHECKPOINT_FORMATS)}")
    return PROMPT_FORMATS[name]
