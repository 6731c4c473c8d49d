"""Probabilistic inference: scores equal naive scoring (one full forward per image and class); the sum,
avg and cfg rules on hand-made records; repeated class names; resume."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

import train_fixtures
from vlmcls_jax.data.preprocess import ClipPreprocessConfig, preprocess_batch
from vlmcls_jax.data.prompts import tokenize_prompts
from vlmcls_jax.eval.vlm_scoring import ScoringSettings, class_name_tokens, evaluate_scoring, summarize

PRE = ClipPreprocessConfig(size=28, crop_size=(28, 28))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return train_fixtures.eval_world(tmp_path_factory.mktemp("score"), 3)


def test_scores_equal_naive_full_forwards(setup, tmp_path):
    model, tok, examples, names = setup
    s = ScoringSettings(chunk_size=5, store_token_logprobs=True)
    evaluate_scoring(model, tok, examples, names, str(tmp_path / "s.jsonl"), s, PRE)
    records = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    prompt = "USER: <image>\nWhat type of object is in this photo?\nASSISTANT: The photo features a"
    cands = class_name_tokens(tok, prompt, names)
    for e, r in zip(examples, records):
        px = preprocess_batch([e.image], PRE, pad_to_square=True)
        for c, (name, cand) in enumerate(zip(names, cands)):
            batch = tokenize_prompts(tok, [f"{prompt} {name}"], model.config.num_image_tokens)
            logits, _ = model(jnp.asarray(batch["input_ids"]), pixel_values=jnp.asarray(px))
            logp = np.asarray(logits[0].astype(jnp.float32))
            logp = logp - np.log(np.exp(logp - logp.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logp.max(-1, keepdims=True)
            T = batch["input_ids"].shape[1]
            naive = [logp[T - len(cand) - 1 + j, t] for j, t in enumerate(cand)]
            np.testing.assert_allclose(r["token_logprobs"][c], naive, atol=1e-4)
            assert abs(r["sum"][c] - sum(naive)) < 1e-4


def test_rules_by_hand():
    names = ["cat", "dog", "missile", "missile"]
    lengths = np.array([1, 2, 1, 1])
    records = [{"id": "a", "label": 0, "label_name": "cat", "sum": [-1.0, -1.5, -3.0, -3.0]},
               {"id": "b", "label": 3, "label_name": "missile", "sum": [-2.0, -3.0, -1.0, -1.0]},
               {"id": "c", "label": 1, "label_name": "dog", "sum": [-1.2, -2.0, -4.0, -4.0]}]
    out = summarize(records, names, lengths, cfg_alpha=3.0, cfg_sweep_alphas=(0, 1, 3))
    # sum: cat, missile (index 2 == right for label 3), cat -> 2/3
    assert out["sum_accuracy"] == pytest.approx(2 / 3)
    # avg: row 0 dog (-0.75 > -1.0, wrong); row 1 missile (right); row 2 dog (-1.0 > -1.2, right) -> 2/3
    assert out["avg_accuracy"] == pytest.approx(2 / 3)
    # cfg, the study's alpha * sum + (1 - alpha) * column mean, column means (-1.4, -2.1667, -2.6667, -2.6667),
    # alpha 3: row a: cat -0.2, dog -0.1667 -> dog (wrong); row b: missile 2.333 -> right; row c: cat -0.8,
    # dog -1.667 -> cat (wrong).  1/3
    assert out["cfg_accuracy"] == pytest.approx(1 / 3)
    # alpha 0: the image is ignored, every row picks the highest mean (cat): 1/3; alpha 1 is the sum rule.
    assert out["cfg_sweep"] == {"0.0": pytest.approx(1 / 3), "1.0": out["sum_accuracy"], "3.0": out["cfg_accuracy"]}
    # top-5 over 4 classes (3 distinct names): always right.
    assert out["sum_top5_accuracy"] == out["avg_top5_accuracy"] == 1.0
    assert out["examples"] == 3
    only_true = summarize(records, names, lengths, 1.0, label_set_size=1)      # one candidate: always right
    assert only_true["sum_accuracy"] == only_true["avg_accuracy"] == only_true["cfg_accuracy"] == 1.0


def test_resume_scores_each_image_once(setup, tmp_path):
    model, tok, examples, names = setup
    path = str(tmp_path / "r.jsonl")
    evaluate_scoring(model, tok, examples[:1], names, path, ScoringSettings(), PRE)
    full = evaluate_scoring(model, tok, examples, names, path, ScoringSettings(), PRE)
    ids = [json.loads(x)["id"] for x in open(path).read().splitlines()]
    assert sorted(ids) == sorted(e.id for e in examples) and full["examples"] == 3


def test_sharded_scoring_equals_whole(setup, tmp_path):
    model, tok, examples, names = setup
    whole = evaluate_scoring(model, tok, examples, names, str(tmp_path / "w.jsonl"), ScoringSettings(), PRE)
    assert evaluate_scoring(model, tok, examples, names, str(tmp_path / "s.jsonl"), ScoringSettings(), PRE,
                            shard=(1, 2))["missing"] == 2
    assert evaluate_scoring(model, tok, examples, names, str(tmp_path / "s.jsonl"), ScoringSettings(), PRE,
                            shard=(0, 2)) == whole
