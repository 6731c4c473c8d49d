"""Open-world accuracy with synonyms (the study's Table 8): an answer counts as right when it contains the class
name or any WordNet synonym of the class (case-insensitive substring, the study's metric), where a class's
synonyms are the lemmas of its WordNet synset (ImageNet classes are WordNet noun synsets: wnid "n01440764" is
the noun synset at offset 01440764).

The synonyms file is built once from WordNet itself, with `nltk`'s WordNet reader (pip install nltk, then
`python -m nltk.downloader wordnet`, or --wordnet DIR: any folder holding the WordNet 3.0 database files):

    python -m vlmcls_jax.eval.synonyms --classes VLMClassifier/data/imagenet_classes.json \\
        --manifest VLMClassifier/data/imagenet.jsonl --out imagenet_synonyms.json
    # wnids from the manifest's (label_idx, imagenet_label) fields, or --wnids FILE (one a line, class order)

and then used by the eval job (`config.synonyms = "imagenet_synonyms.json"`), which adds the row
"VLM open world, ImageNet synonyms" computed from the open-world answers (no new generation).

File format: a JSON list aligned with the class list, [{"class": "tench", "wnid": "n01440764", "synonyms":
["tench", "Tinca tinca"]}, ...]: the class name first, then the synset's lemmas (underscores as spaces), each
once.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

from vlmcls_jax.eval import shards


def wordnet_reader(folder: str = ""):
    """nltk's WordNet reader over `folder` (the WordNet 3.0 database files), or nltk's installed WordNet."""
    try:
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as e:
        raise ImportError("building the synonyms file needs nltk: pip install nltk") from e
    if folder:
        import nltk
        folder = os.path.abspath(folder)
        if folder not in nltk.data.path:   # nltk reads corpora only under its data paths (nltk.pathsec)
            nltk.data.path.append(folder)

        class FolderReader(WordNetCorpusReader):
            def map_wn(self, version="wordnet"):
                # The stock reader maps a database of another version onto nltk's installed WordNet (for the
                # multilingual wordnets, which synonyms do not use), so it would need that installed as well.
                return None

        import warnings
        with warnings.catch_warnings():   # "multilingual functions are not available": not used here
            warnings.simplefilter("ignore", UserWarning)
            return FolderReader(folder, None)
    from nltk.corpus import wordnet
    try:
        wordnet.ensure_loaded()
    except LookupError as e:
        raise LookupError("nltk's WordNet data is not installed: run `python -m nltk.downloader wordnet` once, "
                          "or pass --wordnet DIR (a folder with the WordNet 3.0 database files)") from e
    return wordnet


def build_synonyms(reader, wnids: Sequence[str], class_names: Sequence[str]) -> list[dict]:
    """One entry per class (see the module docstring).  wnids[i] is class i's WordNet id."""
    if len(wnids) != len(class_names):
        raise ValueError(f"{len(wnids)} wnids for {len(class_names)} classes")
    for i, (wnid, name) in enumerate(zip(wnids, class_names)):
        if len(wnid) != 9 or wnid[0] != "n" or not wnid[1:].isdigit():
            raise ValueError(f"class {i} ({name!r}): {wnid!r} is not a WordNet noun id like n01440764")
    entries = []
    for i, (wnid, name) in enumerate(zip(wnids, class_names)):
        synset = reader.synset_from_pos_and_offset("n", int(wnid[1:]))
        if synset is None:
            raise ValueError(f"class {i} ({name!r}): WordNet has no noun synset {wnid} (is it WordNet 3.0?)")
        lemmas = [lemma.replace("_", " ") for lemma in synset.lemma_names()]
        entries.append({"class": name, "wnid": wnid, "synonyms": list(dict.fromkeys([name] + lemmas))})
    return entries


def wnids_from_manifest(path: str, num_classes: int) -> list[str]:
    """Class i's wnid from the study's ImageNet manifest fields label_idx and imagenet_label."""
    found: dict[int, str] = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            record = json.loads(line)
            if "label_idx" not in record or "imagenet_label" not in record:
                raise ValueError(f"{path}:{n}: needs label_idx and imagenet_label (the study's imagenet.jsonl)")
            index, wnid = int(record["label_idx"]), record["imagenet_label"]
            if found.setdefault(index, wnid) != wnid:
                raise ValueError(f"{path}:{n}: class {index} is {wnid}, earlier lines say {found[index]}")
    missing = [i for i in range(num_classes) if i not in found]
    if missing:
        raise ValueError(f"{path}: no example of classes {missing[:10]}{'...' if len(missing) > 10 else ''}")
    return [found[i] for i in range(num_classes)]


def load_synonyms(path: str, class_names: Sequence[str]) -> list[list[str]]:
    """The synonyms of each class, checked against the eval's class list (same length, same names)."""
    with open(path) as f:
        entries = json.load(f)
    if not isinstance(entries, list) or len(entries) != len(class_names):
        raise ValueError(f"{path}: expected a list of {len(class_names)} entries (one per class), got "
                         f"{len(entries) if isinstance(entries, list) else type(entries).__name__}")
    for i, (entry, name) in enumerate(zip(entries, class_names)):
        if entry.get("class") != name or not entry.get("synonyms"):
            raise ValueError(f"{path}: entry {i} is {entry.get('class')!r} with {entry.get('synonyms')!r}; the "
                             f"class list has {name!r} there (rebuild the file from this class list)")
    return [list(e["synonyms"]) for e in entries]


def synonym_match(output: str, synonyms: Sequence[str]) -> bool:
    """The output names the class or any synonym (case-insensitive substring)."""
    text = output.lower()
    return any(s.lower() in text for s in synonyms)


def synonym_accuracy(out_path: str, examples: Sequence, synonyms: Sequence[Sequence[str]]) -> dict:
    """{"examples", "substring_accuracy" (with synonyms), "without_synonyms", "gained"} over the open-world
    records in `out_path` (all its process parts; `vlm_generation.evaluate_generation` wrote them)."""
    _, count = shards.resolve(None)
    records, missing = shards.gather(out_path, count, examples)
    if missing:
        raise RuntimeError(f"{out_path}: {missing} examples have no open-world answer")
    right = [synonym_match(r["output"], synonyms[r["label"]]) for r in records]
    n = max(len(records), 1)
    return {"examples": len(records), "substring_accuracy": sum(right) / n,
            "without_synonyms": sum(r["substring_match"] for r in records) / n,
            "gained": sum(a and not r["substring_match"] for a, r in zip(right, records))}


def main(argv: Sequence[str] | None = None) -> None:
    from vlmcls_jax.data.sources import load_class_names
    parser = argparse.ArgumentParser(description="Build the class -> WordNet synonyms file (Table 8).")
    parser.add_argument("--classes", required=True, help="the class list (JSON list of names)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="the study's imagenet.jsonl (label_idx, imagenet_label)")
    source.add_argument("--wnids", help="a text file: one wnid a line, in class order")
    parser.add_argument("--wordnet", default="", help="folder of WordNet 3.0 database files (default: nltk's)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    names = load_class_names(args.classes)
    if args.manifest:
        wnids = wnids_from_manifest(args.manifest, len(names))
    else:
        with open(args.wnids) as f:
            wnids = [line.strip() for line in f if line.strip()]
    entries = build_synonyms(wordnet_reader(args.wordnet), wnids, names)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(entries, f, indent=1)
    extra = sum(len(e["synonyms"]) - 1 for e in entries)
    print(f"{args.out}: {len(entries)} classes, {extra} synonyms besides the class names")


if __name__ == "__main__":
    main()


def row_name(open_row: str, dataset: str) -> str:
    """The eval table's row for an open-world row counted with synonyms ("VLM open world, ImageNet synonyms")."""
    return f"{open_row}, {'ImageNet' if dataset == 'imagenet' else dataset} synonyms"
