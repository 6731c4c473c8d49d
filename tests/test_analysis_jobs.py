"""The probing job and the ImageWikiQA job end to end on a tiny random LLaVA, through `main`'s job table."""

import json
import random

import numpy as np
import pytest

import train_fixtures
from configs import table3_probe, table5_imagewikiqa
from vlmcls_jax import demo
from vlmcls_jax.analysis import probe_job
from vlmcls_jax.main import jobs


def test_probe_job(tmp_path, monkeypatch):
    ckpt = train_fixtures.tiny_checkpoint(tmp_path / "llava")
    manifest = train_fixtures.shapes_dataset(tmp_path / "data", 12)
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    for i, r in enumerate(rows):
        r["split"] = "test" if i % 3 == 0 else "train"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "classes.json").write_text(json.dumps(demo.class_names()))
    c = table3_probe.get_config("flowers")
    c.model.checkpoint = str(ckpt)
    c.data.manifest, c.data.classes, c.data.image_root = str(manifest), str(tmp_path / "classes.json"), str(
        tmp_path / "data")
    c.features = ("llm:-1/last", "vision/mean")
    c.probe.epochs, c.probe.batch_size = 5, 4
    c.mesh_shape = (-1, 1, 1)
    seen = []
    real_train = probe_job.train_probe
    monkeypatch.setattr(probe_job, "train_probe", lambda *a: seen.append(a) or real_train(*a))
    results = jobs()["probe"](c, str(tmp_path / "run"))
    assert results["examples"] == {"train": 8, "test": 4}
    for feature in c.features:
        r = results["rows"][feature]
        assert 0 <= r["best_on_test"]["test_accuracy"] <= 1 and r["test_examples"] == 4
        assert r["train_examples"] == 8                         # the study's column: the whole train split
        assert r["val_selected"]["train_examples"] + r["val_examples"] == 8
    # The study's order (feature_analysis/probe.py:39-48, 61, 74):
    #     data = [json.loads(line) for line in open(f"../data/{dataset}.jsonl")]
    #     random.seed(1234)
    #     random.shuffle(data)
    #     ... item["label_index"] = classes.index(item["label"])
    #     train_idxs = [i for i in range(len(data)) if data[i]["split"] == "train"]
    #     train_labels = labels[train_idxs]
    data = [json.loads(line) for line in open(manifest)]
    random.seed(1234)
    random.shuffle(data)
    train_labels = [demo.class_names().index(item["label"]) for item in data if item["split"] == "train"]
    assert [list(a[1]) for a in seen] == [train_labels] * 4 and [len(a[0]) for a in seen] == [8] * 4
    table = (tmp_path / "run" / "table.md").read_text()   # rows: the study's best-on-test, the validation-chosen
    assert "| llava | llm:-1/last |" in table and "| llava | vision/mean, epoch chosen on validation |" in table
    assert len(list((tmp_path / "run" / "features" / "train" / "part0-of-1").glob("chunk*.npz"))) == 1
    # Features extracted by another checkpoint's (or setting's) run are never resumed: refused, naming it.
    c.model.checkpoint = str(train_fixtures.tiny_checkpoint(tmp_path / "other", image_size=14))
    c.wording = "identify"
    with pytest.raises(ValueError, match=r"holds outputs of another setting \(model.checkpoint "
                                         r".*/llava\" -> .*/other\".*; wording \"default\" -> \"identify\""):
        jobs()["probe"](c, str(tmp_path / "run"))


def test_clip_linear_probe_job(tmp_path):
    """The study's CLIP linear probe on the probe job: the features are CLIP's image embedding."""
    ckpt = train_fixtures.tiny_clip_checkpoint(tmp_path / "clip")
    manifest = train_fixtures.shapes_dataset(tmp_path / "data", 6)
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    for i, r in enumerate(rows):
        r["split"] = "test" if i % 3 == 0 else "train"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "classes.json").write_text(json.dumps(demo.class_names()))
    c = table3_probe.get_config("flowers,clip")
    assert (c.features, c.probe.epochs, c.probe.shuffle, c.probe.normalize, c.probe.order, c.seed) == (
        ("clip/embed",), 300, True, True, "file", 0)             # run_finetune.sh: --epochs 300; --seed 0
    assert table3_probe.get_config("imagenet,clip").probe.epochs == 40
    c.model.checkpoint = str(ckpt)
    c.data.manifest, c.data.classes, c.data.image_root = str(manifest), str(tmp_path / "classes.json"), str(
        tmp_path / "data")
    c.probe.epochs, c.probe.batch_size, c.batch_size = 3, 4, 4
    results = jobs()["probe"](c, str(tmp_path / "run"))
    r = results["rows"]["clip/embed"]
    assert r["train_examples"] == 4 and r["test_examples"] == 2 and 0 <= r["final_test_accuracy"] <= 1
    from vlmcls_jax.analysis.features import load_features
    from vlmcls_jax.convert import load_hf
    from vlmcls_jax.data.preprocess import ClipPreprocessConfig, preprocess_batch
    ids, _, feats = load_features(str(tmp_path / "run" / "features" / "test"))
    clip = load_hf(str(ckpt))
    px = preprocess_batch([str(tmp_path / "data" / i) for i in ids], ClipPreprocessConfig.from_pretrained_dir(
        str(ckpt)), pad_to_square=False)
    np.testing.assert_allclose(feats["clip/embed"], np.asarray(clip.get_image_features(px)), atol=1e-5)


def test_imagewikiqa_job_and_gain_over_a_baseline(tmp_path):
    ckpt = train_fixtures.tiny_checkpoint(tmp_path / "llava")
    train_fixtures.shapes_dataset(tmp_path / "images", 3)
    names = demo.class_names()
    options = "\n".join(f"{x}. {n}" for x, n in zip("ABCD", names))
    questions = [{"image": f"{i}.png", "text": f"What is this?\n{options}\nChoose A, B, C, or D.",
                  "label": "ABCD"[i], "wiki": "", "classname": names[i]} for i in range(3)]
    questions.append({**questions[0], "image": "gone.png"})
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    c = table5_imagewikiqa.get_config()
    c.model.checkpoint = str(ckpt)
    c.data.questions, c.data.image_root = str(tmp_path / "q.jsonl"), str(tmp_path / "images")
    c.generation.max_new_tokens, c.generation.batch_size = 3, 2
    base = jobs()["imagewikiqa"](c, str(tmp_path / "base"))
    row = base["rows"]["ImageWikiQA (chain of thought)"]
    assert row["questions"] == 4 and row["missing_images"] == 1 and base["load_report"]["missing_images"] == 1
    csv = (tmp_path / "base" / "per_class.csv").read_text().splitlines()
    assert csv[0] == "classname,correct,total" and len(csv) == 1 + 3
    c.baseline = str(tmp_path / "base")
    again = jobs()["imagewikiqa"](c, str(tmp_path / "again"))
    assert again["gain_over_baseline"]["points"] == 0.0 and again["gain_over_baseline"]["study_points"] == 11.8
    assert "(the study reports +11.8)" in (tmp_path / "again" / "table.md").read_text()
    c.generation.max_new_tokens = 4    # the answers in base/outputs.jsonl were cut at 3 tokens
    with pytest.raises(ValueError, match=r"another setting \(generation.max_new_tokens 3 -> 4; all in "):
        jobs()["imagewikiqa"](c, str(tmp_path / "base"))
