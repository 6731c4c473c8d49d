"""LLaVA conversations -> ids + loss masks, checked token by token with the real Llama-2 tokenizer; the
classification template; length-bucket batching; the record reader's errors."""

import json

import numpy as np
import pytest

import llava_reference
from conftest import shared_tokenizer_file
from vlmcls_jax.data.conversation import TEMPLATES, classification_record, render, tokenize_conversation
from vlmcls_jax.data.pipeline import pad_batch, read_records

RECORD = {"id": "r1", "image": "a.jpg", "conversations": [
    {"from": "human", "value": "<image>\nWhat type of object is in this photo?"},
    {"from": "gpt", "value": "golden retriever"},
    {"from": "human", "value": "Is it a dog?"},
    {"from": "gpt", "value": "Yes, it is."}]}


def supervised_text(tok, out):
    return tok.decode(out["input_ids"][out["loss_mask"] == 1].tolist())


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_mask_covers_exactly_the_answers_and_eos(llava_tokenizer, template):
    out = tokenize_conversation(llava_tokenizer, RECORD, 5, template)
    ids, mask = out["input_ids"], out["loss_mask"]
    assert ids.dtype == np.int32 and mask.shape == ids.shape
    assert (ids == 32000).sum() == 5                                   # <image> expanded
    pieces = llava_tokenizer.convert_ids_to_tokens(ids[mask == 1].tolist())
    assert pieces == ["▁golden", "▁retr", "ie", "ver", "</s>", "▁Yes", ",", "▁it", "▁is", ".", "</s>"]
    # The whole text is tokenised at once: the ids equal tokenising the rendered conversation directly
    # (BLIP-2's template: the image's ids before BOS, the placeholder gone from the text, as Blip2Processor);
    # LLaVA's templates chunk by chunk around <image>, as LLaVA's tokenizer_image_token (llava_reference).
    text, _ = render(RECORD["conversations"], TEMPLATES[template])
    if TEMPLATES[template].images_first:
        direct = [32000] * 5 + llava_tokenizer(text.replace("<image>\n", ""))["input_ids"]
        assert text.startswith("Question: <image>\nWhat type of object is in this photo? Answer: golden")
    elif TEMPLATES[template].image_chunks:   # the reference stops at the first turn's </s> (llava_reference)
        tokenize = llava_reference.sentencepiece_tokenizer(shared_tokenizer_file("llama2.model"))
        first = text[: text.index("</s>") + len("</s>")]
        direct = llava_reference.expand_image_index(llava_reference.tokenizer_image_token(first, tokenize), 5)
        image = direct.index(32000)
        assert llava_tokenizer.convert_ids_to_tokens(direct[image - 4: image + 7]) == [
            "▁US", "ER", ":", "▁", "<image>", "<image>", "<image>", "<image>", "<image>", "▁", "<0x0A>"]
        ids = ids[: len(direct)]
    else:
        direct = llava_tokenizer(text.replace("<image>", "<image>" * 5))["input_ids"]
    assert ids.tolist() == direct


def test_llava_v1_text_is_the_studys_vicuna_v1_template(llava_tokenizer):
    """The study trains with `--version v1` (training_analysis/llava/finetune.sh:7), which LLaVA's train.py
    (training_analysis/llava/train.py:1020-1021) resolves to conv_templates["v1"] = conv_vicuna_v1
    (haotian-liu/LLaVA llava/conversation.py:376), rendered by SeparatorStyle.TWO (conversation.py:54-63)."""
    # llava/conversation.py:242-252
    conv_vicuna_v1_system = ("A chat between a curious user and an artificial intelligence assistant. "
                             "The assistant gives helpful, detailed, and polite answers to the user's questions.")
    text, spans = render(RECORD["conversations"], TEMPLATES["llava_v1"])
    seps, expected = [" ", "</s>"], conv_vicuna_v1_system + " "                     # conversation.py:55-56
    for i, (role, message) in enumerate([("USER", "<image>\nWhat type of object is in this photo?"),
                                         ("ASSISTANT", "golden retriever"), ("USER", "Is it a dog?"),
                                         ("ASSISTANT", "Yes, it is.")]):
        expected += role + ": " + message + seps[i % 2]                            # conversation.py:61
    assert text == expected
    assert [text[s:e] for s, e in spans] == [" golden retriever</s>", " Yes, it is.</s>"]
    # conv_llava_v1 (conversation.py:325-335: "a curious human") stays as an option; the study did not use it
    human, _ = render(RECORD["conversations"], TEMPLATES["llava_v1_human"])
    assert human == expected.replace("curious user", "curious human").replace("the user's", "the human's")


def test_study_classification_record_ids_equal_llava_training_ids(llava_tokenizer):
    """A study training record (prepare_data.ipynb cell 1: `"<image>\\nWhat type of object is in the photo?"`,
    answer the bare label) in the llava_v1 template tokenizes to the ids LLaVA's preprocess_v1 gives it:
    `tokenizer_image_token(prompt, tokenizer)` (training_analysis/llava/train.py, llava/mm_utils.py:185-204),
    with the real Llama-2 tokenizer."""
    from vlmcls_jax.data.finetune_data import FINETUNE_QUESTION
    assert FINETUNE_QUESTION == "What type of object is in the photo?"      # prepare_data.ipynb cell 1
    record = classification_record("x.jpg", "tabby cat", question=FINETUNE_QUESTION)
    out = tokenize_conversation(llava_tokenizer, record, 3, "llava_v1")
    text, _ = render(record["conversations"], TEMPLATES["llava_v1"])
    tokenize = llava_reference.sentencepiece_tokenizer(shared_tokenizer_file("llama2.model"))
    assert out["input_ids"].tolist() == llava_reference.expand_image_index(
        llava_reference.tokenizer_image_token(text, tokenize), 3)
    assert supervised_text(llava_tokenizer, out) == "tabby cat</s>"
    # ... and the same supervised tokens as preprocess_v1's round-length masking (train.py:488-523)
    ids, keep = llava_reference.preprocess_v1_mask(text, tokenize)
    image = ids.index(llava_reference.IMAGE_TOKEN_INDEX)
    keep = keep[:image] + [0] * 3 + keep[image + 1:]                    # one image index -> 3 image ids
    assert out["loss_mask"].tolist() == keep


def test_classification_record_template(llava_tokenizer):
    rec = classification_record("x.jpg", "tabby cat", record_id="7")
    assert rec["conversations"][0]["value"] == "<image>\nWhat type of object is in this photo?"
    assert rec["conversations"][1]["value"] == "tabby cat"
    out = tokenize_conversation(llava_tokenizer, rec, 3)
    assert supervised_text(llava_tokenizer, out) == "tabby cat</s>"
    sentence = classification_record("x.jpg", "tabby cat", answer_template="The photo features a {}.")
    assert sentence["conversations"][1]["value"] == "The photo features a tabby cat."


@pytest.mark.parametrize("turns,match", [
    ([{"from": "human", "value": "<image>\nq"}], "no assistant"),
    ([{"from": "gpt", "value": "a"}], "expected 'human'"),
    ([{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": None}], "no string 'value'"),
])
def test_malformed_conversations_name_the_record(llava_tokenizer, turns, match):
    with pytest.raises(ValueError, match=f"record bad: .*{match}"):
        tokenize_conversation(llava_tokenizer, {"id": "bad", "conversations": turns}, 1)


def test_truncation_and_missing_placeholder_are_errors(llava_tokenizer):
    with pytest.raises(ValueError, match="record r1 is .* more than max_length=10"):
        tokenize_conversation(llava_tokenizer, RECORD, 5, max_length=10)
    no_placeholder = {"id": "np", "image": "a.jpg", "conversations": [
        {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    with pytest.raises(ValueError, match="record np has an image but no <image>"):
        tokenize_conversation(llava_tokenizer, no_placeholder, 4)


def test_pad_batch_uses_the_smallest_fitting_bucket():
    examples = [{"input_ids": np.arange(1, n + 1, dtype=np.int32), "loss_mask": np.ones(n, np.int32),
                 "pixel_values": np.zeros((2, 2, 3), np.float32), "has_image": np.int32(1)} for n in (3, 7)]
    batch = pad_batch(examples, buckets=(4, 8, 16), pad_id=0)
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"].sum(1).tolist() == [3, 7]
    assert batch["input_ids"][0].tolist() == [1, 2, 3, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="largest length bucket 4"):
        pad_batch(examples, buckets=(4,), pad_id=0)


def test_read_records_json_and_jsonl(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([RECORD]))
    (tmp_path / "b.jsonl").write_text(json.dumps(RECORD) + "\n\n" + json.dumps(RECORD) + "\n")
    assert len(read_records(str(tmp_path / "a.json"))) == 1
    assert len(read_records(str(tmp_path / "b.jsonl"))) == 2
    (tmp_path / "c.jsonl").write_text(json.dumps(RECORD) + "\n{broken\n")
    with pytest.raises(ValueError, match="c.jsonl:2"):
        read_records(str(tmp_path / "c.jsonl"))
    (tmp_path / "d.json").write_text(json.dumps([{"image": "x"}]))
    with pytest.raises(ValueError, match="record 0 has no 'conversations'"):
        read_records(str(tmp_path / "d.json"))


def test_lavis_caption_template_for_blip2(llava_tokenizer):
    """The study's BLIP-2 data (training_analysis/blip/prepare_data.py: `"caption": f'{item["label"]}'`) through
    LAVIS's `blip_caption` processor with `prompt: "a photo of "` (blip/config.yaml:25):
        caption = self.prompt + self.pre_caption(caption)               (lavis/processors/blip_processors.py)
        text = [t + "\\n" for t in samples["text_input"]]                 (lavis/models/blip2_models/blip2_opt.py)
        targets[:, : self.prompt_length] = -100   # prompt_length = len(tokenizer("a photo of"))
    The image's ids go first; the loss covers exactly the tokens LAVIS's count-based mask leaves."""
    import re

    from vlmcls_jax.data.conversation import pre_caption

    def lavis_pre_caption(caption, max_words=50):      # blip_processors.py BlipCaptionProcessor.pre_caption
        caption = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
        caption = re.sub(r"\s{2,}", " ", caption)
        caption = caption.rstrip("\n")
        caption = caption.strip(" ")
        caption_words = caption.split(" ")
        if len(caption_words) > max_words:
            caption = " ".join(caption_words[:max_words])
        return caption

    for label in ("tench", "Tiger Lily", "ground beetle (Carabidae)", "St. Bernard", "a" + " b" * 60):
        assert pre_caption(label) == lavis_pre_caption(label)
    record = classification_record("x.jpg", "Giant (Panda)")
    out = tokenize_conversation(llava_tokenizer, record, 3, "blip2_lavis_caption")
    text = "a photo of " + lavis_pre_caption("Giant (Panda)") + "\n"
    lavis_ids = llava_tokenizer(text)["input_ids"]
    prompt_length = len(llava_tokenizer("a photo of")["input_ids"])
    assert out["input_ids"].tolist() == [32000] * 3 + lavis_ids
    assert out["loss_mask"].tolist() == [0] * 3 + [0] * prompt_length + [1] * (len(lavis_ids) - prompt_length)
    assert supervised_text(llava_tokenizer, out) == "giant panda\n"
