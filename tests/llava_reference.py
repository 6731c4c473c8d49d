"""LLaVA's own code (haotian-liu/LLaVA at c121f04), transcribed line by line, as the reference for the study's
fine-tuning and fine-tuned-evaluation protocol (VLMClassifier training_analysis/llava/ runs that code).

`tokenizer_image_token` is llava/mm_utils.py:185-204; the tokenizer LLaVA loads is the slow Llama
tokenizer (`AutoTokenizer.from_pretrained(..., use_fast=False)`, llava/model/builder.py:116), i.e. BOS +
SentencePiece's own `encode` of each chunk: `sentencepiece_tokenizer` builds that from the real model file, with
no transformers code between.
"""

import sentencepiece

IMAGE_TOKEN_INDEX = -200          # llava/constants.py


def sentencepiece_tokenizer(model_file):
    """chunk -> [BOS] + SentencePiece ids (what LlamaTokenizer(use_fast=False)(chunk).input_ids gives), a
    `</s>` in the text being the EOS id (the slow tokenizer splits special tokens out first).  Text *after* a
    `</s>` is tokenized differently by legacy and non-legacy slow tokenizers, so it is refused here."""
    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))

    def tokenize(chunk):
        head, *rest = chunk.split("</s>")
        if any(rest[:-1]) or (rest and rest[-1]):
            raise NotImplementedError("text after </s> depends on the slow tokenizer's `legacy` flag")
        return [sp.bos_id()] + sp.encode(head) + [sp.eos_id()] * len(rest)
    return tokenize


def tokenizer_image_token(prompt, tokenize, bos_token_id=1, image_token_index=IMAGE_TOKEN_INDEX):
    # llava/mm_utils.py:185-198, with `tokenizer(chunk).input_ids` as `tokenize(chunk)`
    prompt_chunks = [tokenize(chunk) for chunk in prompt.split('<image>')]

    def insert_separator(X, sep):
        return [ele for sublist in zip(X, [sep]*len(X)) for ele in sublist][:-1]

    input_ids = []
    offset = 0
    if len(prompt_chunks) > 0 and len(prompt_chunks[0]) > 0 and prompt_chunks[0][0] == bos_token_id:
        offset = 1
        input_ids.append(prompt_chunks[0][0])

    for x in insert_separator(prompt_chunks, [image_token_index] * (offset + 1)):
        input_ids.extend(x[offset:])
    return input_ids


def expand_image_index(ids, n, image_id=32000):
    """LLaVA's single IMAGE_TOKEN_INDEX becomes n image features; llava-hf spells that n `<image>` ids."""
    return [x for i in ids for x in ([image_id] * n if i == IMAGE_TOKEN_INDEX else [i])]


def preprocess_v1_mask(conversation, tokenize, bos_token_id=1):
    """The loss mask LLaVA's preprocess_v1 gives one conversation with an image (the study's copy,
    training_analysis/llava/train.py:488-523), for a single-round conversation (the study's records): 1 where
    the target is kept.  `tokenize` as for `tokenizer_image_token`."""
    input_ids = tokenizer_image_token(conversation, tokenize, bos_token_id)
    target = [1] * len(input_ids)
    sep = " " + "ASSISTANT" + ": "                          # conv.sep + conv.roles[1] + ": "
    rounds = conversation.split("</s>")                    # conv.sep2
    cur_len = 1
    target[:cur_len] = [0] * cur_len
    for i, rou in enumerate(rounds):
        if rou == "":
            break
        parts = rou.split(sep)
        if len(parts) != 2:
            break
        parts[0] += sep
        round_len = len(tokenizer_image_token(rou, tokenize, bos_token_id))
        instruction_len = len(tokenizer_image_token(parts[0], tokenize, bos_token_id)) - 2
        assert i == 0, "single-round conversations only (later rounds depend on tokenizer.legacy)"
        target[cur_len: cur_len + instruction_len] = [0] * instruction_len
        cur_len += round_len
    target[cur_len:] = [0] * (len(target) - cur_len)
    return input_ids, target
