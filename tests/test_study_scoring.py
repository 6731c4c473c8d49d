"""Probabilistic inference with the study's class-name ids (`ScoringSettings(name_tokens="study")`): BLIP-2's
read-out equals the study's `process_image_raw` lines run on the same model; names are tokenised alone
under a GPT-2-style byte-level BPE (BLIP-2's OPT), which is why ids and positions disagree there."""

import json
import os
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from vlmcls_jax import demo
from vlmcls_jax.data.preprocess import ClipPreprocessConfig
from vlmcls_jax.data.sources import Example
from vlmcls_jax.eval.vlm_inputs import VLMInputs
from vlmcls_jax.eval.vlm_scoring import (
    ScoringSettings,
    StudyReadout,
    class_name_tokens,
    evaluate_scoring,
    study_name_tokens,
)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import study_readout  # noqa: E402  (benchmarks/study_readout.py: the tokenizer and model it measures with)

PRE = ClipPreprocessConfig(size=28, crop_size=(28, 28))
PROMPT = study_readout.PROMPT        # inference_analysis/main.py:162
NAMES = ["daisy", "sunflower", "globe thistle", "rose"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("blip")
    tok = study_readout.gpt2_like_tokenizer(NAMES, train_names=NAMES[:3])
    model = study_readout.tiny_blip2(tok)
    rng = np.random.default_rng(0)
    examples = []
    for i in range(1):
        demo.render(demo.class_names()[i], 28, rng).save(root / f"{i}.png")
        examples.append(Example(f"{i}.png", str(root / f"{i}.png"), i, NAMES[i]))
    return model, tok, examples


def study_process_image_raw(model, inputs, tok, image, classes, prompt):
    """inference_analysis/main.py:79-106, on our model (one full forward per class, no cache):

        inputs = processor(text=f"{prompt} {classname}", images=image, return_tensors="pt")
        outputs = model(**inputs)
        logits = outputs.logits
        class_ids = torch.tensor(processor(text=classname)["input_ids"][1:]).to(device)
        selected_logits = logits[0, -len(class_ids) - 1 : -1, :]
        log_probs = torch.nn.functional.log_softmax(selected_logits, dim=-1)
        log_prob = (torch.gather(log_probs, 1, class_ids.unsqueeze(1)).squeeze(1) ...tolist())
    """
    probs = []
    for classname in classes:
        batch = inputs.encode(tok, [f"{prompt} {classname}"], [image])
        logits, _ = model(jnp.asarray(batch["input_ids"]), attention_mask=jnp.asarray(batch["attention_mask"]),
                          **{k: jnp.asarray(v) for k, v in batch["images"].items()})
        class_ids = tok(classname)["input_ids"][1:]
        selected = np.asarray(logits[0, -len(class_ids) - 1:-1, :], np.float64)
        log_probs = selected - np.log(np.exp(selected - selected.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
            - selected.max(-1, keepdims=True)
        probs.append([log_probs[j, t] for j, t in enumerate(class_ids)])
    return probs


def test_study_readout_equals_the_studys_lines(world, tmp_path):
    model, tok, examples = world
    alone, context = study_name_tokens(tok, NAMES), class_name_tokens(tok, PROMPT, NAMES)
    # The bug's premise: alone, a name has no leading space, so its ids (and often their count) differ.
    assert tok.convert_ids_to_tokens(context[0])[0].startswith("Ġ") and alone[0] != context[0]
    assert any(len(a) != len(c) for a, c in zip(alone, context))
    readout = StudyReadout(context, alone)
    assert readout.depth >= 1             # some name alone is longer: the read reaches into the prompt
    inputs = VLMInputs(model, PRE, "blip2")
    assert inputs.prompt("What type of object is in this photo?", inputs.scoring_prefix) == PROMPT
    settings = ScoringSettings(prefix=inputs.scoring_prefix, name_tokens="study", store_token_logprobs=True,
                               chunk_size=16)
    out = evaluate_scoring(model, tok, examples, NAMES, str(tmp_path / "study.jsonl"), settings, inputs)
    records = [json.loads(line) for line in (tmp_path / "study.jsonl").read_text().splitlines()]
    for e, r in zip(examples, records):
        want = study_process_image_raw(model, inputs.with_length_multiple(1), tok, e.image, NAMES, PROMPT)
        for c in range(len(NAMES)):
            np.testing.assert_allclose(r["token_logprobs"][c], want[c], atol=2e-4)
    assert out["examples"] == 1
    # The corrected default scores other numbers on the same model.
    corrected = evaluate_scoring(model, tok, examples, NAMES, str(tmp_path / "context.jsonl"),
                                 ScoringSettings(prefix="A", chunk_size=16), inputs)
    ctx = [json.loads(line)["sum"] for line in (tmp_path / "context.jsonl").read_text().splitlines()]
    assert not np.allclose(ctx, [r["sum"] for r in records], atol=1e-3)
    assert set(corrected) == set(out)
    with pytest.raises(ValueError, match="name_tokens"):
        evaluate_scoring(model, tok, examples, NAMES, str(tmp_path / "x.jsonl"),
                         ScoringSettings(name_tokens="alone"), inputs)
