"""Training records in LLaVA's format for the study's fine-tuning recipes (Table 3 right, Table 4, Table 5).

    manifest JSONL {"image", "label", "split"} --classification_records--> "<image>\\n" + FINETUNE_QUESTION -> label
    captions JSONL {"image", "caption"}        --caption_records-->        "<image>\\n" + CAPTION_QUESTION -> caption
    LLaVA JSON (e.g. llava_v1_5_mix665k.json)  --pipeline.read_records-->  as it is
    several record lists                       --mix_records(seed=MIX_SEED)--> concatenated, ids unique, shuffled

The study builds its files in `training_analysis/llava/prepare_data.ipynb` (yuhui-zh15/VLMClassifier, commit
24544323): cell 1 writes the classification records, cell 3 the ImageNet + LLaVA-665K mixture.  Build a file once
with the CLI and point `config.data.train_json` at it, or let the trainer build the records from the config
(`trainer.training_records`):

    python -m vlmcls_jax.data.finetune_data classification data/imagenet.jsonl --split train --out imagenet_train.json
    python -m vlmcls_jax.data.finetune_data caption flowers_captions.jsonl --out flowers_caption.json
    python -m vlmcls_jax.data.finetune_data mix imagenet_train.json llava_v1_5_mix665k.json --seed 1234 --out mix.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import tempfile
from collections.abc import Iterator, Sequence

from vlmcls_jax.data.conversation import classification_record
from vlmcls_jax.data.prompts import FINETUNE_QUESTION, IMAGE_TOKEN
from vlmcls_jax.data.sources import jsonl_objects, require_strings

# FINETUNE_QUESTION: prepare_data.ipynb cell 1: {"from": "human", "value": "<image>\nWhat type of object is in the
# photo?"}, and the bare label as the answer.  Note "the photo": the zero-shot prompt (prompts.OPEN_QUESTION)
# says "this photo".  Defined in data.prompts (the fine-tuned models' evaluation asks it too).

# The caption template of the paper (Zhang et al. 2024, appendix on caption-style data, Table 4): "<image> Generate
# a caption for the image."  The repository does not contain it (finetune_caption.sh trains on
# `flowers_llava_train_caption.json`, which no released code writes).  The human turn is `<image>\n{question}` as in
# every LLaVA record the study writes (prepare_data.ipynb); the paper's space after `<image>` is taken as
# typography.  LLaVA's own brief-caption instruction (LLaVA paper appendix), the default before, is an option:
CAPTION_QUESTION = "Generate a caption for the image."
LLAVA_CAPTION_QUESTION = "Describe the image concisely."
# The mixture's shuffle seed: prepare_data.ipynb cell 3, `random.seed(1234); random.shuffle(imagenet + llava)`.
MIX_SEED = 1234
# (FINETUNE_QUESTION, CAPTION_QUESTION and MIX_SEED are the train job's defaults: vlmcls_jax.defaults reads them
# here, so this module imports nothing heavy at the top: `pipeline.read_records` (grain, jax) only in `main`.)


def _jsonl_rows(path: str, required: Sequence[str]) -> Iterator[tuple[int, dict]]:
    """(line number, row) for each non-blank line; each `required` field must be a non-empty string.
    Errors name path:line and the field."""
    for n, where, row in jsonl_objects(path):
        require_strings(row, where, required, non_empty=True)
        yield n, row


def classification_records(manifest_path: str, split: str | None, *, question: str = FINETUNE_QUESTION,
                           answer_template: str = "{}") -> list[dict]:
    """The study's classification records from a manifest JSONL of {"image", "label", "split"}, in file order.

    Human turn `<image>\\n{question}`, answer `answer_template.format(label)` (the bare class name by default, as
    the study).  Rows of other splits are skipped; a row without `split` belongs to every split, and
    `split=None` takes every row.  Ids are `{file name}:{line}`, stable whatever the order or split.  Unlike the
    study, the records are not shuffled here (the input pipeline shuffles every epoch; `mix_records` shuffles).
    Raises ValueError naming file:line for bad JSON or a missing/empty `image` or `label`, and naming the split
    when no row has it."""
    name = os.path.basename(manifest_path)
    records = [classification_record(row["image"], row["label"], question=question,
                                     answer_template=answer_template, record_id=f"{name}:{n}")
               for n, row in _jsonl_rows(manifest_path, ("image", "label"))
               if split is None or row.get("split", split) == split]
    if not records:
        raise ValueError(f"{manifest_path}: no rows with split={split!r}")
    return records


def caption_records(caption_jsonl: str, *, question: str = CAPTION_QUESTION) -> list[dict]:
    """Caption records from a JSONL of {"image", "caption"}: human `<image>\\n{question}`, answer the caption.

    The study's LLaVA caption data (Table 4, finetune_caption.sh) is not released, so the captions are the
    user's; the question defaults to the paper's template `CAPTION_QUESTION` ("Generate a caption for the
    image."); `LLAVA_CAPTION_QUESTION` or any other wording is an option.  Ids are `{file name}:{line}`.  Errors name
    file:line and the field."""
    name = os.path.basename(caption_jsonl)
    records = [{"id": f"{name}:{n}", "image": row["image"], "conversations": [
                   {"from": "human", "value": f"{IMAGE_TOKEN}\n{question}"},
                   {"from": "gpt", "value": row["caption"]}]}
               for n, row in _jsonl_rows(caption_jsonl, ("image", "caption"))]
    if not records:
        raise ValueError(f"{caption_jsonl}: no caption rows")
    return records


@dataclasses.dataclass(frozen=True)
class Mixture:
    """`records`: the mixed records; `counts[i]`: how many came from the i-th list; `renamed`: ids changed to
    stay unique."""
    records: list[dict]
    counts: tuple[int, ...]
    renamed: int

    def summary(self, names: Sequence[str] | None = None) -> str:
        names = names or [f"list {i}" for i in range(len(self.counts))]
        parts = ", ".join(f"{n} {c}" for n, c in zip(names, self.counts))
        return f"{len(self.records)} records ({parts}; {self.renamed} ids prefixed to stay unique)"


def concat_records(*record_lists: Sequence[dict]) -> Mixture:
    """Concatenates the lists in order, keeping ids unique across them.

    A record whose id already occurs in an *earlier* list is copied with the id `{list index}:{id}` (the inputs
    are never modified); if that id is taken too, ValueError names it.  Repeats inside one list are left as they
    are (LLaVA's own files are not checked for unique ids, and its trainer does not need them); records without
    an id keep having none."""
    out, seen, renamed = [], set(), 0
    for i, records in enumerate(record_lists):
        here = set()
        for record in records:
            rid = record.get("id")
            if rid is not None and rid in seen:
                new = f"{i}:{rid}"
                if new in seen:
                    raise ValueError(f"record id {rid!r} of list {i} repeats an earlier list's id, and {new!r} "
                                     "is taken too")
                record, rid, renamed = {**record, "id": new}, new, renamed + 1
            if rid is not None:
                here.add(rid)
            out.append(record)
        seen |= here
    return Mixture(out, tuple(len(r) for r in record_lists), renamed)


def mix_records(*record_lists: Sequence[dict], seed: int = MIX_SEED) -> Mixture:
    """The study's mixture: concatenate (ids kept unique, see `concat_records`), then `random.Random(seed)
    .shuffle` -- prepare_data.ipynb cell 3 does `random.seed(1234); random.shuffle(imagenet + llava)`, a plain
    concatenation with no reweighting or subsampling.  The same lists and seed give the same order."""
    mixture = concat_records(*record_lists)
    random.Random(seed).shuffle(mixture.records)
    return mixture


def write_records(records: Sequence[dict], path: str) -> None:
    """Writes a JSON list of records, one per line (LLaVA's JSON format, read back by `pipeline.read_records`),
    atomically: a temporary file in the same folder, renamed over `path` when complete."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmcls_jax.data.finetune_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cls = sub.add_parser("classification", help="manifest JSONL {image, label, split} -> classification records")
    cls.add_argument("manifest")
    cls.add_argument("--split", default="train", help="rows of this split ('all' for every row)")
    cls.add_argument("--question", default=FINETUNE_QUESTION)
    cls.add_argument("--answer-template", default="{}", help="answer text; {} is the class name")
    cap = sub.add_parser("caption", help="JSONL {image, caption} -> caption records")
    cap.add_argument("captions")
    cap.add_argument("--question", default=CAPTION_QUESTION)
    mix = sub.add_parser("mix", help="LLaVA JSON/JSONL files -> one shuffled mixture (the study's Table 5 data)")
    mix.add_argument("inputs", nargs="+")
    mix.add_argument("--seed", type=int, default=MIX_SEED)
    for p in (cls, cap, mix):
        p.add_argument("--out", required=True, help="output JSON file")
    args = parser.parse_args(argv)

    if args.command == "classification":
        records = classification_records(args.manifest, None if args.split == "all" else args.split,
                                         question=args.question, answer_template=args.answer_template)
        summary = f"{len(records)} records"
    elif args.command == "caption":
        records = caption_records(args.captions, question=args.question)
        summary = f"{len(records)} records"
    else:
        from vlmcls_jax.data.pipeline import read_records
        mixture = mix_records(*(read_records(p) for p in args.inputs), seed=args.seed)
        records, summary = mixture.records, mixture.summary(args.inputs)
    write_records(records, args.out)
    print(f"{args.command}: {summary} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
