"""The study's prompt strings, metrics on fixed strings and arrays, reproducible candidate sets."""

import numpy as np
import pytest

from vlmcls_jax.data.prompts import (
    CHAIN_OF_THOUGHT,
    QUESTION_WORDINGS,
    SCORING_PREFIX,
    closed_world_question,
    llava_prompt,
)
from vlmcls_jax.eval.candidates import candidate_set, choice_order
from vlmcls_jax.eval.metrics import exact_match, mean_per_class_recall, substring_match, topk_accuracy


def test_study_prompts_byte_equal():
    assert QUESTION_WORDINGS == {"default": "What type of object is in this photo?",
                                 "name_item": "Can you name the specific item pictured here?",
                                 "identify": "Identify the object in this image.",
                                 "main_object": "What is the main object depicted in this photograph?"}
    assert closed_world_question("What type of object is in this photo?", ["cat", "dog", "golden retriever"]) == \
        'What type of object is in this photo? Choose one from "cat, dog, golden retriever".'
    assert llava_prompt("What type of object is in this photo?", SCORING_PREFIX) == \
        "USER: <image>\nWhat type of object is in this photo?\nASSISTANT: The photo features a"
    assert CHAIN_OF_THOUGHT == "Let's think step by step."


@pytest.mark.parametrize("output,name,sub,exact", [
    ("The photo features a Golden Retriever.", "golden retriever", True, False),
    ("golden retriever", "golden retriever", True, True),
    ("  Golden retriever. ", "golden retriever", True, True),
    ('"tabby cat"', "tabby cat", True, True),
    ("a retriever", "golden retriever", False, False),
    ("catfish", "cat", True, False),          # the study's substring metric counts this
])
def test_generation_metrics(output, name, sub, exact):
    assert substring_match(output, name) is sub
    assert exact_match(output, name) is exact


def test_score_metrics():
    scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]])
    labels = [1, 1, 2, 1]
    assert topk_accuracy(scores, labels, 1) == 0.5
    assert topk_accuracy(scores, labels, 2) == 1.0
    # class 1: 1 of 3 right; class 2: 1 of 1 -> (1/3 + 1) / 2
    assert mean_per_class_recall(scores.argmax(1), labels, 3) == pytest.approx((1 / 3 + 1) / 2)
    with pytest.raises(ValueError):
        topk_accuracy(np.zeros((0, 3)), [], 1)


def test_candidate_sets_are_reproducible_and_uniform():
    a = candidate_set(7, 100, 5, seed=0, example_id="img1.jpg")
    assert a == candidate_set(7, 100, 5, seed=0, example_id="img1.jpg")       # same for CLIP and the VLM
    assert 7 in a and len(set(a)) == 5
    assert a != candidate_set(7, 100, 5, seed=1, example_id="img1.jpg")
    position = [candidate_set(0, 10, 2, seed=0, example_id=str(i)).index(0) for i in range(2000)]
    assert 0.45 < np.mean(position) < 0.55                                    # the true class is not always first
    drawn = np.bincount([c for i in range(3000) for c in candidate_set(0, 10, 2, 0, str(i)) if c], minlength=10)[1:]
    assert drawn.min() > 250                                                  # distractors ~ uniform (333 each)
    assert sorted(candidate_set(3, 4, 4, 0, "x")) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="label-set size"):
        candidate_set(0, 4, 5, 0, "x")


def test_choice_order():
    assert choice_order(4, None, "a") == [0, 1, 2, 3]
    assert sorted(choice_order(10, 0, "a")) == list(range(10))
    assert choice_order(10, 0, "a") == choice_order(10, 0, "a") != choice_order(10, 0, "b")
