"""vlmcls_jax.data.prompts against transformers' LlavaProcessor with the real Llama-2 tokenizer.

Uses tests/data/tokenizers/llama2.model (fixtures in conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from transformers import LlavaProcessor
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from vlmcls_jax.data.prompts import llava_prompt, tokenize_prompts

QUESTION = "What type of object is in this photo?"  # the study's open-world question
CLOSED = [QUESTION + ' Choose one from "a, b, c".',
          QUESTION + ' Choose one from "goldfish, great white shark, tiger shark, hammerhead".']
PREFIX = "The photo features a"  # the study's answer prefix
PROMPTS = [llava_prompt(QUESTION), llava_prompt(QUESTION, PREFIX), llava_prompt(CLOSED[0]),
           llava_prompt(CLOSED[1], PREFIX), llava_prompt("Hi")]

# (image size, image tokens): 336 px / patch 14 = 24 x 24 = 576 (LLaVA-1.5), and a tiny 28 px case.
IMAGE_SIZES = [(336, 576), (28, 4)]


def _llava_processor(tokenizer, size: int) -> LlavaProcessor:
    """LlavaProcessor configured as llava-hf's llava-1.5: CLIP processor, patch 14, CLS counted then dropped."""
    crop = {"height": size, "width": size}
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size=crop)
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1)


def test_llava_prompt_strings():
    assert llava_prompt(QUESTION) == "USER: <image>\nWhat type of object is in this photo?\nASSISTANT:"
    assert llava_prompt(QUESTION, PREFIX) == (
        "USER: <image>\nWhat type of object is in this photo?\nASSISTANT: The photo features a")
    assert llava_prompt(CLOSED[0]).endswith('photo? Choose one from "a, b, c".\nASSISTANT:')


@pytest.mark.parametrize("size,num_image_tokens", IMAGE_SIZES)
def test_ids_match_llava_processor(llava_tokenizer, size, num_image_tokens):
    processor = _llava_processor(llava_tokenizer, size)
    image = Image.new("RGB", (size + 3, size), (10, 20, 30))
    for prompt in PROMPTS:
        ours = tokenize_prompts(llava_tokenizer, [prompt], num_image_tokens)
        theirs = processor(images=image, text=prompt)["input_ids"][0]
        assert ours["input_ids"].dtype == np.int32 and ours["attention_mask"].dtype == np.int32
        assert ours["input_ids"][0].tolist() == theirs, prompt
        assert ours["attention_mask"].tolist() == [[1] * len(theirs)]
        assert theirs[0] == 1 and theirs.count(32000) == num_image_tokens  # BOS, then the image run
    # The known llava-hf start: <s> ▁US ER : ▁ <image>...; then "\n" as byte token 13.
    ids = tokenize_prompts(llava_tokenizer, [PROMPTS[0]], num_image_tokens)["input_ids"][0].tolist()
    assert ids[:6] == [1, 3148, 1001, 29901, 29871, 32000]
    assert ids[5 + num_image_tokens] == 13


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("size,num_image_tokens", IMAGE_SIZES)
def test_batch_padding_matches_llava_processor(llava_tokenizer, padding_side, size, num_image_tokens):
    processor = _llava_processor(llava_tokenizer, size)
    images = [Image.new("RGB", (size, size))] * len(PROMPTS)
    theirs = processor(images=images, text=PROMPTS, padding=True, padding_side=padding_side)
    ours = tokenize_prompts(llava_tokenizer, PROMPTS, num_image_tokens, padding_side=padding_side)
    assert ours["input_ids"].tolist() == theirs["input_ids"]
    assert ours["attention_mask"].tolist() == theirs["attention_mask"]
    lengths = ours["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) > 1  # the batch really is ragged
    pad_column = 0 if padding_side == "left" else -1
    assert ours["input_ids"][lengths.argmin(), pad_column] == 32001  # <pad>


def test_errors(llama2_tokenizer, llava_tokenizer):
    prompt = llava_prompt(QUESTION)
    with pytest.raises(ValueError, match="pad_token"):
        tokenize_prompts(llama2_tokenizer, [prompt], 576)  # plain Llama-2 has no pad token
    with pytest.raises(ValueError, match="no '<image>' placeholder"):
        tokenize_prompts(llava_tokenizer, [prompt, "USER: hello\nASSISTANT:"], 576)
    with pytest.raises(ValueError, match="not a single token"):
        tokenize_prompts(llava_tokenizer, [prompt.replace("<image>", "<img>")], 576, image_token="<img>")
    length = tokenize_prompts(llava_tokenizer, [prompt], 576)["input_ids"].shape[1]
    assert tokenize_prompts(llava_tokenizer, [prompt], 576, max_length=length)["input_ids"].shape == (1, length)
    with pytest.raises(ValueError, match=f"more than max_length={length - 1}"):
        tokenize_prompts(llava_tokenizer, [prompt], 576, max_length=length - 1)
    with pytest.raises(ValueError, match="padding_side"):
        tokenize_prompts(llava_tokenizer, [prompt], 576, padding_side="center")
