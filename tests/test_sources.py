"""Evaluation sources: class lists, the study's manifests (its released files), class folders, TFDS errors.

The study's files are the copies shipped in the package (vlmcls_jax/data/study_data; tests/test_study_data.py
checks them against the study's repository).
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import re
import time
from pathlib import Path

import grain
import numpy as np
import pytest
from PIL import Image

from vlmcls_jax.data.sources import (
    ClassList,
    Example,
    TfdsSource,
    load_class_names,
    read_folder,
    read_manifest,
    read_tfds,
    study_class_list,
)
from vlmcls_jax.data.study import STUDY_DATA_DIR


@pytest.fixture(scope="module")
def paper_data() -> Path:
    return STUDY_DATA_DIR


def plain_rows(path: Path) -> list[dict]:
    """The manifest read independently of the code under test."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_lines(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# --- the study's class lists ------------------------------------------------------------------------


def test_imagenet_class_list(paper_data):
    classes = study_class_list("imagenet", paper_data)
    assert len(classes) == 1000 and len(classes.distinct()) == 998
    assert classes.repeated() == {"missile": (657, 744), "sunglasses": (836, 837)}
    assert classes.names[0] == "tench" and classes.distinct()[:2] == ("tench", "goldfish")
    # first-occurrence order: the second "missile" (744) is dropped, not moved
    distinct = classes.distinct()
    assert distinct.index("missile") == 657 and distinct[744] == classes.names[745]
    assert distinct.index("sunglasses") == 835 and distinct[-1] == classes.names[-1]


def test_other_study_class_lists(paper_data):
    flowers, cars, caltech = (study_class_list(n, paper_data) for n in ("flowers", "cars", "caltech"))
    assert (len(flowers), len(cars), len(caltech)) == (102, 196, 100)
    for classes in (flowers, cars, caltech):
        assert len(classes.distinct()) == len(classes) and not classes.repeated()
    # Stanford Cars: year first ("2012 Tesla Model S Sedan"), years 1991..2012
    assert cars.names[0] == "2000 AM General Hummer SUV"
    assert all(re.fullmatch(r"(19|20)\d\d \S.*", name) for name in cars.names)
    assert {int(n[:4]) for n in cars.names} <= set(range(1991, 2013))
    # Caltech101 as the study uses it: lower case, underscores as spaces, plural folders made singular
    assert caltech.names[:3] == ("face", "leopard", "motorbike") and "car side" in caltech
    assert flowers.names[0] == "pink primrose"


def test_study_class_list_errors(tmp_path, paper_data):
    with pytest.raises(ValueError, match="valid names: imagenet, flowers, cars, caltech"):
        study_class_list("cifar10", paper_data)
    with pytest.raises(FileNotFoundError, match="flowers_classes.json"):
        study_class_list("flowers", tmp_path)


def test_load_class_names_errors(tmp_path):
    cases = {"dict.json": ('{"a": 1}', "expected a JSON list"), "empty.json": ("[]", "empty"),
             "mixed.json": ('["a", 3]', "entry 1 is 3"), "blank.json": ('["a", ""]', "entry 1"),
             "bad.json": ('["a",', "not valid JSON")}
    for file, (text, message) in cases.items():
        (tmp_path / file).write_text(text)
        with pytest.raises(ValueError, match=message) as e:
            load_class_names(tmp_path / file)
        assert file in str(e.value)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_class_names(tmp_path / "missing.json")
    (tmp_path / "ok.json").write_text('["a", "b"]')
    assert load_class_names(tmp_path / "ok.json") == ["a", "b"]


# --- the repeated-name rule -------------------------------------------------------------------------


def test_repeated_name_rule():
    classes = ClassList(("cat", "missile", "dog", "missile"))
    assert classes.correct_indices("missile") == (1, 3)
    assert classes.is_correct("missile", 1) and classes.is_correct("missile", 3)
    assert not classes.is_correct("missile", 0) and not classes.is_correct("cat", 1)
    assert classes.correct_indices("cat") == (0,) and classes.is_correct("cat", 0)
    assert classes.correct_indices("horse") == () and not classes.is_correct("horse", 0)  # wrong, not an error
    assert not classes.is_correct("Missile", 1)  # exact names; normalising text is the metric's job
    assert classes.distinct() == ("cat", "missile", "dog")
    assert classes.index_of("dog") == 2
    with pytest.raises(ValueError, match=r"ambiguous: it names classes \[1, 3\]"):
        classes.index_of("missile")
    with pytest.raises(ValueError, match="unknown class name 'horse'"):
        classes.index_of("horse")
    for bad in (4, -1, True):
        with pytest.raises(ValueError, match="not a class index"):
            classes.is_correct("cat", bad)
    assert ClassList(["a", "b"]).names == ("a", "b")  # lists become tuples; still hashable
    assert hash(ClassList(("a", "b"))) == hash(ClassList(["a", "b"]))
    with pytest.raises(ValueError):
        ClassList(())
    with pytest.raises(ValueError, match="class name 1"):
        ClassList(("a", None))


def test_repeated_name_rule_on_imagenet(paper_data):
    classes = study_class_list("imagenet", paper_data)
    for name, (i, j) in (("missile", (657, 744)), ("sunglasses", (836, 837))):
        assert classes.is_correct(name, i) and classes.is_correct(name, j)
        assert not classes.is_correct(name, 0)


# --- the study's manifests --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["flowers", "cars", "caltech"])
def test_study_manifests(name, paper_data, tmp_path):
    classes = study_class_list(name, paper_data)
    rows = plain_rows(paper_data / f"{name}.jsonl")
    assert {r["label"] for r in rows} <= set(classes.names)
    expected = collections.Counter(r["split"] for r in rows)
    assert set(expected) == {"train", "test"}
    for split in ("train", "test"):
        examples = read_manifest(paper_data / f"{name}.jsonl", tmp_path, classes, split)
        assert len(examples) == expected[split]
        want = [r for r in rows if r["split"] == split]
        assert [e.label_name for e in examples] == [r["label"] for r in want]
        assert all(classes.names[e.label] == e.label_name for e in examples)
    first = examples[0]  # first test row; the images are not here, only paths are built
    assert first.id == want[0]["image"].removeprefix("./") and first.id.startswith("data/")
    assert first.image == os.path.join(str(tmp_path), *first.id.split("/")) and os.path.isabs(first.image)
    assert len(read_manifest(paper_data / f"{name}.jsonl", tmp_path, classes)) == len(rows)


def test_study_split_sizes(paper_data, tmp_path):
    """The counts the study's files hold (read with plain json in test_study_manifests)."""
    sizes = {n: collections.Counter(r["split"] for r in plain_rows(paper_data / f"{n}.jsonl"))
             for n in ("flowers", "cars", "caltech")}
    assert sizes == {"flowers": {"train": 2040, "test": 6149}, "cars": {"train": 8144, "test": 8041},
                     "caltech": {"train": 4346, "test": 4331}}


def test_imagenet_manifest_label_idx(paper_data, tmp_path):
    classes = study_class_list("imagenet", paper_data)
    rows = plain_rows(paper_data / "imagenet_small.jsonl")
    examples = read_manifest(paper_data / "imagenet_small.jsonl", tmp_path, classes, "train")
    assert len(examples) == len(rows) == 10
    assert [e.label for e in examples] == [r["label_idx"] for r in rows]
    assert examples[0].label_name == "tench" and examples[0].id.startswith("data/ImageNet/imagenet/train/n01440764/")
    with pytest.raises(ValueError, match="no rows of split 'valid'; splits present: \\['train'\\]"):
        read_manifest(paper_data / "imagenet_small.jsonl", tmp_path, classes, "valid")


def test_manifest_repeated_names_need_label_idx(tmp_path):
    classes = ClassList(("cat", "missile", "dog", "missile"))
    manifest = write_lines(tmp_path / "m.jsonl", [
        {"image": "a.jpg", "label": "missile", "label_idx": 3, "split": "val"},
        {"image": "b.jpg", "label": "missile", "label_idx": 1, "split": "val"},
        {"image": "c.jpg", "label": "cat", "split": "val"}])
    assert [e.label for e in read_manifest(manifest, tmp_path, classes, "val")] == [3, 1, 0]
    cases = [({"image": "d.jpg", "label": "missile"}, r"m.jsonl:1: class name 'missile' is ambiguous.*label_idx"),
             ({"image": "d.jpg", "label": "missile", "label_idx": 2}, "m.jsonl:1: label_idx 2 is 'dog'"),
             ({"image": "d.jpg", "label": "cat", "label_idx": 4}, r"m.jsonl:1: label_idx 4 is not a class index"),
             ({"image": "d.jpg", "label": "cat", "label_idx": "0"}, "m.jsonl:1: label_idx '0'")]
    for row, message in cases:
        with pytest.raises(ValueError, match=message):
            read_manifest(write_lines(tmp_path / "m.jsonl", [row]), tmp_path, classes)


def test_manifest_errors(tmp_path):
    classes = ClassList(("cat", "dog"))
    good = {"image": "./x/a.jpg", "label": "cat", "split": "test"}
    cases = [
        ([good, "{not json"], "bad.jsonl:2: not valid JSON"),
        ([good, {"label": "cat", "split": "test"}], "bad.jsonl:2: missing field 'image'"),
        ([{"image": "b.jpg", "split": "test"}], "bad.jsonl:1: missing field 'label'"),
        ([{"image": "b.jpg", "label": "cat"}], "bad.jsonl:1: missing field 'split'"),
        ([good, {"image": "b.jpg", "label": 1, "split": "test"}], "bad.jsonl:2: field 'label' is 1"),
        ([good, "", {"image": "b.jpg", "label": "horse", "split": "test"}], "bad.jsonl:3: unknown label 'horse'"),
        ([good, {"image": "x/a.jpg", "label": "dog", "split": "train"}],
         "bad.jsonl:2: image 'x/a.jpg' is already listed on line 1"),
        ([{"image": "/etc/passwd", "label": "cat", "split": "test"}],
         "bad.jsonl:1: image path '/etc/passwd' is absolute"),
        ([good, {"image": "x/../../b.jpg", "label": "cat", "split": "test"}], r"bad.jsonl:2: .*contains '\.\.'"),
        ([{"image": "", "label": "cat", "split": "test"}], "bad.jsonl:1: empty image path"),
        (["[1, 2]"], "bad.jsonl:1: expected a JSON object"),
        ([], "bad.jsonl: the manifest has no rows"),
    ]
    for rows, message in cases:
        with pytest.raises(ValueError, match=message):
            read_manifest(write_lines(tmp_path / "bad.jsonl", rows), tmp_path, classes, "test")
    # 'split' is only needed to filter by it; duplicates across splits are errors (a leak), checked above
    rows = [{"image": "a.jpg", "label": "cat"}, {"image": "b.jpg", "label": "dog"}]
    assert [e.label for e in read_manifest(write_lines(tmp_path / "ok.jsonl", rows), tmp_path, classes)] == [0, 1]
    with pytest.raises(FileNotFoundError, match="image_root"):
        read_manifest(tmp_path / "ok.jsonl", tmp_path / "nowhere", classes)


def test_manifest_rows_of_other_splits_are_still_checked(tmp_path):
    classes = ClassList(("cat", "dog"))
    rows = [{"image": "a.jpg", "label": "cat", "split": "test"}, {"image": "b.jpg", "label": "emu", "split": "train"}]
    with pytest.raises(ValueError, match="m.jsonl:2: unknown label 'emu'"):
        read_manifest(write_lines(tmp_path / "m.jsonl", rows), tmp_path, classes, "test")


# --- class folders ----------------------------------------------------------------------------------


def make_tree(root: Path, layout: dict[str, list[str]]) -> Path:
    root.mkdir(parents=True)
    for folder, files in layout.items():
        (root / folder).mkdir()
        for i, file in enumerate(files):
            if file.lower().endswith((".png", ".jpg")):
                Image.new("RGB", (3, 2), (10 * i, 20, 30)).save(root / folder / file)
            else:
                (root / folder / file).write_text("not an image")
    return root


def test_read_folder(tmp_path):
    root = make_tree(tmp_path / "imgs", {"tabby cat": ["b.png", "a.PNG", "notes.txt"], "dog": ["x.jpg"],
                                         ".cache": ["z.png"]})
    (root / "README").write_text("top-level files are ignored")
    examples, classes = read_folder(root)
    assert classes.names == ("dog", "tabby cat")
    assert [(e.id, e.label, e.label_name) for e in examples] == [
        ("dog/x.jpg", 0, "dog"), ("tabby cat/a.PNG", 1, "tabby cat"), ("tabby cat/b.png", 1, "tabby cat")]
    assert examples[1].image == str(root / "tabby cat" / "a.PNG") and os.path.isfile(examples[1].image)
    assert isinstance(examples[0], Example)

    given = ClassList(("horse", "tabby cat", "dog"))
    examples, classes = read_folder(root, given)
    assert classes is given and [e.label for e in examples] == [2, 1, 1]

    with pytest.raises(ValueError, match=r"class folder .*dog.*unknown class name 'dog'"):
        read_folder(root, ClassList(("tabby cat", "horse")))
    (root / "emu").mkdir()
    with pytest.raises(ValueError, match="emu.* has no image files"):
        read_folder(root)
    with pytest.raises(ValueError, match="no class folders"):
        read_folder(make_tree(tmp_path / "flat", {}))
    with pytest.raises(FileNotFoundError):
        read_folder(tmp_path / "missing")


# --- TFDS -------------------------------------------------------------------------------------------


def test_read_tfds_unprepared_fails_fast_offline(tmp_path):
    """Nothing prepared in data_dir: a FileNotFoundError naming both, without touching the network."""
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as e:
        read_tfds("oxford_flowers102", "test", tmp_path)
    assert "oxford_flowers102" in str(e.value) and str(tmp_path) in str(e.value)
    assert "tfds build" in str(e.value)
    with pytest.raises(FileNotFoundError, match=r"'no_such_dataset_xyz'.*neither a registered") as e:
        read_tfds("no_such_dataset_xyz", "test", tmp_path)
    assert str(tmp_path) in str(e.value)
    assert time.monotonic() - start < 10
    assert list(tmp_path.iterdir()) == []  # nothing downloaded or created


def test_read_tfds_argument_validation(tmp_path):
    with pytest.raises(ValueError, match="dataset name"):
        read_tfds("", "test", tmp_path)
    with pytest.raises(ValueError, match="split"):
        read_tfds("oxford_flowers102", "", tmp_path)
    with pytest.raises(ValueError, match="data_dir"):
        read_tfds("oxford_flowers102", "test", None)
    with pytest.raises(FileNotFoundError, match=r"data_dir .*missing.*oxford_flowers102"):
        read_tfds("oxford_flowers102", "test", tmp_path / "missing")


def test_tfds_source_wrapper():
    """The wrapper over a (stand-in) TFDS data source: grain random access, ids, pickling."""
    records = [{"image": np.full((2, 3, 3), i, np.uint8), "label": np.int64(i % 2), "file_name": b"x"}
               for i in range(3)]
    source = TfdsSource(records, ClassList(("a", "b")), "toy", "test")
    assert len(source) == 3 and source[2]["label"] == 0 and source[-1]["id"] == "toy/test/2"
    assert set(source[1]) == {"image", "label", "id"} and source[1]["image"].shape == (2, 3, 3)
    assert [r["label"] for r in grain.MapDataset.source(source)] == [0, 1, 0]
    assert pickle.loads(pickle.dumps(source))[1]["id"] == "toy/test/1"
