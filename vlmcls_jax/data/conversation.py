"""LLaVA conversations -> token ids and loss masks; classification examples -> conversations.

LLaVA's released training JSON (558K pretraining, 665K instruction mix) holds records like

    {"id": ..., "image": "coco/train2017/000.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nWhat is this?"}, {"from": "gpt", "value": "A cat."}]}

`tokenize_conversation` renders the turns with a template, expands `<image>` to the model's number of
image tokens, tokenizes the whole text once, and marks as supervised exactly the tokens whose characters
lie inside an assistant answer (the answer plus its closing separator, e.g. `</s>`), using the fast
tokenizer's character offsets.  So the mask can never drift from the ids (the "tokenization mismatch"
that silently zeroes LLaVA's loss); a sample whose answers get no token (empty answer, truncation) is
an error naming the sample.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

import numpy as np

from vlmcls_jax.data.prompt_formats import VICUNA_SYSTEM, VICUNA_V1_SYSTEM
from vlmcls_jax.data.prompts import IMAGE_TOKEN, OPEN_QUESTION


@dataclasses.dataclass(frozen=True)
class Template:
    """`{system}{sep}USER: q1{sep}ASSISTANT: a1{sep2}USER: q2{sep}ASSISTANT: a2{sep2}` (LLaVA's SeparatorStyle.TWO)."""
    system: str
    user: str = "USER"
    assistant: str = "ASSISTANT"
    sep: str = " "
    sep2: str = "</s>"
    # BLIP-2 / InstructBLIP: the image's tokens go before everything (BOS included), not at `<image>`
    images_first: bool = False
    # LLaVA's own code: the text between `<image>` placeholders tokenized chunk by chunk (tokenizer_image_token,
    # llava/mm_utils.py:185; train.py preprocess_v1), as `prompts.tokenize_image_chunks` does at evaluation
    image_chunks: bool = False


TEMPLATES = {
    # The study's fine-tuning template: LLaVA's `--version v1` = conv_templates["v1"] = conv_vicuna_v1
    # (haotian-liu/LLaVA llava/conversation.py:242-252, :376; finetune*.sh `--version v1`): "a curious user".
    "llava_v1": Template(system=VICUNA_V1_SYSTEM, image_chunks=True),
    # LLaVA's conv_llava_v1 (llava/conversation.py:325-335, conv_templates["llava_v1"]): "a curious human", as
    # llava-hf's LLaVA-NeXT-Vicuna prompt.  Not what the study trained with.
    "llava_v1_human": Template(system=VICUNA_SYSTEM, image_chunks=True),
    # llava-hf's inference format (`USER: <image>\nq\nASSISTANT:`), for models trained or evaluated that way.
    "llava_hf": Template(system="", sep="\n"),
    # BLIP-2's VQA format (`Question: q Answer: a`, data.prompt_formats.blip2_prompt), image tokens first.
    "blip2": Template(system="", user="Question", assistant="Answer", images_first=True),
}


@dataclasses.dataclass(frozen=True)
class CaptionTemplate:
    """LAVIS's BLIP-2 captioning format, as the study fine-tunes BLIP-2 (training_analysis/blip/config.yaml:
    text_processor `blip_caption` with `prompt: "a photo of "`; LAVIS blip2_opt.py forward): image tokens first,
    then `{prompt}{pre_caption(answer)}\n` (BOS first, as the OPT tokenizer adds it), the loss on everything
    after the prompt (LAVIS masks the first `len(tokenizer("a photo of"))` tokens).  The answer is the record's
    last assistant turn (the class name, training_analysis/blip/prepare_data.py)."""
    prompt: str = "a photo of "
    max_words: int = 50
    images_first: bool = True


def pre_caption(caption: str, max_words: int = 50) -> str:
    """LAVIS's BlipCaptionProcessor.pre_caption (lavis/processors/blip_processors.py): lower-cased,
    `.!"()*#:;~` replaced by spaces, runs of whitespace collapsed, trimmed, cut to `max_words` words."""
    caption = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
    caption = re.sub(r"\s{2,}", " ", caption)
    caption = caption.rstrip("\n").strip(" ")
    words = caption.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else caption


# Caption templates by name (kept apart from TEMPLATES: one answer, no turns).
CAPTION_TEMPLATES = {"blip2_lavis_caption": CaptionTemplate()}


def render_caption(turns: Sequence[Mapping[str, str]], template: CaptionTemplate) -> tuple[str, list[tuple[int, int]]]:
    """Turns -> (`{prompt}{pre_caption(last answer)}\n`, [the span after the prompt's last word])."""
    answers = [t.get("value") for t in turns if isinstance(t, Mapping) and t.get("from") == "gpt"]
    if not answers or not isinstance(answers[-1], str):
        raise ValueError("conversation has no assistant ('gpt') turn to caption with")
    text = f"{template.prompt}{pre_caption(answers[-1], template.max_words)}\n"
    return text, [(len(template.prompt.rstrip()), len(text))]


def render(turns: Sequence[Mapping[str, str]], template: Template) -> tuple[str, list[tuple[int, int]]]:
    """Turns [{"from": "human"|"gpt", "value": str}, ...] -> (text, supervised character spans).

    Each span starts right after `ASSISTANT:` (so it includes the space before the answer, which the
    answer's first token carries) and ends after the closing `sep2`."""
    text = template.system + template.sep if template.system else ""
    spans = []
    for i, turn in enumerate(turns):
        role = turn.get("from")
        expected = "human" if i % 2 == 0 else "gpt"
        if role != expected:
            raise ValueError(f"turn {i} is from {role!r}, expected {expected!r} (turns alternate human, gpt)")
        value = turn.get("value")
        if not isinstance(value, str):
            raise ValueError(f"turn {i} has no string 'value'")
        if role == "human":
            text += f"{template.user}: {value}{template.sep}"
        else:
            text += f"{template.assistant}:"
            start = len(text)
            text += f" {value}{template.sep2}"
            spans.append((start, len(text)))
    if not spans:
        raise ValueError("conversation has no assistant ('gpt') turn to learn from")
    return text, spans


def tokenize_conversation(tokenizer, record: Mapping, num_image_tokens: int,
                          template: Template | CaptionTemplate | str = "llava_v1",
                          max_length: int | None = None) -> dict[str, np.ndarray]:
    """One LLaVA-format record -> {"input_ids": int32[T], "loss_mask": int32[T]}.

    `<image>` in the text is expanded to `num_image_tokens` ids (as `LlavaProcessor` does); with a template
    whose `images_first` is set (BLIP-2) the placeholder is dropped from the text and the image's ids go before
    everything, BOS included (as `Blip2Processor` does).  Raises
    ValueError naming the record's id when the answers get no supervised token, or when the text exceeds
    `max_length` (a truncated answer would silently train on half a label)."""
    if isinstance(template, str):
        if template not in TEMPLATES and template not in CAPTION_TEMPLATES:
            raise KeyError(f"unknown template {template!r}; known: {sorted(TEMPLATES) + sorted(CAPTION_TEMPLATES)}")
        template = TEMPLATES.get(template) or CAPTION_TEMPLATES[template]
    name = record.get("id", "<no id>")
    turns = record.get("conversations")
    has_placeholder = isinstance(turns, list) and any(
        isinstance(t, Mapping) and IMAGE_TOKEN in str(t.get("value", "")) for t in turns)
    if template.images_first and isinstance(turns, list):   # the placeholder only marks the image
        turns = [dict(t, value=t["value"].replace(IMAGE_TOKEN + "\n", "").replace(IMAGE_TOKEN, ""))
                 if isinstance(t, Mapping) and isinstance(t.get("value"), str) else t for t in turns]
    try:
        conversation = record["conversations"] if turns is None else turns
        text, spans = render_caption(conversation, template) if isinstance(template, CaptionTemplate) else \
            render(conversation, template)
    except (KeyError, ValueError) as e:
        raise ValueError(f"record {name}: {e}") from e
    if num_image_tokens and not has_placeholder and "image" in record:
        raise ValueError(f"record {name} has an image but no {IMAGE_TOKEN} placeholder in its turns")
    if getattr(template, "image_chunks", False) and not template.images_first:
        ids, offsets = _encode_image_chunks(tokenizer, text, num_image_tokens)
    else:
        expanded = text
        if not template.images_first:
            expanded, spans = _expand_images(text, spans, num_image_tokens)
        encoding = tokenizer(expanded, return_offsets_mapping=True)
        ids = np.asarray(encoding["input_ids"], np.int32)
        offsets = np.asarray(encoding["offset_mapping"], np.int64).reshape(-1, 2)
    mask = np.zeros(len(ids), np.int32)
    for start, end in spans:
        mask |= (offsets[:, 0] >= start) & (offsets[:, 1] <= end) & (offsets[:, 1] > offsets[:, 0])
    if not mask.any():
        raise ValueError(f"record {name}: no token falls inside an answer, so its loss mask is empty "
                         "(empty answer, or a tokenizer without character offsets)")
    if template.images_first and num_image_tokens and has_placeholder:
        image_ids = np.asarray(tokenizer.encode(IMAGE_TOKEN * num_image_tokens, add_special_tokens=False), np.int32)
        ids, mask = np.concatenate([image_ids, ids]), np.concatenate([np.zeros(len(image_ids), mask.dtype), mask])
    if max_length is not None and len(ids) > max_length:
        raise ValueError(f"record {name} is {len(ids)} tokens, more than max_length={max_length}")
    return {"input_ids": ids, "loss_mask": mask.astype(np.int32)}


def _encode_image_chunks(tokenizer, text: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """LLaVA's tokenizer_image_token with character offsets: each chunk between `<image>` placeholders tokenized
    on its own (BOS kept only on the first), each placeholder as n image ids with empty offsets.
    -> (int32[T] ids, int64[T, 2] offsets into `text`)."""
    image_ids = tokenizer.encode(IMAGE_TOKEN * n, add_special_tokens=False) if n else []
    ids, offsets, at = [], [], 0
    for i, piece in enumerate(text.split(IMAGE_TOKEN)):
        if i:
            ids += image_ids
            offsets += [(at, at)] * len(image_ids)
            at += len(IMAGE_TOKEN)
        encoding = tokenizer(piece, return_offsets_mapping=True)
        piece_ids, piece_offsets = list(encoding["input_ids"]), [tuple(o) for o in encoding["offset_mapping"]]
        if i and piece_ids and piece_ids[0] == tokenizer.bos_token_id:
            piece_ids, piece_offsets = piece_ids[1:], piece_offsets[1:]
        ids += piece_ids
        offsets += [(a + at, b + at) for a, b in piece_offsets]
        at += len(piece)
    return np.asarray(ids, np.int32), np.asarray(offsets, np.int64).reshape(-1, 2)


def _expand_images(text: str, spans, n: int):
    """Replaces each `<image>` by n copies, shifting the answer spans that follow."""
    if IMAGE_TOKEN not in text:
        return text, spans
    pieces = text.split(IMAGE_TOKEN)
    out, shifted = pieces[0], list(spans)
    for piece in pieces[1:]:
        at = len(out)
        out += IMAGE_TOKEN * n + piece
        grow = len(IMAGE_TOKEN) * (n - 1)
        shifted = [(s + grow if s > at else s, e + grow if e > at else e) for s, e in shifted]
    return out, shifted


def classification_record(image: str, class_name: str, *, question: str = OPEN_QUESTION,
                          answer_template: str = "{}", record_id: str | None = None) -> dict:
    """A classification example in LLaVA's format: `<image>\\n{question}` -> `answer_template.format(class)`.
    The default answer is the bare class name; pass e.g. "The photo features a {}." for a sentence."""
    record = {"image": image, "conversations": [
        {"from": "human", "value": f"{IMAGE_TOKEN}\n{question}"},
        {"from": "gpt", "value": answer_template.format(class_name)}]}
    if record_id is not None:
        record["id"] = record_id
    return record
