"""Where evaluation examples come from: class lists, the study's JSONL manifests, class folders, TFDS.

    {name}_classes.json  --load_class_names / study_class_list-->  ClassList
    manifest.jsonl       --read_manifest(path, image_root, classes, split)-->  [Example]
    root/<class>/<img>   --read_folder(root, classes)-->  ([Example], ClassList)
    prepared TFDS split  --read_tfds(name, split, data_dir, classes)-->  TfdsSource (grain random access)

An `Example` carries an absolute image path, never pixels: whether the file exists is checked when it is
loaded (`preprocess.load_image`, which names the missing file), so manifests can be read and checked
without the images.

Class names and repeated names
------------------------------
A class list is a sequence of names; the index of a name is the class index. Names may repeat: CLIP's
ImageNet wording, which the study uses, has 1000 entries but 998 distinct names, because two pairs of
synsets got the same name ("missile": 657 and 744; "sunglasses": 836 and 837). The rule here:

    A name credits every class index that carries it. `correct_indices("missile") == (657, 744)`, and
    `is_correct("missile", i)` is True for i = 657 and for i = 744.

Text cannot tell the two classes apart, so a model that says "missile" gets an image of either class
right; the alternative (crediting only one index) would score a model on the class list's ambiguity,
not on what it sees. It is also what the study's code does: it compares predicted and true label *names*
(never indices), and draws candidate choices from `set(classes)`, i.e. over distinct names (`distinct()`).
Going from a name to a single index is ambiguous for such names, so `ClassList.index_of` refuses them,
and a manifest row labelled with a repeated name must give `label_idx` (ImageNet manifests do).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import posixpath
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

STUDY_DATASETS = ("imagenet", "flowers", "cars", "caltech")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def load_class_names(path: str | os.PathLike) -> list[str]:
    """A JSON list of non-empty strings (the study's `{name}_classes.json`). Errors name the file."""
    path = os.fspath(path)
    try:
        with open(path) as f:
            names = json.load(f)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"Class list file not found: {path!r}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(names, list):
        raise ValueError(f"{path}: expected a JSON list of class names, got a {type(names).__name__}")
    if not names:
        raise ValueError(f"{path}: the class list is empty")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise ValueError(f"{path}: entry {i} is {name!r}, not a non-empty string")
    return names


@dataclasses.dataclass(frozen=True)
class ClassList:
    """Class names; a name's position is its class index. Repeated names: see the module docstring."""

    names: tuple[str, ...]

    def __post_init__(self):
        names = tuple(self.names)
        if not names:
            raise ValueError("ClassList needs at least one class name")
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise ValueError(f"class name {i} is {name!r}, not a non-empty string")
        object.__setattr__(self, "names", names)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ClassList:
        return cls(tuple(load_class_names(path)))

    @functools.cached_property
    def _indices(self) -> dict[str, tuple[int, ...]]:
        indices: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            indices.setdefault(name, []).append(i)
        return {name: tuple(idx) for name, idx in indices.items()}

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._indices

    def distinct(self) -> tuple[str, ...]:
        """The distinct names, in order of first occurrence."""
        return tuple(self._indices)

    def repeated(self) -> dict[str, tuple[int, ...]]:
        """Names that occur more than once -> their indices."""
        return {name: idx for name, idx in self._indices.items() if len(idx) > 1}

    def correct_indices(self, name: str) -> tuple[int, ...]:
        """Every class index a predicted `name` is correct for: () when it is not a class name (a wrong
        answer, not an error), two or more indices for a repeated name. Matching is exact; normalising
        generated text is the metric's business."""
        return self._indices.get(name, ())

    def is_correct(self, predicted_name: str, true_index: int) -> bool:
        """Whether `predicted_name` is right for an example of class `true_index` (the repeated-name rule)."""
        if isinstance(true_index, bool) or not isinstance(true_index, (int, np.integer)) \
                or not 0 <= true_index < len(self.names):
            raise ValueError(f"true_index {true_index!r} is not a class index (0..{len(self.names) - 1})")
        return int(true_index) in self.correct_indices(predicted_name)

    def index_of(self, label: str) -> int:
        """The class index of `label`. Raises ValueError for an unknown name, and for a repeated name (it
        names several classes; say which by index, e.g. a manifest's `label_idx`)."""
        indices = self._indices.get(label)
        if indices is None:
            raise ValueError(f"unknown class name {label!r} (not among the {len(self.names)} classes)")
        if len(indices) > 1:
            raise ValueError(f"class name {label!r} is ambiguous: it names classes {list(indices)}")
        return indices[0]


def study_class_list(name: str, paper_data_dir: str | os.PathLike) -> ClassList:
    """The study's class list `{name}_classes.json` from its `data/` folder, for name in STUDY_DATASETS."""
    if name not in STUDY_DATASETS:
        raise ValueError(f"unknown study dataset {name!r}; valid names: {', '.join(STUDY_DATASETS)}")
    path = Path(paper_data_dir) / f"{name}_classes.json"
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} not found: paper_data_dir should be the study's data/ folder "
                                f"(holding {', '.join(f'{n}_classes.json' for n in STUDY_DATASETS)})")
    return ClassList.from_file(path)


@dataclasses.dataclass(frozen=True)
class Example:
    """One evaluation example. `id` is stable (the image path relative to its root for files); `image` is an
    absolute path, not checked for existence; `label` is the class index, `label_name` its name."""

    id: str
    image: str
    label: int
    label_name: str


def _relative_image_path(image: str) -> str:
    """A manifest's image path -> normalised POSIX path under the root; ValueError if it could escape."""
    if not image:
        raise ValueError("empty image path")
    if posixpath.isabs(image) or os.path.isabs(image) or image.startswith("\\") or re.match(r"^[A-Za-z]:", image):
        raise ValueError(f"image path {image!r} is absolute; it must be relative to image_root")
    if ".." in re.split(r"[/\\]", image):
        raise ValueError(f"image path {image!r} contains '..'; it must stay under image_root")
    rel = posixpath.normpath(image)
    if rel == ".":
        raise ValueError(f"image path {image!r} names the root itself, not a file")
    return rel


def jsonl_objects(path: str | os.PathLike) -> Iterator[tuple[int, str, dict]]:
    """(line number, "path:line", object) for each non-blank line of a JSONL file.  A line that is not valid
    JSON or not a JSON object is an error naming path:line."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e})") from e
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected a JSON object, got a {type(row).__name__}")
            yield n, where, row


def require_strings(row: dict, where: str, keys: Sequence[str], *, non_empty: bool = False) -> None:
    """Each of `keys` must be in `row` and hold a string (non-empty when asked); errors name where and the key."""
    for key in keys:
        if key not in row:
            raise ValueError(f"{where}: missing field {key!r}")
    for key in keys:
        if not isinstance(row[key], str) or (non_empty and not row[key].strip()):
            raise ValueError(f"{where}: field {key!r} is {row[key]!r}, not a {'non-empty ' if non_empty else ''}string")


def read_manifest(path: str | os.PathLike, image_root: str | os.PathLike, classes: ClassList,
                  split: str | None = None) -> list[Example]:
    """The study's JSONL manifest -> the examples of `split` (all rows when None), in file order.

    Each line is an object with `image` (a path relative to `image_root`, e.g. the study's
    "./data/Flowers102/jpg/image_00001.jpg", whose root is the folder holding `data/`), `label` (a class
    *name*, which must be in `classes`) and, when `split` is given, `split`. ImageNet manifests also have
    `label_idx`: then that index is the label, and `classes.names[label_idx]` must equal `label` (how rows of
    the two "missile"/"sunglasses" classes say which one they are); a repeated name without `label_idx` is an
    error. Other fields are ignored. Every row is checked, those of other splits too; errors name file:line:
    bad JSON, missing or mistyped fields, unknown labels, image paths that are absolute or contain `..`, and
    an image path (after normalisation) listed twice. Example ids are the normalised relative paths.
    Images are not opened: a missing file shows when it is loaded.
    """
    path = os.fspath(path)
    root = os.path.abspath(os.fspath(image_root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image_root {root!r} is not a directory")
    examples, seen, splits = [], {}, set()
    for n, where, row in jsonl_objects(path):
        required = ("image", "label") + (("split",) if split is not None else ())
        require_strings(row, where, required)
        try:
            rel = _relative_image_path(row["image"])
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if rel in seen:
            raise ValueError(f"{where}: image {rel!r} is already listed on line {seen[rel]}")
        seen[rel] = n
        label_name = row["label"]
        if label_name not in classes:
            raise ValueError(f"{where}: unknown label {label_name!r} (not in the class list)")
        if "label_idx" in row:
            idx = row["label_idx"]
            if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < len(classes):
                raise ValueError(f"{where}: label_idx {idx!r} is not a class index (0..{len(classes) - 1})")
            if classes.names[idx] != label_name:
                raise ValueError(f"{where}: label_idx {idx} is {classes.names[idx]!r} in the class list, "
                                 f"but the row's label is {label_name!r}")
            label = idx
        else:
            try:
                label = classes.index_of(label_name)
            except ValueError as e:
                raise ValueError(f"{where}: {e}; give label_idx") from None
        row_split = row.get("split")
        splits.add(row_split)
        if split is None or row_split == split:
            examples.append(Example(id=rel, image=os.path.join(root, *rel.split("/")), label=label,
                                    label_name=label_name))
    if not examples:
        if not seen:
            raise ValueError(f"{path}: the manifest has no rows")
        raise ValueError(f"{path}: no rows of split {split!r}; splits present: {sorted(map(str, splits))}")
    return examples


def _is_image_file(entry: os.DirEntry) -> bool:
    return entry.is_file() and not entry.name.startswith(".") and entry.name.lower().endswith(IMAGE_EXTENSIONS)


def read_folder(root: str | os.PathLike, classes: ClassList | None = None) -> tuple[list[Example], ClassList]:
    """A folder-per-class tree `root/<class name>/<image>` -> (examples, classes).

    Class folders are taken in sorted order (hidden ones and plain files at the top level are ignored); each
    folder's files with an extension in IMAGE_EXTENSIONS (any case) are taken in sorted order, sub-folders
    are not searched. Without `classes`, the class list is the sorted folder names; with it, every folder must
    be one of its names (unambiguously: see `ClassList.index_of`), and classes without a folder simply have
    no examples. An empty class folder is an error. Ids are "<class folder>/<file name>".
    """
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder root {root!r} is not a directory")
    folders = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not folders:
        raise ValueError(f"{root!r} has no class folders (expected root/<class name>/<image>)")
    if classes is None:
        classes = ClassList(tuple(folders))
    examples = []
    for folder in folders:
        try:
            label = classes.index_of(folder)
        except ValueError as e:
            raise ValueError(f"class folder {os.path.join(root, folder)!r}: {e}") from None
        files = sorted(e.name for e in os.scandir(os.path.join(root, folder)) if _is_image_file(e))
        if not files:
            raise ValueError(f"class folder {os.path.join(root, folder)!r} has no image files "
                             f"({', '.join(IMAGE_EXTENSIONS)})")
        examples.extend(Example(id=f"{folder}/{name}", image=os.path.join(root, folder, name), label=label,
                                label_name=folder) for name in files)
    return examples, classes


class TfdsSource:
    """grain random-access source over a prepared TFDS split: record i ->
    {"image": uint8[h, w, c] as TFDS decodes it, "label": int class index, "id": "<name>/<split>/<i>"}.
    `classes` is the ClassList the labels index."""

    def __init__(self, source: Sequence, classes: ClassList, name: str, split: str):
        self._source, self.classes, self.name, self.split = source, classes, name, split

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict:
        record = self._source[index]
        index = int(index) % len(self)
        return {"image": np.asarray(record["image"]), "label": int(record["label"]),
                "id": f"{self.name}/{self.split}/{index}"}

    def __repr__(self) -> str:
        return f"TfdsSource({self.name!r}, split={self.split!r}, {len(self)} records, {len(self.classes)} classes)"


def read_tfds(name: str, split: str, data_dir: str | os.PathLike, classes: ClassList | None = None) -> TfdsSource:
    """A split of a TFDS dataset already prepared in `data_dir` (array_record or parquet format), read with
    `tfds.data_source` (no TensorFlow needed). Never downloads or prepares: an unprepared dataset is a
    FileNotFoundError naming the dataset and `data_dir` (prepare it online first, e.g.
    `tfds build NAME --data_dir=DIR --file_format=array_record`).

    The dataset needs "image" and a class-label "label" feature. Class names are the label feature's names
    unless `classes` is given; then labels are read as indices into `classes` (positional: the counts must
    agree, the wording is not compared). TFDS's wording and order can differ from the study's: cars196 puts
    the year last ("AM General Hummer SUV 2000"), caltech101 has 102 classes (with "background_google",
    "faces" and "faces_easy") where the study has 100. `split` may be any TFDS split expression, e.g.
    "train+validation" for the study's Flowers102 train split.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"read_tfds needs a dataset name, got {name!r}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"read_tfds needs a split, got {split!r}")
    if data_dir is None:
        raise ValueError("read_tfds needs data_dir, the folder the dataset was prepared in")
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"TFDS data_dir {data_dir!r} (for dataset {name!r}) is not a directory")

    import tensorflow_datasets as tfds  # only here: importing it takes a while

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise FileNotFoundError(f"TFDS dataset {name!r} is neither a registered TFDS dataset nor prepared in "
                                f"data_dir {data_dir!r}") from e
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared in data_dir {data_dir!r} (no dataset_info.json in "
            f"{os.fspath(builder.data_path)!r}); this reader never downloads: prepare it online first, e.g. "
            f"`tfds build {name} --data_dir={data_dir} --file_format=array_record`")
    random_access = {tfds.core.FileFormat.ARRAY_RECORD, tfds.core.FileFormat.PARQUET}
    if builder.info.file_format not in random_access:
        raise ValueError(f"TFDS dataset {name!r} in {data_dir!r} is prepared as {builder.info.file_format.value}; "
                         "random access needs array_record (or parquet): rebuild it with "
                         f"`tfds build {name} --data_dir=DIR --file_format=array_record`")
    base_splits = {part.split("[")[0].strip() for part in split.split("+")}
    unknown = base_splits - set(builder.info.splits)
    if unknown:
        raise ValueError(f"TFDS dataset {name!r} in {data_dir!r} has no split {sorted(unknown)}; "
                         f"splits: {sorted(builder.info.splits)}")
    features = builder.info.features
    if "image" not in features or "label" not in features or not hasattr(features["label"], "names"):
        raise ValueError(f"TFDS dataset {name!r} needs an 'image' and a class-label 'label' feature; "
                         f"it has {sorted(features)}")
    label_names = tuple(features["label"].names)
    if classes is None:
        classes = ClassList(label_names)
    elif len(classes) != len(label_names):
        raise ValueError(f"TFDS dataset {name!r} has {len(label_names)} classes but the class list given has "
                         f"{len(classes)}; its labels cannot index that list")
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    return TfdsSource(source, classes, name, split)
