"""Lay out the official image archives the way the study's manifests expect, and check them against it.

    python -m vlmcls_jax.data.prepare {flowers,cars,caltech,imagenet} --from DOWNLOADS --out DATA

DOWNLOADS holds the files the dataset's owners distribute (ARCHIVES below; URLs and checksums also in the
README); DATA receives the images at the paths the study's manifests name (relative to DATA):

    flowers   102flowers.tgz, imagelabels.mat, setid.mat      -> data/Flowers102/jpg/image_00001.jpg ...
    cars      cars_train.tgz, cars_test.tgz, car_devkit.tgz,  -> data/StanfordCars/cars_{train,test}/00001.jpg
              cars_test_annos_withlabels.mat
    caltech   101_ObjectCategories.tar.gz (or caltech-101.zip, -> data/Caltech101/101_ObjectCategories/<class>/
              or the extracted 101_ObjectCategories/ folder)       image_0001.jpg
    imagenet  ILSVRC2012_img_val.tar, ILSVRC2012_devkit_t12.tar.gz -> data/ImageNet/imagenet/val/<wnid>/
              ILSVRC2012_val_00000001.JPEG, the manifest data/imagenet.jsonl, and images/ (links to the
              validation images ImageWikiQA asks about)

Then every row of the study's manifest is checked: its image is there, and its label and split agree with
the owners' annotations (imagelabels.mat + setid.mat; the devkit's .mat files; the class folder). A
disagreement is an error naming the manifest line. Archives are checked against the published checksums
first (`--no-verify` skips that). Re-running skips images already written with the right size.

ImageNet: the study released only a 10-row sample of its manifest (imagenet_small.jsonl: rows
{image, label, label_idx, imagenet_label, idx, split}), so the validation manifest is written here in that
format: label_idx is the class's position among the 1000 WNIDs sorted (the order of imagenet_classes.json,
whose first class "tench" is n01440764 in the sample), split "valid" (the study's --split for ImageNet).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import os
import re
import shutil
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from vlmcls_jax.data import study
from vlmcls_jax.data.sources import jsonl_objects, load_class_names
from vlmcls_jax.fileio import write_jsonl


@dataclasses.dataclass(frozen=True)
class Archive:
    """One file the dataset's owners distribute, with its published checksums (and where they come from)."""

    name: str
    url: str
    size: int | None = None
    sha256: str | None = None      # from tensorflow-datasets' checksum files
    md5: str | None = None         # from torchvision's dataset classes


TFDS = "tensorflow-datasets 4.9.10"
ARCHIVES = {
    # TFDS: datasets/oxford_flowers102/checksums.tsv; torchvision: datasets/flowers102.py (Flowers102._file_dict)
    "flowers": (
        Archive("102flowers.tgz", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz", 344862509,
                "2d01ecc807db462958cfe3d92f57a8c252b4abd240eb955770201e45f783b246", "52808999861908f626f3c1f4e79d11fa"),
        Archive("imagelabels.mat", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat", 502,
                "4903e94206bac23bf772aadf06451916df56b58fc483a62db32a97b82656651d", "e0620be6f572b9609742df49c70aed4d"),
        Archive("setid.mat", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/setid.mat", 14989,
                "46b8678f91fd95d3c8f4feab80d271a6c834a1dd896fe29fd3e6ad9ce5c8dccd", "a5357ecc9cb78c4bef273ce3793fc85c"),
    ),
    # TFDS: url_checksums/cars196.txt; torchvision: datasets/stanford_cars.py (0.13-0.16, StanfordCars.download).
    # The Stanford URLs no longer answer (pytorch/vision#7545); mirrors carry the same files.
    "cars": (
        Archive("cars_train.tgz", "http://ai.stanford.edu/~jkrause/car196/cars_train.tgz", 979269282,
                "512b227b30e2f0a8aab9e09485786ab4479582073a144998da74d64b801fd288", "065e5b463ae28d29e77c1b4b166cfe61"),
        Archive("cars_test.tgz", "http://ai.stanford.edu/~jkrause/car196/cars_test.tgz", 977350468,
                "bffea656d6f425cba3c91c6d83336e4c5f86c6cffd8975b0f375d3a10da8e243", "4ce7ebf6a94d07f1952d94dd34c4d501"),
        Archive("car_devkit.tgz", "https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz", 330960,
                "b97deb463af7d58b6bfaa18b2a4de9829f0f79e8ce663dfa9261bf7810e9accd", "c3b158d763b6e2245038c8ad08e45376"),
        Archive("cars_test_annos_withlabels.mat",
                "http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat", 185758,
                "790f75be8ea34eeded134cc559332baf23e30e91367e9ddca97d26ed9b895f05", "b0a2b23655a3edd16d84508592a98d10"),
    ),
    # One of the two: torchvision datasets/caltech.py (0.8, Caltech101.download) for the tar.gz; TFDS
    # datasets/caltech101/checksums.tsv for the zip Caltech's data repository serves now (it holds the tar.gz).
    "caltech": (
        Archive("101_ObjectCategories.tar.gz",
                "http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz",
                md5="b224c7392d521a49829488ab0f1120d9"),
        Archive("caltech-101.zip", "https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip?download=1",
                137414764, "331234750fc7f77520e50d9565e8b6907b03565e30320da1401130db08c61f91"),
    ),
    # TFDS: datasets/imagenet2012/checksums.tsv (val tar); torchvision: datasets/imagenet.py (ARCHIVE_META).
    # image-net.org serves both after login.
    "imagenet": (
        Archive("ILSVRC2012_img_val.tar", "http://www.image-net.org/challenges/LSVRC/2012/nnoupb/ILSVRC2012_img_val.tar",
                6744924160, "c7e06a6c0baccf06d8dbeb6577d71efff84673a5dbdd50633ab44f8ea0456ae0",
                "29b22e2961454d5413ddabcf34fc5622"),
        Archive("ILSVRC2012_devkit_t12.tar.gz", "https://image-net.org/ (after login, beside the validation images)",
                md5="fa75699e90414af021442c21a62c3abf"),
    ),
}
ROOTS = {"flowers": "data/Flowers102", "cars": "data/StanfordCars", "caltech": "data/Caltech101",
         "imagenet": "data/ImageNet/imagenet"}
# Caltech-101 folders whose class name in the study's class list is not the folder name with "_" -> " ".
CALTECH_NAMES = {"Faces": "face", "Faces_easy": "face", "Leopards": "leopard", "Motorbikes": "motorbike",
                 "airplanes": "airplane"}


class PrepareError(ValueError):
    """A problem with the user's downloads or the output folder (the message says which file and what to do)."""


# ---------------------------------------------------------------------------------------------- checks


def verify(path: Path, archive: Archive) -> None:
    """Size, then sha256 (or md5 where only that is published); PrepareError naming the file on a mismatch."""
    if archive.size is not None and path.stat().st_size != archive.size:
        raise PrepareError(f"{path}: {path.stat().st_size} bytes, but the published {archive.name} has "
                           f"{archive.size}: an incomplete or different download (--no-verify skips this check)")
    algo, expected = ("sha256", archive.sha256) if archive.sha256 else ("md5", archive.md5)
    digest = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise PrepareError(f"{path}: {algo} {digest.hexdigest()}, but the published {archive.name} has "
                           f"{expected}: a corrupt or different download (--no-verify skips this check)")


def find_downloads(dataset: str, src: Path, do_verify: bool) -> dict[str, Path]:
    """name -> path of each archive of `dataset` present in `src` (caltech needs one of its two, or the
    extracted folder); PrepareError naming what is missing and where to get it."""
    archives = ARCHIVES[dataset]
    found = {a.name: src / a.name for a in archives if (src / a.name).is_file()}
    if dataset == "caltech":
        if (src / "101_ObjectCategories").is_dir():
            return {"101_ObjectCategories": src / "101_ObjectCategories"}
        needed = [] if found else [archives[0]]
    else:
        needed = [a for a in archives if a.name not in found]
    if needed:
        raise PrepareError(f"{src}: missing " + "; ".join(f"{a.name} ({a.url})" for a in needed))
    if do_verify:
        for a in archives:
            if a.name in found:
                verify(found[a.name], a)
    return found


# --------------------------------------------------------------------------------------------- writing


def _copy_member(read: Callable[[], io.BufferedIOBase], size: int, dest: Path) -> None:
    """Writes one archive member to dest (via a temporary name), unless dest already has that size."""
    if dest.is_file() and dest.stat().st_size == size:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with read() as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    os.replace(tmp, dest)


def _tar_members(tar: tarfile.TarFile) -> Iterator[tuple[str, tarfile.TarInfo]]:
    for member in tar:
        if member.isfile():
            yield (member.name[2:] if member.name.startswith("./") else member.name), member


def extract(archive: Path | tarfile.TarFile, place: Callable[[str], str | None], out: Path) -> int:
    """Writes each regular file of a tar archive for which `place(member name)` gives a path (relative to
    `out`, built by the caller from a pattern it matched, so a member cannot write outside `out`). Returns
    the number of files the archive placed (written now or already there)."""
    placed = 0
    try:
        tar = archive if isinstance(archive, tarfile.TarFile) else tarfile.open(archive, "r|*")
        with tar:
            for name, member in _tar_members(tar):
                rel = place(name)
                if rel is not None:
                    _copy_member(lambda: tar.extractfile(member), member.size, out / rel)
                    placed += 1
    except (tarfile.TarError, EOFError, zlib.error) as e:    # truncated or not a tar: checksums catch it first
        raise PrepareError(f"{getattr(archive, 'name', archive)}: not a readable tar archive ({e})") from None
    return placed


def _matching(pattern: str, template: str) -> Callable[[str], str | None]:
    """place() for extract(): member names that fully match `pattern` -> `template` formatted with its groups."""
    regex = re.compile(pattern)

    def place(name: str) -> str | None:
        m = regex.fullmatch(name)
        return template.format(*m.groups()) if m else None
    return place


def _loadmat(path: Path | io.BytesIO, key: str, where: str):
    from scipy.io import loadmat  # scipy is an install dependency; only this module needs .mat files

    try:
        mat = loadmat(path, squeeze_me=True)
    except Exception as e:   # scipy raises several types for a file that is not a .mat
        raise PrepareError(f"{where}: not a readable .mat file ({e})") from None
    if key not in mat:
        raise PrepareError(f"{where}: no {key!r} in it (keys: {sorted(k for k in mat if not k.startswith('__'))})")
    return np.atleast_1d(mat[key])     # squeeze_me makes a one-element array a scalar


# -------------------------------------------------------------------------------- checking the manifest


def check_manifest(manifest: str | Path, out: Path, official: Callable[[dict], tuple[str, str | None]]) -> int:
    """Every row's image exists under `out`, and `official(row)` -> (label, split or None) from the owners'
    annotations equals the row's label and split. Returns the number of rows; PrepareError on the first
    disagreement (naming file:line) or listing missing images."""
    missing, rows = [], 0
    for _, where, row in jsonl_objects(manifest):
        rows += 1
        if not (out / row["image"]).is_file():
            missing.append(row["image"])
            continue
        label, split = official(row)
        if label != row["label"]:
            raise PrepareError(f"{where}: the manifest says {row['label']!r} for {row['image']}, the dataset's "
                               f"annotations say {label!r}: the downloads are not the ones the study used")
        if split is not None and split != row["split"]:
            raise PrepareError(f"{where}: the manifest puts {row['image']} in {row['split']!r}, the dataset's "
                               f"official split in {split!r}")
    if missing:
        raise PrepareError(f"{len(missing)} of the {rows} images in {manifest} are not in {out} after preparing "
                           f"(first: {missing[:3]}): the archives lack them")
    return rows


def _image_number(row: dict, pattern: str) -> int:
    m = re.search(pattern, row["image"])
    if not m:
        raise PrepareError(f"manifest image {row['image']!r} does not match {pattern!r}")
    return int(m.group(1))


# ------------------------------------------------------------------------------------------- datasets


def prepare_flowers(files: dict[str, Path], out: Path, manifest: str) -> str:
    root = ROOTS["flowers"]
    n = extract(files["102flowers.tgz"], _matching(r"jpg/(image_\d{5}\.jpg)", root + "/jpg/{}"), out)
    (out / root).mkdir(parents=True, exist_ok=True)
    for name in ("imagelabels.mat", "setid.mat"):
        shutil.copyfile(files[name], out / root / name)
    labels = _loadmat(files["imagelabels.mat"], "labels", str(files["imagelabels.mat"])).tolist()
    split_of = {}
    for key, split in (("trnid", "train"), ("valid", "train"), ("tstid", "test")):   # the study: train = trn + val
        for i in _loadmat(files["setid.mat"], key, str(files["setid.mat"])).tolist():
            split_of[int(i)] = split
    classes = load_class_names(study.class_list_path("flowers"))   # in the official label order (1-based)

    def official(row):
        i = _image_number(row, r"image_(\d{5})\.jpg$")
        if i > len(labels):
            raise PrepareError(f"imagelabels.mat has {len(labels)} labels, none for {row['image']}")
        return classes[int(labels[i - 1]) - 1], split_of.get(i)
    rows = check_manifest(manifest, out, official)
    return f"Flowers102: {n} images in {out / root}/jpg; the study's {rows} manifest rows agree with " \
           "imagelabels.mat and setid.mat"


def year_first(devkit_name: str) -> str:
    """The devkit's "AM General Hummer SUV 2000" -> the study's "2000 AM General Hummer SUV"."""
    m = re.fullmatch(r"(.*) (\d{4})", devkit_name.strip())
    return f"{m.group(2)} {m.group(1)}" if m else devkit_name.strip()


def prepare_cars(files: dict[str, Path], out: Path, manifest: str) -> str:
    root = ROOTS["cars"]
    n = sum(extract(files[f"cars_{s}.tgz"], _matching(rf"cars_{s}/(\d{{5}}\.jpg)", root + f"/cars_{s}/{{}}"), out)
            for s in ("train", "test"))
    extract(files["car_devkit.tgz"], _matching(r"devkit/(\w[^/]*)", root + "/devkit/{}"), out)
    (out / root).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(files["cars_test_annos_withlabels.mat"], out / root / "cars_test_annos_withlabels.mat")
    devkit = out / root / "devkit"
    for needed in ("cars_meta.mat", "cars_train_annos.mat"):
        if not (devkit / needed).is_file():
            raise PrepareError(f"{files['car_devkit.tgz']}: no devkit/{needed} in it")
    classes = load_class_names(study.class_list_path("cars"))
    meta = [year_first(str(n)) for n in _loadmat(devkit / "cars_meta.mat", "class_names", "devkit/cars_meta.mat")]
    if meta != classes:
        diff = [i for i, (a, b) in enumerate(zip(meta, classes)) if a != b] or [min(len(meta), len(classes))]
        raise PrepareError(f"devkit/cars_meta.mat: {len(meta)} class names, and class {diff[0] + 1} is not the "
                           "study's (cars_classes.json, year first): not the Stanford Cars devkit")
    label_of = {}
    for split, path in (("train", devkit / "cars_train_annos.mat"),
                        ("test", out / root / "cars_test_annos_withlabels.mat")):
        for a in _loadmat(path, "annotations", str(path)).ravel():
            label_of[f"cars_{split}/{a['fname']}"] = (classes[int(a["class"]) - 1], split)

    def official(row):
        key = "/".join(row["image"].split("/")[-2:])
        if key not in label_of:
            raise PrepareError(f"no annotation for {row['image']} in the devkit's .mat files")
        return label_of[key]
    rows = check_manifest(manifest, out, official)
    return f"Stanford Cars: {n} images in {out / root}; the study's {rows} manifest rows agree with the devkit"


def caltech_class(folder: str) -> str:
    """A Caltech-101 folder name -> the study's class name ("Faces_easy" -> "face", "water_lilly" -> "water lilly")."""
    return CALTECH_NAMES.get(folder, folder.replace("_", " "))


def prepare_caltech(files: dict[str, Path], out: Path, manifest: str) -> str:
    root = ROOTS["caltech"]
    place = _matching(r"101_ObjectCategories/(\w[^/]*)/(\w[^/]*\.jpg)", root + "/101_ObjectCategories/{}/{}")
    if "101_ObjectCategories" in files:           # the extracted folder tree
        tree, n = files["101_ObjectCategories"], 0
        for path in sorted(tree.rglob("*.jpg")):
            rel = place(path.relative_to(tree.parent).as_posix())
            if rel is not None:
                _copy_member(lambda: open(path, "rb"), path.stat().st_size, out / rel)
                n += 1
    elif "101_ObjectCategories.tar.gz" in files:
        n = extract(files["101_ObjectCategories.tar.gz"], place, out)
    else:                                          # caltech-101.zip holds caltech-101/101_ObjectCategories.tar.gz
        if not zipfile.is_zipfile(files["caltech-101.zip"]):
            raise PrepareError(f"{files['caltech-101.zip']}: not a zip archive")
        with zipfile.ZipFile(files["caltech-101.zip"]) as z:
            inner = [m for m in z.namelist() if m.endswith("101_ObjectCategories.tar.gz")]
            if not inner:
                raise PrepareError(f"{files['caltech-101.zip']}: no 101_ObjectCategories.tar.gz in it")
            with z.open(inner[0]) as f:
                n = extract(tarfile.open(fileobj=f, mode="r|gz"), place, out)

    def official(row):
        return caltech_class(row["image"].split("/")[-2]), None     # the split is the study's own
    rows = check_manifest(manifest, out, official)
    return f"Caltech-101: {n} images in {out / root}/101_ObjectCategories; the study's {rows} manifest rows " \
           "agree with their class folders"


def imagenet_devkit(devkit: Path) -> tuple[list[str], list[str]]:
    """(the 1000 WNIDs sorted, the WNID of each validation image in file order) from the devkit archive."""
    wanted = {"data/meta.mat": None, "data/ILSVRC2012_validation_ground_truth.txt": None}
    with tarfile.open(devkit, "r|*") as tar:
        for name, member in _tar_members(tar):
            for key in wanted:
                if name.endswith("ILSVRC2012_devkit_t12/" + key):
                    wanted[key] = tar.extractfile(member).read()
    for key, data in wanted.items():
        if data is None:
            raise PrepareError(f"{devkit}: no ILSVRC2012_devkit_t12/{key} in it")
    synsets = _loadmat(io.BytesIO(wanted["data/meta.mat"]), "synsets", f"{devkit}: data/meta.mat")
    leaves = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets.ravel() if int(s["num_children"]) == 0}
    if len(leaves) != 1000:
        raise PrepareError(f"{devkit}: data/meta.mat has {len(leaves)} leaf synsets, ImageNet-1k has 1000")
    truth = wanted["data/ILSVRC2012_validation_ground_truth.txt"].decode().split()
    try:
        val_wnids = [leaves[int(i)] for i in truth]
    except (KeyError, ValueError) as e:
        raise PrepareError(f"{devkit}: ILSVRC2012_validation_ground_truth.txt has an entry {e} that is not a "
                           "class id of meta.mat") from None
    return sorted(leaves.values()), val_wnids


def prepare_imagenet(files: dict[str, Path], out: Path) -> str:
    root = ROOTS["imagenet"]
    wnids, val_wnids = imagenet_devkit(files["ILSVRC2012_devkit_t12.tar.gz"])
    index = {w: i for i, w in enumerate(wnids)}
    classes = load_class_names(study.class_list_path("imagenet"))     # sorted-WNID order

    def place(name):
        m = re.fullmatch(r"(ILSVRC2012_val_(\d{8})\.JPEG)", name)
        if not m:
            return None
        k = int(m.group(2))
        if not 1 <= k <= len(val_wnids):
            raise PrepareError(f"{files['ILSVRC2012_img_val.tar']}: {name} has no line in the devkit's ground truth "
                               f"({len(val_wnids)} lines)")
        return f"{root}/val/{val_wnids[k - 1]}/{m.group(1)}"
    n = extract(files["ILSVRC2012_img_val.tar"], place, out)
    path = out / study.IMAGENET_MANIFEST
    rows, by_name = [], {}
    for k, wnid in enumerate(val_wnids, 1):
        image = f"{root}/val/{wnid}/ILSVRC2012_val_{k:08d}.JPEG"
        if (out / image).is_file():
            by_name[Path(image).name] = image
            rows.append({"image": "./" + image, "label": classes[index[wnid]], "label_idx": index[wnid],
                         "imagenet_label": wnid, "idx": len(rows), "split": "valid"})
    write_jsonl(str(path), rows)
    linked = link_imagewikiqa_images(out, by_name, {Path(r["image"]).name: r["label"] for r in rows})
    return f"ImageNet: {n} validation images in {out / root}/val (the devkit lists {len(val_wnids)}); manifest " \
           f"{path} ({len(rows)} rows); {linked} ImageWikiQA images linked in {out / 'images'}"


def link_imagewikiqa_images(out: Path, by_name: dict[str, str], label_of: dict[str, str]) -> int:
    """ImageWikiQA's images are ImageNet validation images (`images/ILSVRC2012_val_*.JPEG` under the image
    root): hard-link (or copy) the ones present, checking each question's classname against the label."""
    linked = 0
    for _, where, q in jsonl_objects(study.imagewikiqa_path()):
        name = Path(q["image"]).name
        if name not in by_name:
            continue
        if label_of[name] != q["classname"]:
            raise PrepareError(f"{where}: ImageWikiQA's classname {q['classname']!r} for {name}, the devkit's "
                               f"label {label_of[name]!r}: the devkit is not ImageNet-2012's")
        dest = out / q["image"]
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(out / by_name[name], dest)
            except OSError:
                shutil.copyfile(out / by_name[name], dest)
        linked += 1
    return linked


PREPARE = {"flowers": prepare_flowers, "cars": prepare_cars, "caltech": prepare_caltech,
           "imagenet": prepare_imagenet}


def prepare(dataset: str, src: str | os.PathLike, out: str | os.PathLike, *, do_verify: bool = True,
            manifest: str | os.PathLike | None = None) -> str:
    """Lays out `dataset`'s downloads from `src` under `out` and checks the study's manifest (`manifest`
    overrides it: tests use a few of its rows); returns the summary line."""
    if dataset not in PREPARE:
        raise PrepareError(f"unknown dataset {dataset!r}; one of {', '.join(PREPARE)}")
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise PrepareError(f"--from {src}: not a directory")
    files = find_downloads(dataset, src, do_verify)
    out.mkdir(parents=True, exist_ok=True)
    if dataset == "imagenet":
        return prepare_imagenet(files, out)
    return PREPARE[dataset](files, out, str(manifest or study.manifest_path(dataset)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmcls_jax.data.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=sorted(PREPARE))
    parser.add_argument("--from", dest="src", required=True, help="folder with the downloaded archives")
    parser.add_argument("--out", required=True, help="folder to lay the images out in (the runs' data.image_root)")
    parser.add_argument("--no-verify", action="store_true", help="skip the size and checksum checks")
    args = parser.parse_args(argv)
    try:
        summary = prepare(args.dataset, args.src, args.out, do_verify=not args.no_verify)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary)
    extra = f" --config.data.manifest={Path(args.out) / study.IMAGENET_MANIFEST}" if args.dataset == "imagenet" else ""
    print(f"run: python -m vlmcls_jax.main --config configs/table1.py:{args.dataset} --workdir runs/table1_"
          f"{args.dataset} --config.data.image_root={args.out}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
