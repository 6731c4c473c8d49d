"""The study's example order, candidate lists and probabilistic-inference subset (`sampling="study"`,
`scoring.subset="study"`), against the study's own lines run on its own manifest (VLMClassifier d069792),
and CLIP's headline by the study's substring rule."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from vlmcls_jax.data.sources import ClassList, read_manifest
from vlmcls_jax.data.study import STUDY_DATA_DIR
from vlmcls_jax.eval.candidates import names_to_mask, study_order, study_plan
from vlmcls_jax.eval.vlm_generation import GenerationSettings, question_for


def paper_file(name) -> Path:
    """The study's data file as the package ships it (byte for byte the study's: tests/test_study_data.py)."""
    return STUDY_DATA_DIR / name


def study_main_candidates(data_path, class_path, split, seed, n_labels):
    """main_results/main.py, the lines that order the data and draw the choices, run as the study ran them
    (one `random` stream; the model calls between draws consume no Python randomness):

        66  data = [json.loads(line) for line in open(data_path)]
        67  data = [item for item in data if item["split"] == split]
        69  random.seed(seed)
        70  random.shuffle(data)
        71  classes = json.load(open(class_path))
        ...
        95  label = item["label"]
        96  other_choices = random.sample(
        97      sorted(list(set(classes) - set([label]))), n_labels - 1
        98  )
        99  shuffled_choices = [label] + other_choices
       101  random.shuffle(shuffled_choices)
       102  choices.append(shuffled_choices)
    """
    data = [json.loads(line) for line in open(data_path)]
    data = [item for item in data if item["split"] == split]
    random.seed(seed)
    random.shuffle(data)
    classes = json.load(open(class_path))
    out = []
    for item in data:
        label = item["label"]
        other_choices = random.sample(sorted(list(set(classes) - set([label]))), n_labels - 1)
        shuffled_choices = [label] + other_choices
        random.shuffle(shuffled_choices)
        out.append((item["image"], shuffled_choices))
    return out


def flowers(tmp_path):
    classes = json.loads(paper_file("flowers_classes.json").read_text())
    examples = read_manifest(paper_file("flowers.jsonl"), tmp_path, ClassList(tuple(classes)), split="test")
    return classes, examples


@pytest.mark.parametrize("n_labels", [102, 5])
def test_study_plan_equals_the_studys_draws_on_its_flowers_manifest(tmp_path, n_labels):
    classes, examples = flowers(tmp_path)
    study = study_main_candidates(paper_file("flowers.jsonl"), paper_file("flowers_classes.json"), "test",
                                  1234, n_labels)
    ordered, plan = study_plan(examples, classes, n_labels, seed=1234)
    assert len(ordered) == len(study) == 6149
    assert [e.id for e in ordered] == [image.removeprefix("./") for image, _ in study]
    assert [list(plan[e.id]) for e in ordered] == [choices for _, choices in study]
    # The prompt lists them as main.py:104 writes it: f"{init_prompt} Choose one from \"{', '.join(choice)}\"."
    e, choices = ordered[3], study[3][1]
    settings = GenerationSettings(closed_world=True, choices=plan)
    assert question_for(e, classes, settings) == \
        f"What type of object is in this photo? Choose one from \"{', '.join(choices)}\"."
    # A subset (max_examples, a shard) keeps the lists a full run draws.
    assert study_plan(examples, classes, n_labels, 1234)[1][ordered[-1].id] == plan[ordered[-1].id]


def test_study_order_and_the_probabilistic_subset(tmp_path):
    """inference_analysis/main.py:138-144:
        data = [json.loads(line) for line in open(data_path)]
        data = [item for item in data if item["split"] == split]
        random.seed(seed)
        random.shuffle(data)
        classes = json.load(open(class_path))
        data = data[:1000]
    """
    classes, examples = flowers(tmp_path)
    data = [json.loads(line) for line in open(paper_file("flowers.jsonl"))]
    data = [item for item in data if item["split"] == "test"]
    random.seed(1234)
    random.shuffle(data)
    data = data[:1000]
    ours = study_order(examples, 1234)[:1000]
    assert [e.id for e in ours] == [item["image"].removeprefix("./") for item in data]
    # The manifest is class-sorted, so its first 1000 rows (what max_examples took) are 10 classes only.
    assert len({e.label for e in examples[:1000]}) < 15 < len({e.label for e in ours})


def test_study_plan_on_a_repeated_name_list():
    """ImageNet's list repeats "missile": the study samples from set(classes) (998 names; its closed world is
    --n_labels 998, main_imagenet.sh), and `classes.index(choice)` (main.py:217) maps a name to its first
    index; any index of a listed name is allowed here, and predictions of a repeated name count as one."""
    Ex = __import__("collections").namedtuple("Ex", "id label label_name")
    names = ["a", "missile", "b", "missile"]
    examples = [Ex(str(i), i, n) for i, n in enumerate(names)]
    order, plan = study_plan(examples, names, 3, seed=1234)
    assert all(sorted(set(c)) == sorted(c) and len(c) == 3 for c in plan.values())
    with pytest.raises(ValueError, match="distinct names"):
        study_plan(examples, names, 4, seed=1234)
    mask = names_to_mask({"x": ("missile", "a")}, ["x"], names)
    np.testing.assert_array_equal(mask, [[True, True, False, True]])
    with pytest.raises(KeyError, match="no candidate list"):
        names_to_mask(plan, ["nope"], names)
