"""One-turn prompt formats of the checkpoints the study evaluates: `PROMPT_FORMATS[name](question, assistant_prefix)`.

The defaults are the study's strings (yuhui-zh15/VLMClassifier at d069792, main_results/main.py:110-141 and
imagewikiqa/main.py:54-73, both run through llava-hf's / Salesforce's transformers processors):

    llava_hf             llava-hf/llava-1.5-*-hf            USER: <image>\\n{question}\\nASSISTANT:
    llava_next_mistral   llava-hf/llava-v1.6-mistral-7b-hf  [INST] <image>\\n{question}[/INST]  (no space before [/INST])
    llava_next_vicuna    llava-hf/llava-v1.6-vicuna-7b-hf   {VICUNA_SYSTEM} USER: <image>\\n{question} ASSISTANT:
    blip2                Salesforce/blip2-opt-2.7b          Question: {question} Answer:
    instructblip         Salesforce/instructblip-vicuna-*   Question: {question} Answer: (the study's `"blip" in
                                                            model_id` branch, main.py:121, catches InstructBLIP
                                                            too; its Q-Former reads that same text)
    llava_v1             a model fine-tuned with LLaVA's own code (`--version v1`), evaluated as the study does
                         with LLaVA's `model_vqa --conv-mode vicuna_v1`: {VICUNA_V1_SYSTEM} USER: <image>\\n{question}
                         ASSISTANT:, tokenized as LLaVA's `tokenizer_image_token` does (`TOKENIZE_IMAGE_CHUNKS`)

    blip2_lavis_caption  a BLIP-2 fine-tuned as the study did with LAVIS (configs/finetune_blip2_qformer.py), evaluated
                         as LAVIS's captioning generate does: the prompt `a photo of` alone (the question is not
                         asked), the caption cut at the first "\\n" (its eos) and stripped

Options (not the study's): `llava_next_mistral_docs` (transformers' LLaVA-NeXT docs and the model card write a
space before `[/INST]`; token ids differ), `instructblip_bare` (InstructBLIP's model cards pass the bare question).

A non-empty `assistant_prefix` (the start of the answer, e.g. the scoring prefix "The photo features a") follows
after one space.  Chain of thought goes where the study put it (`study_prompt`): in the assistant turn for the
LLaVA formats, inside the question (before `Answer:`) for BLIP-2 / InstructBLIP.  The strings carry no BOS: the
tokenizer adds it (`<s>` = 1 for both Llama-2 and Mistral).  `<image>` is expanded to the model's image tokens at
tokenization (`prompts.tokenize_prompts`; for LLaVA-NeXT the count depends on the image size,
`LlavaNextConfig.num_image_tokens_for`).
"""

from __future__ import annotations

from collections.abc import Callable

from vlmcls_jax.data.prompts import CHAIN_OF_THOUGHT, IMAGE_TOKEN, SCORING_PREFIX, llava_prompt

# llava-hf's LLaVA-NeXT-Vicuna system prompt, as the study writes it (main_results/main.py:118).
VICUNA_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the human's questions.")
# LLaVA's conv_vicuna_v1 (llava/conversation.py:242-252; `--version v1` and `--conv-mode vicuna_v1`): "user".
VICUNA_V1_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                    "The assistant gives helpful, detailed, and polite answers to the user's questions.")


def _with_prefix(prompt: str, assistant_prefix: str) -> str:
    return f"{prompt} {assistant_prefix}" if assistant_prefix else prompt


def llava_next_mistral_prompt(question: str, assistant_prefix: str = "") -> str:
    """The study's `[INST] <image>\\n{question}[/INST]` (main_results/main.py:113; no space before `[/INST]`)."""
    return _with_prefix(f"[INST] {IMAGE_TOKEN}\n{question}[/INST]", assistant_prefix)


def llava_next_mistral_docs_prompt(question: str, assistant_prefix: str = "") -> str:
    """`[INST] <image>\\n{question} [/INST]`: transformers' LLaVA-NeXT docs (a space before `[/INST]`)."""
    return _with_prefix(f"[INST] {IMAGE_TOKEN}\n{question} [/INST]", assistant_prefix)


def llava_next_vicuna_prompt(question: str, assistant_prefix: str = "") -> str:
    """Vicuna-v1 with its system prompt: `{VICUNA_SYSTEM} USER: <image>\\n{question} ASSISTANT:`."""
    return _with_prefix(f"{VICUNA_SYSTEM} USER: {IMAGE_TOKEN}\n{question} ASSISTANT:", assistant_prefix)


def blip2_prompt(question: str, assistant_prefix: str = "") -> str:
    """`Question: {question} Answer:` (main_results/main.py:124), for BLIP-2 and InstructBLIP (image tokens go
    before the text, added at tokenization: `tokenize_prompts(..., images_first=True)`)."""
    return _with_prefix(f"Question: {question} Answer:", assistant_prefix)


def instructblip_bare_prompt(question: str, assistant_prefix: str = "") -> str:
    """InstructBLIP's model cards: the instruction itself (not the study's; images go first)."""
    return _with_prefix(question, assistant_prefix)


def model_vqa_prompt(question: str, assistant_message: str | None = None, system: str = VICUNA_V1_SYSTEM) -> str:
    """The prompt LLaVA's `llava/eval/model_vqa.py` builds (the study's copy, training_analysis/llava/model_vqa.py
    :68-77) with conv_vicuna_v1 (SeparatorStyle.TWO, sep " ", sep2 "</s>"): messages (USER, "<image>\\n" + q) and
    (ASSISTANT, None), rendered by `Conversation.get_prompt` (llava/conversation.py:54-63).

    `assistant_message` reproduces the study's ImageWikiQA lines (model_vqa.py:76-77, "Enable This Part for
    ImageWikiQA"): a third message (ASSISTANT, msg) is appended *after* the empty one and `</s>` removed, giving
    `... ASSISTANT:ASSISTANT: Let's think step by step. ` (two `ASSISTANT:`, a trailing space)."""
    messages = [("USER", f"{IMAGE_TOKEN}\n{question}"), ("ASSISTANT", None)]
    if assistant_message is not None:
        messages.append(("ASSISTANT", assistant_message))
    seps = [" ", "</s>"]
    text = system + seps[0]
    for i, (role, message) in enumerate(messages):
        text += f"{role}: {message}{seps[i % 2]}" if message else f"{role}:"
    return text.replace("</s>", "") if assistant_message is not None else text


def blip2_lavis_caption_prompt(question: str, assistant_prefix: str = "") -> str:
    """`a photo of`: LAVIS's BLIP-2 caption prompt (blip2_caption_opt2.7b.yaml `prompt: "a photo of"`, used by
    blip2_opt.py `generate`); the question is ignored (image tokens go first)."""
    return _with_prefix("a photo of", assistant_prefix)


def llava_v1_prompt(question: str, assistant_prefix: str = "") -> str:
    """`{VICUNA_V1_SYSTEM} USER: <image>\\n{question} ASSISTANT:` (LLaVA's model_vqa, conv-mode vicuna_v1)."""
    return _with_prefix(model_vqa_prompt(question), assistant_prefix)


PROMPT_FORMATS: dict[str, Callable[[str, str], str]] = {
    "llava_hf": llava_prompt,
    "llava_next_mistral": llava_next_mistral_prompt,
    "llava_next_mistral_docs": llava_next_mistral_docs_prompt,
    "llava_next_vicuna": llava_next_vicuna_prompt,
    "blip2": blip2_prompt,
    "instructblip": blip2_prompt,
    "instructblip_bare": instructblip_bare_prompt,
    "llava_v1": llava_v1_prompt,
    "blip2_lavis_caption": blip2_lavis_caption_prompt,
}

# Formats whose `<image>` is tokenized as LLaVA's own code does (`llava.mm_utils.tokenizer_image_token`: each
# text chunk between placeholders tokenized on its own, so the chunk after the image starts with its own "▁").
TOKENIZE_IMAGE_CHUNKS = frozenset({"llava_v1"})

# Where the study puts "Let's think step by step.": BLIP formats inside the question, before "Answer:"
# (main_results/main.py:128, imagewikiqa/main.py:66); every other format after the assistant tag.
COT_IN_QUESTION = frozenset({"blip2", "instructblip", "instructblip_bare"})

# The text the study splits the decoded output at to get its prediction (main_results/main.py:151-156,
# imagewikiqa/main.py:81-86): `text.split(marker)[-1].strip()`; "ASSISTANT:" for formats not listed.  None: the
# prediction is the continuation itself, stripped (LLaVA's model_vqa.py:105-107 decodes only the new tokens).
ANSWER_MARKERS: dict[str, str | None] = {
    "llava_next_mistral": "[/INST]", "llava_next_mistral_docs": "[/INST]", "blip2": "Answer:",
    "instructblip": "Answer:", "instructblip_bare": None, "llava_v1": None, "blip2_lavis_caption": None}
# LAVIS's generate stops at "\n" (blip2_opt.py: `eos_token_id = opt_tokenizer("\n", ...)`): the caption is cut there.
STOP_AT_NEWLINE = frozenset({"blip2_lavis_caption"})


def study_prompt(name: str, question: str, chain_of_thought: bool = False, assistant_prefix: str = "") -> str:
    """The study's prompt in format `name`, with chain of thought where the study put it:
    llava_hf -> `USER: <image>\\n{q}\\nASSISTANT: Let's think step by step.` (main.py:139),
    blip2 -> `Question: {q} Let's think step by step. Answer:` (main.py:128)."""
    fmt = prompt_format(name)
    if not chain_of_thought:
        return fmt(question, assistant_prefix)
    if CHECKPOINT_FORMATS.get(name, name) in COT_IN_QUESTION:
        return fmt(f"{question} {CHAIN_OF_THOUGHT}", assistant_prefix)
    return fmt(question, f"{CHAIN_OF_THOUGHT} {assistant_prefix}".strip())


def study_prediction(name: str, prompt: str, generated: str) -> str:
    """The study's prediction for a `generated` continuation of `prompt` (format `name`).

    The study decodes prompt and continuation together (llava-hf's `generate` returns both) and keeps
    `text.split(marker)[-1].strip()` with marker `ASSISTANT:`, `[/INST]` or `Answer:`.  The same split of
    `prompt + " " + generated` gives that text whether or not the decoded output includes the prompt (for
    BLIP-2 it depends on the transformers version): with chain of thought in the assistant turn it starts with
    "Let's think step by step.", and a continuation that itself writes the marker keeps only what follows it."""
    name = CHECKPOINT_FORMATS.get(name, name)
    if name in STOP_AT_NEWLINE:
        generated = generated.lstrip().split("\n")[0]
    marker = ANSWER_MARKERS.get(name, "ASSISTANT:")
    if marker is None:
        return generated.strip()
    return f"{prompt} {generated.lstrip()}".split(marker)[-1].strip()


# Probabilistic inference scores class names after the prompt and this start of the answer: the study's
# "The photo features a" for the LLaVA formats; for BLIP-2 and InstructBLIP, `Question: q Answer: A` followed by
# the name (inference_analysis/main.py:156-162: its `"blip" in model_id` branch).
SCORING_PREFIXES = {"blip2": "A", "instructblip": "A"}


def scoring_prefix(name: str) -> str:
    """The answer start class names are scored after, for prompt format `name`."""
    return SCORING_PREFIXES.get(name, SCORING_PREFIX)


# The format the study used for each checkpoint (by hub id, as in `models.presets.PRESETS`).
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
