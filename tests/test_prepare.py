"""`python -m vlmcls_jax.data.prepare` on small synthetic archives in the owners' formats (tar/tgz/zip members
named as in the real downloads; .mat files written with scipy.io.savemat in the fields torchvision and TFDS
read), checked against a few rows of the study's own manifests.

ImageNet's labels come from tensorflow-datasets' copy of the real validation ground truth
(datasets/imagenet2012/validation_labels.txt, 50000 WNIDs in file order; labels.txt, the 1000 WNIDs sorted),
so the manifest prepare writes is checked against ImageNet's truth and ImageWikiQA's classnames, not against
values made up here.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from vlmcls_jax.data import prepare as prep
from vlmcls_jax.data import study
from vlmcls_jax.data.sources import ClassList, load_class_names, read_manifest


def jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (seed * 40 % 256, 80, 160)).save(buf, format="JPEG")
    return buf.getvalue()


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def rows_of(dataset: str) -> list[dict]:
    with open(study.manifest_path(dataset)) as f:
        return [json.loads(line) for line in f]


def pick(rows: list[dict], n_per_split: int) -> list[dict]:
    out = []
    for split in ("train", "test"):
        out += [r for r in rows if r["split"] == split][:n_per_split]
    return out


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def check_layout(manifest: Path, out: Path, classes: str) -> None:
    """The run-time reader finds every image of the manifest under out (what `--config.data.image_root=out` needs)."""
    examples = read_manifest(manifest, out, ClassList(tuple(load_class_names(classes))))
    assert examples and all(os.path.isfile(e.image) for e in examples)


# ---------------------------------------------------------------------------------------------- Flowers102


def flowers_downloads(src: Path, rows: list[dict], swap_label: bool = False) -> None:
    classes = load_class_names(study.class_list_path("flowers"))
    ids = [int(re.search(r"(\d{5})", r["image"]).group(1)) for r in rows]
    labels = np.ones(max(ids), dtype=np.uint8)
    for i, r in zip(ids, rows):
        labels[i - 1] = classes.index(r["label"]) + 1          # 1-based, as in imagelabels.mat
    if swap_label:
        labels[ids[0] - 1] = labels[ids[0] - 1] % 102 + 1
    train = [i for i, r in zip(ids, rows) if r["split"] == "train"]
    savemat(src / "imagelabels.mat", {"labels": labels[None, :]})
    savemat(src / "setid.mat", {"trnid": np.array([train[::2]], np.uint16), "valid": np.array([train[1::2]], np.uint16),
                                "tstid": np.array([[i for i, r in zip(ids, rows) if r["split"] == "test"]], np.uint16)})
    members = {f"jpg/image_{i:05d}.jpg": jpeg(i) for i in ids}
    members["jpg/README.txt"] = b"not an image"            # ignored: not a member the layout names
    write_tar(src / "102flowers.tgz", members)


def test_flowers(tmp_path, capsys):
    rows = pick(rows_of("flowers"), 3)
    src, out = tmp_path / "downloads", tmp_path / "data"
    src.mkdir()
    flowers_downloads(src, rows)
    manifest = write_manifest(tmp_path / "flowers.jsonl", rows)
    summary = prep.prepare("flowers", src, out, do_verify=False, manifest=manifest)
    assert "6 images" in summary and "6 manifest rows agree" in summary
    assert sorted(p.name for p in (out / "data/Flowers102/jpg").iterdir()) == \
        sorted(Path(r["image"]).name for r in rows)
    check_layout(manifest, out, study.class_list_path("flowers"))
    # Run again: nothing is rewritten, the check still passes.
    mtime = (out / rows[0]["image"]).stat().st_mtime_ns
    prep.prepare("flowers", src, out, do_verify=False, manifest=manifest)
    assert (out / rows[0]["image"]).stat().st_mtime_ns == mtime


def test_flowers_wrong_label_and_checksum(tmp_path):
    rows = pick(rows_of("flowers"), 2)
    src = tmp_path / "downloads"
    src.mkdir()
    flowers_downloads(src, rows, swap_label=True)
    manifest = write_manifest(tmp_path / "flowers.jsonl", rows)
    with pytest.raises(prep.PrepareError, match=rf"{re.escape(str(manifest))}:1: the manifest says "):
        prep.prepare("flowers", src, tmp_path / "out", do_verify=False, manifest=manifest)
    with pytest.raises(prep.PrepareError, match=r"102flowers.tgz: \d+ bytes, but the published 102flowers.tgz has "
                                                r"344862509"):
        prep.prepare("flowers", src, tmp_path / "out", manifest=manifest)
    (src / "setid.mat").unlink()
    with pytest.raises(prep.PrepareError, match=r"missing setid.mat \(https://www.robots.ox.ac.uk/~vgg/data/"):
        prep.prepare("flowers", src, tmp_path / "out", do_verify=False, manifest=manifest)


def test_verify_checks_the_digest(tmp_path):
    data = b"some bytes"
    path = tmp_path / "x.mat"
    path.write_bytes(data)
    import hashlib
    prep.verify(path, prep.Archive("x.mat", "u", len(data), hashlib.sha256(data).hexdigest()))
    prep.verify(path, prep.Archive("x.mat", "u", md5=hashlib.md5(data).hexdigest()))
    with pytest.raises(prep.PrepareError, match="sha256 .* but the published x.mat has 00"):
        prep.verify(path, prep.Archive("x.mat", "u", len(data), "00" * 32))


# ------------------------------------------------------------------------------------------- Stanford Cars


def annotations(entries: list[tuple[str, int]]) -> np.ndarray:
    dtype = [(k, "O") for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")]
    arr = np.zeros((1, len(entries)), dtype=dtype)
    for j, (fname, cls) in enumerate(entries):
        arr[0, j] = (1, 2, 3, 4, cls, fname)
    return arr


def test_cars(tmp_path):
    rows = pick(rows_of("cars"), 2)
    classes = load_class_names(study.class_list_path("cars"))
    devkit_names = [re.sub(r"^(\d{4}) (.*)$", r"\2 \1", n) for n in classes]   # the devkit puts the year last
    src, out = tmp_path / "downloads", tmp_path / "data"
    src.mkdir()
    by_split = {s: [(Path(r["image"]).name, classes.index(r["label"]) + 1) for r in rows if r["split"] == s]
                for s in ("train", "test")}
    for s in ("train", "test"):
        write_tar(src / f"cars_{s}.tgz", {f"cars_{s}/{f}": jpeg(c) for f, c in by_split[s]})
    meta, train_annos = io.BytesIO(), io.BytesIO()
    savemat(meta, {"class_names": np.array([devkit_names], dtype=object)})
    savemat(train_annos, {"annotations": annotations(by_split["train"])})
    write_tar(src / "car_devkit.tgz", {"devkit/cars_meta.mat": meta.getvalue(),
                                       "devkit/cars_train_annos.mat": train_annos.getvalue(),
                                       "devkit/README.txt": b"devkit"})
    savemat(src / "cars_test_annos_withlabels.mat", {"annotations": annotations(by_split["test"])})
    manifest = write_manifest(tmp_path / "cars.jsonl", rows)
    summary = prep.prepare("cars", src, out, do_verify=False, manifest=manifest)
    assert "4 images" in summary and "4 manifest rows agree with the devkit" in summary
    check_layout(manifest, out, study.class_list_path("cars"))


def test_year_first():
    assert prep.year_first("AM General Hummer SUV 2000") == "2000 AM General Hummer SUV"
    assert prep.year_first("Ram C/V Cargo Van Minivan 2012") == "2012 Ram C/V Cargo Van Minivan"


# ----------------------------------------------------------------------------------------------- Caltech-101


def test_caltech_folder_names_give_the_study_labels():
    """The rule prepare checks with, on every row the study released (8677)."""
    for r in rows_of("caltech"):
        assert prep.caltech_class(r["image"].split("/")[-2]) == r["label"], r


@pytest.mark.parametrize("form", ["tar.gz", "zip", "folder"])
def test_caltech(tmp_path, form):
    every = rows_of("caltech")
    rows = [r for folder in ("Faces_easy", "Faces", "water_lilly", "Leopards")     # renamed by CALTECH_NAMES or "_"
            for r in [r for r in every if r["image"].split("/")[-2] == folder][:2]]
    members = {"/".join(r["image"].split("/")[-3:]): jpeg(i) for i, r in enumerate(rows)}
    members["101_ObjectCategories/BACKGROUND_Google/image_0001.jpg"] = jpeg(9)
    src, out = tmp_path / "downloads", tmp_path / "data"
    src.mkdir()
    if form == "folder":
        for name, data in members.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(data)
    else:
        inner = write_tar(tmp_path / "101_ObjectCategories.tar.gz", members)
        if form == "tar.gz":
            inner.rename(src / inner.name)
        else:
            with zipfile.ZipFile(src / "caltech-101.zip", "w") as z:
                z.write(inner, "caltech-101/101_ObjectCategories.tar.gz")
    manifest = write_manifest(tmp_path / "caltech.jsonl", rows)
    summary = prep.prepare("caltech", src, out, do_verify=False, manifest=manifest)
    assert f"{len(members)} images" in summary and f"{len(rows)} manifest rows agree" in summary
    check_layout(manifest, out, study.class_list_path("caltech"))


def test_caltech_missing_image_is_an_error(tmp_path):
    rows = rows_of("caltech")[:2]
    src = tmp_path / "downloads"
    src.mkdir()
    write_tar(src / "101_ObjectCategories.tar.gz", {"/".join(rows[0]["image"].split("/")[-3:]): jpeg(0)})
    with pytest.raises(prep.PrepareError, match=r"1 of the 2 images in .* are not in"):
        prep.prepare("caltech", src, tmp_path / "out", do_verify=False, manifest=write_manifest(tmp_path / "m.jsonl", rows))


# ---------------------------------------------------------------------------------------------- ImageNet


def tfds_imagenet_file(name: str) -> list[str]:
    import tensorflow_datasets  # an install dependency; its package data holds ImageNet's label files

    path = Path(tensorflow_datasets.__file__).parent / "datasets" / "imagenet2012" / name
    return path.read_text().split()


def imagenet_devkit(path: Path, truth: list[str], sorted_wnids: list[str]) -> None:
    """meta.mat with the 1000 leaf synsets under shuffled ILSVRC2012_IDs plus one inner synset, and the ground
    truth as those ids."""
    n = len(sorted_wnids)
    id_of = dict(zip(sorted_wnids, (np.random.default_rng(0).permutation(n) + 1).tolist()))
    fields = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images")
    synsets = np.zeros((n + 1, 1), dtype=[(f, "O") for f in fields])
    for j, w in enumerate(sorted_wnids):
        synsets[j, 0] = (id_of[w], w, "words", "gloss", 0, np.zeros((1, 0)), 0, 1300)
    synsets[n, 0] = (n + 1, "n00001740", "entity", "gloss", 2, np.array([[1, 2]]), 19, 0)
    meta = io.BytesIO()
    savemat(meta, {"synsets": synsets})
    ground_truth = "".join(f"{id_of[w]}\n" for w in truth).encode()
    write_tar(path, {"ILSVRC2012_devkit_t12/data/meta.mat": meta.getvalue(),
                     "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": ground_truth,
                     "ILSVRC2012_devkit_t12/COPYING": b"devkit"})


def test_imagenet(tmp_path):
    sorted_wnids, truth = tfds_imagenet_file("labels.txt"), tfds_imagenet_file("validation_labels.txt")
    assert sorted_wnids == sorted(sorted_wnids) and len(truth) == 50000
    question = json.loads(Path(study.imagewikiqa_path()).read_text().splitlines()[0])
    k_question = int(re.search(r"(\d{8})", question["image"]).group(1))
    src, out = tmp_path / "downloads", tmp_path / "data"
    src.mkdir()
    imagenet_devkit(src / "ILSVRC2012_devkit_t12.tar.gz", truth[:k_question], sorted_wnids)
    numbers = [1, 2, 3, k_question]
    write_tar(src / "ILSVRC2012_img_val.tar", {f"ILSVRC2012_val_{k:08d}.JPEG": jpeg(k) for k in numbers}, "w")
    summary = prep.prepare("imagenet", src, out, do_verify=False)
    assert "4 validation images" in summary and "1 ImageWikiQA images linked" in summary
    manifest = out / study.IMAGENET_MANIFEST
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    classes = load_class_names(study.class_list_path("imagenet"))
    # ImageNet's truth (TFDS's copy) through the sorted-WNID index; the fields of the study's sample rows.
    sample = json.loads(Path(study.study_file("imagenet_small.jsonl")).read_text().splitlines()[0])
    assert [r["imagenet_label"] for r in rows] == [truth[k - 1] for k in numbers]
    for r in rows:
        assert set(r) == set(sample)
        assert r["label"] == classes[r["label_idx"]] and sorted_wnids[r["label_idx"]] == r["imagenet_label"]
        assert r["split"] == "valid" and r["image"].startswith("./data/ImageNet/imagenet/val/" + r["imagenet_label"])
    assert rows[-1]["label"] == question["classname"]
    assert (out / question["image"]).read_bytes() == jpeg(k_question)
    check_layout(manifest, out, study.class_list_path("imagenet"))


def test_imagenet_devkit_errors(tmp_path):
    sorted_wnids = tfds_imagenet_file("labels.txt")
    imagenet_devkit(tmp_path / "devkit.tar.gz", sorted_wnids[:3], sorted_wnids[:999])
    with pytest.raises(prep.PrepareError, match="meta.mat has 999 leaf synsets, ImageNet-1k has 1000"):
        prep.imagenet_devkit(tmp_path / "devkit.tar.gz")
    write_tar(tmp_path / "empty.tar.gz", {"ILSVRC2012_devkit_t12/COPYING": b""})
    with pytest.raises(prep.PrepareError, match="no ILSVRC2012_devkit_t12/data/meta.mat in it"):
        prep.imagenet_devkit(tmp_path / "empty.tar.gz")


# -------------------------------------------------------------------------------------------- command line


def test_command_line(tmp_path, capsys):
    assert prep.main(["flowers", "--from", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing 102flowers.tgz" in err
    rows = pick(rows_of("flowers"), 1)
    flowers_downloads(tmp_path, rows)
    code = prep.main(["flowers", "--from", str(tmp_path), "--out", str(tmp_path / "o"), "--no-verify"])
    captured = capsys.readouterr()
    assert code == 2 and "not in" in captured.err      # the shipped manifest: 8187 images not in the archive
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")


def test_readme_lists_every_published_checksum():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for archives in prep.ARCHIVES.values():
        for a in archives:
            assert a.name in readme, a.name
            for digest in (a.sha256, a.md5):
                assert digest is None or digest in readme, (a.name, digest)


def test_a_truncated_archive_is_named(tmp_path):
    rows = pick(rows_of("flowers"), 1)
    flowers_downloads(tmp_path, rows)
    data = (tmp_path / "102flowers.tgz").read_bytes()
    (tmp_path / "102flowers.tgz").write_bytes(data[: len(data) // 2])
    with pytest.raises(prep.PrepareError, match=r"102flowers.tgz: not a readable tar archive"):
        prep.prepare("flowers", tmp_path, tmp_path / "o", do_verify=False, manifest=write_manifest(tmp_path / "m", rows))
