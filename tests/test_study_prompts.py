"""The study's prompts, decoding limits, predictions and splits, each against the study's own line quoted here
(yuhui-zh15/VLMClassifier at d069792; LLaVA's code at haotian-liu/LLaVA c121f04 for the fine-tuned path).
Model-free: strings, and token ids from the real Llama-2 tokenizer."""

import pytest

import llava_reference
from conftest import shared_tokenizer_file
from vlmcls_jax import defaults
from vlmcls_jax.data.prompt_formats import (
    CHECKPOINT_FORMATS,
    PROMPT_FORMATS,
    model_vqa_prompt,
    prompt_format,
    scoring_prefix,
    study_prediction,
    study_prompt,
)
from vlmcls_jax.data.prompts import FINETUNE_QUESTION, OPEN_QUESTION, WORDINGS, tokenize_prompts
from vlmcls_jax.eval.imagewikiqa_eval import ImageWikiQASettings
from vlmcls_jax.eval.metrics import study_exact_match
from vlmcls_jax.eval.vlm_generation import GenerationSettings

Q = 'What type of object is in this photo? Choose one from "rose, tulip".'


def main_py_prompt(model_id, question, chain_of_thought):
    """main_results/main.py:110-141, verbatim (one question)."""
    if "llava-v1.6-mistral" in model_id:
        assert not chain_of_thought
        return f"[INST] <image>\n{question}[/INST]"
    elif "llava-v1.6-vicuna" in model_id:
        assert not chain_of_thought
        return f"A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions. USER: <image>\n{question} ASSISTANT:"
    elif "blip" in model_id:
        if not chain_of_thought:
            return f"Question: {question} Answer:"
        else:
            return f"Question: {question} Let's think step by step. Answer:"
    else:
        if not chain_of_thought:
            return f"USER: <image>\n{question}\nASSISTANT:"
        else:
            return f"USER: <image>\n{question}\nASSISTANT: Let's think step by step."


def imagewikiqa_main_py_prompt(model_id, question):
    """imagewikiqa/main.py:54-73, verbatim."""
    if "llava-v1.6-mistral" in model_id:
        return f"[INST] <image>\n{question}[/INST] Let's think step by step."
    elif "llava-v1.6-vicuna" in model_id:
        return f"A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions. USER: <image>\n{question} ASSISTANT: Let's think step by step."
    elif "blip" in model_id:
        return f"Question: {question} Let's think step by step. Answer:"
    else:
        return f"USER: <image>\n{question}\nASSISTANT: Let's think step by step."


def main_py_pred(model_id, text):
    """main_results/main.py:151-156 (and imagewikiqa/main.py:81-86), verbatim."""
    if "mistral" in model_id:
        return text.split("[/INST]")[-1].strip()
    elif "blip" in model_id:
        return text.split("Answer:")[-1].strip()
    else:
        return text.split("ASSISTANT:")[-1].strip()


@pytest.mark.parametrize("model_id", sorted(CHECKPOINT_FORMATS))
@pytest.mark.parametrize("cot", [False, True])
def test_classification_prompts_are_the_studys(model_id, cot):
    """Every checkpoint's default prompt, with and without chain of thought, is main.py's, byte for byte:
    InstructBLIP gets BLIP-2's `Question: {q} Answer:` (its `"blip" in model_id` branch), and chain of thought
    for BLIP goes before `Answer:` (main.py:128), not after it."""
    if cot and "llava-v1.6" in model_id:       # main.py:111/116 assert not chain_of_thought; ImageWikiQA has it
        assert study_prompt(model_id, Q, True) == imagewikiqa_main_py_prompt(model_id, Q)
        return
    assert study_prompt(model_id, Q, cot) == main_py_prompt(model_id, Q, cot)


@pytest.mark.parametrize("model_id", sorted(CHECKPOINT_FORMATS))
def test_imagewikiqa_prompts_are_the_studys(model_id):
    text = "Which is it?\nA. x\nB. y\nC. z\nD. w\nChoose A, B, C, or D."
    assert study_prompt(model_id, text, chain_of_thought=True) == imagewikiqa_main_py_prompt(model_id, text)


@pytest.mark.parametrize("model_id", sorted(CHECKPOINT_FORMATS))
@pytest.mark.parametrize("cot", [False, True])
@pytest.mark.parametrize("generated", ["rose", " A rose. ", "It is red. Answer: tulip", "ASSISTANT: x [/INST] y"])
def test_predictions_are_the_studys(model_id, cot, generated):
    """The study decodes prompt + generation (llava-hf's generate returns both; skip_special_tokens drops the
    image tokens) and splits at its marker; ours gives the same from the prompt and the generation."""
    prompt = study_prompt(model_id, Q, cot and "llava-v1.6" not in model_id)
    decoded = prompt.replace("<image>", "") + " " + generated.strip()
    assert study_prediction(CHECKPOINT_FORMATS[model_id], prompt, generated) == main_py_pred(model_id, decoded)


def test_blip_chain_of_thought_prediction_is_after_the_last_answer_tag():
    prompt = study_prompt("Salesforce/blip2-opt-2.7b", Q, True)
    assert study_prediction("blip2", prompt, "Roses have thorns. Answer: rose") == "rose"
    llava = study_prompt("llava-hf/llava-1.5-7b-hf", Q, True)
    assert study_prediction("llava_hf", llava, "It is a rose.") == "Let's think step by step. It is a rose."


def test_instructblip_scoring_prefix_and_formats():
    """inference_analysis/main.py:156-162: `if "blip" in model_id:` ... "Question: ... Answer: A"."""
    for ckpt in ("Salesforce/instructblip-vicuna-7b", "Salesforce/blip2-opt-2.7b"):
        assert prompt_format(ckpt)(OPEN_QUESTION, scoring_prefix(CHECKPOINT_FORMATS[ckpt])) == \
            "Question: What type of object is in this photo? Answer: A"
    assert PROMPT_FORMATS["instructblip_bare"]("q") == "q"                 # the model cards' option


def test_decoding_limits_are_the_studys():
    """main.py:146 `max_new_tokens=64 if not chain_of_thought else 512`; imagewikiqa/main.py:77 and LLaVA's
    model_vqa.py:101 `max_new_tokens=1024`."""
    assert GenerationSettings().max_new_tokens == 64
    assert GenerationSettings(chain_of_thought=True).max_new_tokens == 512
    assert GenerationSettings(max_new_tokens=7).max_new_tokens == 7
    assert ImageWikiQASettings().max_new_tokens == 1024
    assert defaults.eval_config().generation.max_new_tokens == 0            # 0: the study's, as above
    with pytest.raises(ValueError, match="headline"):
        GenerationSettings(headline="nope")


def test_imagenet_evaluates_the_valid_split():
    """main.py:319 `@click.option("--split", default="valid")` (main_imagenet.sh passes no --split); the other
    manifests' evaluation split is "test" (paper_data/*.jsonl)."""
    assert defaults.eval_config("imagenet").data.split == "valid"
    assert defaults.probe_config("imagenet").data.test_split == "valid"
    assert {d: defaults.eval_config(d).data.split for d in ("flowers", "cars", "caltech")} == \
        dict.fromkeys(("flowers", "cars", "caltech"), "test")


def conv_vicuna_v1_prompt(qs, extra=None):
    """training_analysis/llava/model_vqa.py:68-77 on LLaVA's conv_vicuna_v1 (llava/conversation.py:242-252),
    rendered by Conversation.get_prompt's SeparatorStyle.TWO branch (conversation.py:54-63), transcribed."""
    system = ("A chat between a curious user and an artificial intelligence assistant. "
              "The assistant gives helpful, detailed, and polite answers to the user's questions.")
    messages = [["USER", "<image>" + "\n" + qs], ["ASSISTANT", None]]          # model_vqa.py:68-72
    if extra is not None:
        messages.append(["ASSISTANT", extra])                                  # model_vqa.py:76
    seps = [" ", "</s>"]
    ret = system + seps[0]
    for i, (role, message) in enumerate(messages):
        if message:
            ret += role + ": " + message + seps[i % 2]
        else:
            ret += role + ":"
    return ret.replace("</s>", "") if extra is not None else ret              # model_vqa.py:77


def test_llava_v1_format_is_model_vqa_with_vicuna_v1():
    """eval_classification.sh: `--conv-mode vicuna_v1`; the question is prepare_data.ipynb's val `text`
    "What type of object is in the photo?" (wording "finetuned")."""
    assert WORDINGS["finetuned"] == FINETUNE_QUESTION == "What type of object is in the photo?"
    assert PROMPT_FORMATS["llava_v1"](FINETUNE_QUESTION) == conv_vicuna_v1_prompt(FINETUNE_QUESTION) == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. USER: <image>\nWhat type of object is in the "
        "photo? ASSISTANT:")
    assert study_prediction("llava_v1", "ignored", "  tench \n") == "tench"    # model_vqa.py:105-107 .strip()


def test_model_vqa_imagewikiqa_prompt_is_the_studys_literal_string():
    """The fine-tuned ImageWikiQA row: model_vqa.py with lines 76-77 enabled renders two `ASSISTANT:` tags and a
    trailing space."""
    text = "Q?\nA. a\nB. b\nC. c\nD. d\nChoose A, B, C, or D."
    literal = model_vqa_prompt(text, "Let's think step by step.")
    assert literal == conv_vicuna_v1_prompt(text, "Let's think step by step.")
    assert literal.endswith(f"user's questions. USER: <image>\n{text} ASSISTANT:ASSISTANT: Let's think step by step. ")
    assert ImageWikiQASettings(protocol="model_vqa").protocol == "model_vqa"
    with pytest.raises(ValueError, match="protocol"):
        ImageWikiQASettings(protocol="nope")


def test_llava_v1_ids_are_llavas_tokenizer_image_token(llava_tokenizer):
    """LLaVA tokenizes the prompt with tokenizer_image_token (model_vqa.py:80-82; llava/mm_utils.py:185-204):
    chunk by chunk, so a "▁" follows the image that llava-hf's processor does not write.  Real Llama-2 ids."""
    tokenize = llava_reference.sentencepiece_tokenizer(shared_tokenizer_file("llama2.model"))
    prompts = [PROMPT_FORMATS["llava_v1"](FINETUNE_QUESTION), model_vqa_prompt("Q?\nA. a", "Let's think step by step.")]
    ours = tokenize_prompts(llava_tokenizer, prompts, 4, padding_side="right", image_chunks=True)
    for row, mask, prompt in zip(ours["input_ids"], ours["attention_mask"], prompts):
        ids = row[mask == 1].tolist()
        assert ids == llava_reference.expand_image_index(llava_reference.tokenizer_image_token(prompt, tokenize), 4)
        image = ids.index(32000)
        assert llava_tokenizer.convert_ids_to_tokens(ids[image + 4: image + 6]) == ["▁", "<0x0A>"]
    whole = tokenize_prompts(llava_tokenizer, prompts[:1], 4)["input_ids"][0].tolist()
    assert whole != ours["input_ids"][0][ours["attention_mask"][0] == 1].tolist()   # the processor's ids differ


@pytest.mark.parametrize("pred,label,match", [
    ("tench", "tench", True), ("Tench", "tench", True), (" tench\n", "tench", True),
    ("tench.", "tench", False), ("a tench", "tench", False)])
def test_study_exact_match(pred, label, match):
    """eval_classification.ipynb: `label.lower() == pred.lower()` on model_vqa's stripped text."""
    assert study_exact_match(pred, label) is match


def test_fine_tuned_blip2_is_evaluated_as_lavis_and_blip_eval_ipynb():
    """LAVIS generate: prompt `a photo of` (blip2_caption_opt2.7b.yaml `prompt: "a photo of"`), stop at "\\n"
    (`eos_token_id = opt_tokenizer("\\n", add_special_tokens=False).input_ids[0]`), `text.strip()`;
    blip/eval.ipynb: `label = ...["caption"][0].replace("(", "").replace(")", "")` and
    `if label.lower() in pred.lower()`."""
    from configs import finetuned_eval
    from vlmcls_jax.eval.metrics import unparenthesized_substring_match
    assert study_prompt("blip2_lavis_caption", OPEN_QUESTION) == "a photo of"
    assert study_prediction("blip2_lavis_caption", "a photo of", " ground beetle\nanother line") == "ground beetle"
    assert unparenthesized_substring_match("a ground beetle carabidae", "ground beetle (Carabidae)")
    assert not unparenthesized_substring_match("a ground beetle", "ground beetle (Carabidae)")
    c = finetuned_eval.get_config("imagenet,blip2")
    assert (c.model.prompt_format, c.generation.max_new_tokens, c.generation.headline) == \
        ("blip2_lavis_caption", 50, "unparenthesized")
    assert GenerationSettings(headline="unparenthesized").headline == "unparenthesized"
