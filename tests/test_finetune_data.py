"""Fine-tuning records (the study's prepare_data.ipynb): classification and caption templates byte for byte,
the seed-1234 mixture, unique ids, file:line errors, the CLI, and the trainer's data sources."""

import json
import os
import random

import pytest

from configs import common
from vlmcls_jax.data import finetune_data as fd
from vlmcls_jax.data.conversation import TEMPLATES, render
from vlmcls_jax.data.pipeline import read_records
from vlmcls_jax.train.trainer import training_records

# LLaVA's conv_vicuna_v1 (haotian-liu/LLaVA llava/conversation.py:243-244), the study's `--version v1`
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def manifest(tmp_path):
    return write_jsonl(tmp_path / "m.jsonl", [
        {"image": "a/1.jpg", "label": "tabby cat", "split": "train"},
        {"image": "a/2.jpg", "label": "golden retriever", "split": "valid"},
        "",
        {"image": "a/3.jpg", "label": "missile", "split": "train", "label_idx": 657}])


def llava_json(path, ids):
    records = [{"id": i, "image": f"coco/{i}.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": f"Thing {i}."}]} for i in ids]
    path.write_text(json.dumps(records))
    return str(path)


def test_classification_records_render_the_study_template(manifest):
    records = fd.classification_records(manifest, "train")
    assert records[0] == {"id": "m.jsonl:1", "image": "a/1.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat type of object is in the photo?"},
        {"from": "gpt", "value": "tabby cat"}]}
    assert [r["id"] for r in records] == ["m.jsonl:1", "m.jsonl:4"]        # file order, line numbers
    text, spans = render(records[0]["conversations"], TEMPLATES["llava_v1"])
    assert text == SYSTEM + " USER: <image>\nWhat type of object is in the photo? ASSISTANT: tabby cat</s>"
    assert [text[s:e] for s, e in spans] == [" tabby cat</s>"]
    text, _ = render(records[1]["conversations"], TEMPLATES["llava_hf"])
    assert text == "USER: <image>\nWhat type of object is in the photo?\nASSISTANT: missile</s>"


def test_classification_split_question_and_answer_template(manifest, tmp_path):
    assert [r["image"] for r in fd.classification_records(manifest, "valid")] == ["a/2.jpg"]
    assert len(fd.classification_records(manifest, None)) == 3
    custom = fd.classification_records(manifest, "valid", question="Name it.", answer_template="A photo of a {}.")
    assert custom[0]["conversations"] == [{"from": "human", "value": "<image>\nName it."},
                                          {"from": "gpt", "value": "A photo of a golden retriever."}]
    no_split = write_jsonl(tmp_path / "n.jsonl", [{"image": "x.jpg", "label": "cat"}])
    assert len(fd.classification_records(no_split, "train")) == 1                # a row without split: every split


@pytest.mark.parametrize("row,match", [
    ('{"image": "x.jpg", "label": ', r"bad\.jsonl:2: not valid JSON"),
    ({"label": "cat", "split": "train"}, r"bad\.jsonl:2: missing field 'image'"),
    ({"image": "x.jpg", "split": "train"}, r"bad\.jsonl:2: missing field 'label'"),
    ({"image": "x.jpg", "label": "", "split": "train"}, r"bad\.jsonl:2: field 'label' is ''"),
    ({"image": 3, "label": "cat", "split": "train"}, r"bad\.jsonl:2: field 'image' is 3"),
    ('["x.jpg", "cat"]', r"bad\.jsonl:2: expected a JSON object, got a list"),
])
def test_classification_errors_name_file_line_and_field(tmp_path, row, match):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"image": "ok.jpg", "label": "dog", "split": "train"}, row])
    with pytest.raises(ValueError, match=match):
        fd.classification_records(path, "train")


def test_no_rows_of_the_split_names_it(manifest):
    with pytest.raises(ValueError, match=r"m\.jsonl: no rows with split='test'"):
        fd.classification_records(manifest, "test")


def test_caption_records(tmp_path):
    path = write_jsonl(tmp_path / "caps.jsonl", [{"image": "f/1.jpg", "caption": "A pink flower with five petals."},
                                                 {"image": "f/2.jpg", "caption": "A yellow sunflower."}])
    records = fd.caption_records(path)
    assert records[1] == {"id": "caps.jsonl:2", "image": "f/2.jpg", "conversations": [
        {"from": "human", "value": "<image>\nGenerate a caption for the image."},   # the paper's caption template
        {"from": "gpt", "value": "A yellow sunflower."}]}
    text, _ = render(records[0]["conversations"], TEMPLATES["llava_v1"])
    assert text == SYSTEM + (" USER: <image>\nGenerate a caption for the image. "
                             "ASSISTANT: A pink flower with five petals.</s>")
    llava_style = fd.caption_records(path, question=fd.LLAVA_CAPTION_QUESTION)     # the option
    assert llava_style[0]["conversations"][0]["value"] == "<image>\nDescribe the image concisely."
    assert fd.caption_records(path, question="Caption it.")[0]["conversations"][0]["value"] == "<image>\nCaption it."
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"image": "f/1.jpg", "caption": "ok"}, {"image": "f/2.jpg"}])
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: missing field 'caption'"):
        fd.caption_records(bad)
    with pytest.raises(ValueError, match="no caption rows"):
        fd.caption_records(write_jsonl(tmp_path / "empty.jsonl", []))


def recs(prefix, n):
    return [{"id": f"{prefix}{i}", "conversations": []} for i in range(n)]


def test_mixture_is_the_studys_seeded_shuffle():
    a, b = recs("a", 30), recs("b", 20)
    mixed = fd.mix_records(a, b, seed=1234)
    expected = a + b
    random.seed(1234)                                    # prepare_data.ipynb cell 3, verbatim
    random.shuffle(expected)
    assert mixed.records == expected and mixed.counts == (30, 20) and mixed.renamed == 0
    assert fd.mix_records(a, b, seed=1234).records == mixed.records           # same seed, same order
    assert fd.mix_records(a, b, seed=1).records != mixed.records              # another seed, another order
    assert sorted(r["id"] for r in mixed.records) == sorted(r["id"] for r in a + b)
    assert mixed.summary(["imagenet", "llava"]) == "50 records (imagenet 30, llava 20; 0 ids prefixed to stay unique)"


def test_ids_repeated_across_lists_are_prefixed():
    a = [{"id": "1"}, {"id": "2"}, {"conversations": []}]
    b = [{"id": "2"}, {"id": "3"}, {"id": "3"}, {"id": "1"}]          # "3" twice inside b: left as it is
    mixed = fd.concat_records(a, b)
    assert [r.get("id") for r in mixed.records] == ["1", "2", None, "1:2", "3", "3", "1:1"]
    assert mixed.renamed == 2 and mixed.counts == (3, 4)
    assert b[0] == {"id": "2"}                                         # inputs are not modified
    with pytest.raises(ValueError, match=r"record id '2' of list 2 .* '2:2' is taken"):
        fd.concat_records([{"id": "2"}, {"id": "2:2"}], [], [{"id": "2"}])


def test_write_records_round_trips_atomically(tmp_path):
    path = tmp_path / "out" / "train.json"
    records = fd.classification_records(write_jsonl(tmp_path / "m.jsonl", [{"image": "é.jpg", "label": "café"}]),
                                        None)
    fd.write_records(records, str(path))
    assert read_records(str(path)) == records
    with pytest.raises(TypeError):
        fd.write_records([{"conversations": [], "bad": object()}], str(path))
    assert read_records(str(path)) == records                          # the failed write left the file alone
    assert os.listdir(path.parent) == ["train.json"]                   # and no temporary file


def test_cli_builds_the_files(manifest, tmp_path, capsys):
    cls, mix = tmp_path / "cls.json", tmp_path / "mix.json"
    assert fd.main(["classification", manifest, "--split", "train", "--out", str(cls)]) == 0
    assert read_records(str(cls)) == fd.classification_records(manifest, "train")
    llava = llava_json(tmp_path / "llava.json", ["m.jsonl:1", "x"])
    assert fd.main(["mix", str(cls), llava, "--out", str(mix)]) == 0
    out = capsys.readouterr().out
    assert "4 records" in out and "llava.json 2" in out and "1 ids prefixed" in out
    mixed = read_records(str(mix))
    assert len({r["id"] for r in mixed}) == 4 and mixed == fd.mix_records(
        read_records(str(cls)), read_records(llava)).records
    caps = write_jsonl(tmp_path / "c.jsonl", [{"image": "1.jpg", "caption": "Red."}])
    assert fd.main(["caption", caps, "--question", "Caption?", "--out", str(tmp_path / "c.json")]) == 0
    assert read_records(str(tmp_path / "c.json"))[0]["conversations"][0]["value"] == "<image>\nCaption?"


def data_config(**fields):
    config = common.train_config()
    for key, value in fields.items():
        config.data[key] = value
    return config


def test_trainer_builds_the_mixture_from_the_config(manifest, tmp_path):
    llava = llava_json(tmp_path / "llava.json", [f"{i:012d}" for i in range(5)])
    records = training_records(data_config(classification_manifest=manifest, mix_with=llava))
    assert records == fd.mix_records(fd.classification_records(manifest, "train"), read_records(llava),
                                     seed=1234).records
    assert len(records) == 7 and len({r["id"] for r in records}) == 7
    assert training_records(data_config(classification_manifest=manifest, mix_with=llava)) == records
    other = training_records(data_config(classification_manifest=manifest, mix_with=llava, mix_seed=7))
    assert other != records and sorted(map(str, other)) == sorted(map(str, records))


def test_trainer_sources_concatenate(manifest, tmp_path):
    llava = llava_json(tmp_path / "llava.json", ["x"])
    caps = write_jsonl(tmp_path / "caps.jsonl", [{"image": "1.jpg", "caption": "Red."}])
    records = training_records(data_config(train_json=llava, classification_manifest=manifest, caption_json=caps,
                                           question="Which?", caption_question="Caption?"))
    assert [r["id"] for r in records] == ["x", "m.jsonl:1", "m.jsonl:4", "caps.jsonl:1"]
    assert records[1]["conversations"][0]["value"] == "<image>\nWhich?"
    assert records[3]["conversations"][0]["value"] == "<image>\nCaption?"
    single = training_records(data_config(classification_manifest=manifest))       # the existing configs' path
    assert single == fd.classification_records(manifest, "train")
    assert single[0]["conversations"][0]["value"] == "<image>\nWhat type of object is in the photo?"
    with pytest.raises(ValueError, match="needs train_json, classification_manifest or caption_json"):
        training_records(data_config(mix_with=llava))
