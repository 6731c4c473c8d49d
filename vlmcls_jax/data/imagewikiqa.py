"""ImageWikiQA (the study's Table 5): 2000 four-way multiple-choice questions about ImageNet validation images.

Reads the study's released `data/imagewikiqa.jsonl` (yuhui-zh15/VLMClassifier; one question a line):

    {"image": "images/ILSVRC2012_val_00039210.JPEG",
     "text": "Which position ...?\\nA. Fowler's position\\nB. ...\\nC. ...\\nD. ...\\nChoose A, B, C, or D.",
     "label": "C", "wiki": "<the Wikipedia sentence the question was written from>", "classname": "stretcher"}

The options are read the way the study's scorer reads them (`imagewikiqa/eval.ipynb`:
`text.split("\\n")[1:5]`, then `choice[3:]`): the question is the text's first line, and the options are the
lines after it that read "A. ...", "B. ...", ... (letters in order from A); whatever follows is the
instruction line. Questions are identified by their line number (images repeat: 1961 distinct images for
2000 questions, so the path is not an id).

Images missing on disk are not an error by default: they are counted and listed in the report, the questions
are kept, and the evaluator scores them as wrong (dropping them would raise the accuracy of a run that lacks
images). `require_images=True` refuses such a file instead.
"""

from __future__ import annotations

import dataclasses
import os
import re

from vlmcls_jax.data.sources import _relative_image_path, jsonl_objects, require_strings

REQUIRED_FIELDS = ("image", "text", "label", "classname")   # `wiki` is optional (not needed to score)
_OPTION_LINE = re.compile(r"([A-Z])\. (.*)")
MISSING_LISTED = 5                                         # missing image paths named in the report


@dataclasses.dataclass(frozen=True)
class ImageWikiQAQuestion:
    """One question. `id` is its line number in the file (1-based); `image` is the path joined to the image
    root (not checked to exist); `options` maps letters to option texts in order; `label` is a letter."""

    id: int
    image: str
    text: str
    options: dict[str, str] = dataclasses.field(hash=False)
    label: str
    wiki: str
    classname: str

    @property
    def question(self) -> str:
        """The question without its options and instruction (the text's first line)."""
        return self.text.split("\n", 1)[0]


def parse_options(text: str) -> dict[str, str]:
    """The options of a question text -> {"A": "...", "B": "...", ...}; ValueError saying what is wrong."""
    lines = text.split("\n")
    options = {}
    for n, line in enumerate(lines[1:], 2):
        m = _OPTION_LINE.fullmatch(line)
        if m is None:
            break
        letter = m.group(1)
        expected = chr(ord("A") + len(options))
        if letter != expected:
            raise ValueError(f"text line {n} is option {letter!r}, expected {expected!r} (options go A, B, C, ...)")
        if not m.group(2).strip():
            raise ValueError(f"option {letter} (text line {n}) is empty")
        options[letter] = m.group(2)
    if len(options) < 2:
        shown = lines[len(options) + 1] if len(lines) > len(options) + 1 else "<end of text>"
        raise ValueError(f"expected option lines 'A. ...', 'B. ...' after the question line; text line "
                         f"{len(options) + 2} is {shown!r}")
    return options


def read_imagewikiqa(path: str | os.PathLike, image_root: str | os.PathLike,
                     require_images: bool = False) -> tuple[list[ImageWikiQAQuestion], dict]:
    """The released JSONL -> (questions in file order, report).

    report: {"questions": N, "missing_images": k, "missing": [the first few missing image paths]}.
    Errors name file:line and the field: bad JSON, a missing or non-string field, options that cannot be
    parsed from `text`, a label that is not one of the options, an image path that is absolute or contains
    `..`. With `require_images`, a missing image is an error naming the first one. Blank lines are skipped.
    """
    path = os.fspath(path)
    root = os.path.abspath(os.fspath(image_root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image_root {root!r} is not a directory")
    questions, missing = [], []
    for n, where, row in jsonl_objects(path):
        require_strings(row, where, REQUIRED_FIELDS + (("wiki",) if "wiki" in row else ()))
        try:
            rel = _relative_image_path(row["image"])
        except ValueError as e:
            raise ValueError(f"{where}: field 'image': {e}") from None
        try:
            options = parse_options(row["text"])
        except ValueError as e:
            raise ValueError(f"{where}: field 'text': options not parseable: {e}") from None
        if row["label"] not in options:
            raise ValueError(f"{where}: field 'label': {row['label']!r} is not one of the options "
                             f"{', '.join(options)}")
        image = os.path.join(root, *rel.split("/"))
        if not os.path.isfile(image):
            if require_images:
                raise FileNotFoundError(f"{where}: field 'image': image file not found: {image!r}")
            missing.append(image)
        questions.append(ImageWikiQAQuestion(id=n, image=image, text=row["text"], options=options,
                                             label=row["label"], wiki=row.get("wiki", ""),
                                             classname=row["classname"]))
    if not questions:
        raise ValueError(f"{path}: the file has no questions")
    report = {"questions": len(questions), "missing_images": len(missing), "missing": missing[:MISSING_LISTED]}
    return questions, report
