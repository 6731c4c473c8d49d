"""How often each class name occurs in LLaVA's training text: the counts behind the study's Figure 3.

    python -m vlmcls_jax.analysis.frequency --data blip_laion_cc_sbu_558k.json llava_v1_5_mix665k.json \
        --classes imagenet_classes.json --out imagenet_counts.json

Input: LLaVA-format training files, a JSON list (or JSON lines) of records
`{"id", "image"?, "conversations": [{"from": "human" | "gpt", "value": str}, ...]}`, read as a stream.

The counting rule (the study's `data_analysis/tokenize.ipynb`, cells 1, 3 and 5)
-------------------------------------------------------------------------------
The study tokenises every class name with `nltk.word_tokenize(name.lower())` and counts, for each class,
the sentences whose token list contains the name's tokens contiguously (`is_sublist` in cell 1: is
"##" + "##".join(name) + "##" a substring of "##".join(sentence)?), once per sentence. Taken literally, so
also here by default:

- Lowercase; no stemming or plural handling ("goldfishes" does not count for "goldfish"); a name is not
  matched inside a longer token ("cat" never matches "category", nor "hen" "hens").
- A name spanning two sentences does not count; a sentence containing a name twice counts once; a name
  inside another's occurrence counts too ("white shark" in "a great white shark swims").
- The sentence's token string is *not* padded, so a name must have a token before and after it in its
  sentence: a name that is the first or the last token of its sentence is not counted ("Goldfish in a
  tank." and "a photo of a goldfish" count nothing; "A goldfish." counts). This looks unintended, and it
  drops many un-punctuated pretraining captions; `count_edges=True` (`--count-edges`) counts those too.
- Repeated names (ImageNet's "missile" and "sunglasses" each name two classes) get one count, given to
  every class index that carries the name. The study's loop adds the count once per list entry, so its
  dict holds twice the sentence count for such names; we do not double.

What the notebook does not show, and what is done here instead
---------------------------------------------------------------
The study's sentences come from `tokenized_sentences_{pretrain,instruct}.json`, made by a step it does not
publish. Here: every turn counts, human and gpt alike (`roles` restricts it, e.g. `--roles gpt`); each turn
is split into sentences, then lowercased and tokenised; LLaVA's `<image>` placeholder is removed first
(NLTK would make it the tokens `< image >`); turns never join into one sentence.

NLTK is not a dependency (its sentence splitter also needs the punkt model, a download), so the tokeniser is
a regex version of what `word_tokenize` does (`--counting study`, `analysis.frequency_study`, counts with
NLTK's own tokenizers and the study's notebook rules instead: the `study` extra):

- Words: NLTK's `NLTKWordTokenizer` (Treebank) rules on lowercased text: brackets, quotes, `; @ # $ % & * ? !`,
  unicode quotes and dashes, `--` and `...` are tokens; `,` and `:` are tokens unless a digit follows
  ("1,000"); clitics split off ("geoffroy's" -> "geoffroy 's", "don't" -> "do n't", "cannot" -> "can not");
  hyphens, slashes and inner periods stay in the word ("t-shirt", "c/v", "16.4", "st.", "e.g."). On single
  sentences this matches `word_tokenize(s, preserve_line=True)` (nltk 3.10: equal on 11,482 sentences of
  ImageWikiQA text, the study's four class lists and random punctuation, but for a leading run of
  backticks); the token text of quotes differs (NLTK writes `` and ''), which no class name contains.
- Sentences (a Punkt-like rule; Punkt itself learned its abbreviations and capitalisation statistics from a
  corpus): a sentence ends after `?` or `!` runs, and after `.`, when followed (after any closing quotes or
  brackets) by whitespace or the end of the turn. Not after a `.` that ends an abbreviation (mr, mrs, ms,
  dr, prof, st, jr, sr, vs, inc, ltd, co, corp), a single letter or a dotted abbreviation ("j.", "e.g.",
  "u.s."), or a number followed by a lowercase word ("1. the"); an ellipsis ends a sentence only before a
  capitalised word or at the end of the turn. Splitting runs on the original case, then text is lowercased.
  Where Punkt knows other abbreviations or reads capitalisation differently, sentence edges (and so the
  edge rule above) can differ; a name can also be unmatchable when its own period splits it, as NLTK splits
  it (Stanford Cars' "... Conv. Convertible"); `FrequencyCounter.unmatchable` lists such names.

Speed: every sentence is tokenised once (regex passes over batches of records), its token set is
intersected with the names' first tokens, and only names starting with a present token are tested by
substring search on the sentence's space-joined tokens; names x sentences is never looped.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from vlmcls_jax.data.sources import load_class_names

_READ_CHARS = 1 << 20
_MAX_RECORD_CHARS = 1 << 26  # a JSON-list record still unparsable with this much text after it is bad JSON
_BREAK = "\x00"  # sentence-break marker inside a batch (removed from input text first)

_CLOSERS = re.escape("\"')]}>»”’")
_SPLIT_CHARS = re.escape(";@#$%&*\"()[]{}<>«“‘„»”’") + "\u2012-\u2015"
_ABBREVIATIONS = ("mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "inc", "ltd", "co", "corp")
_NOT_ABBREVIATION = "".join(
    r"(?<!\b" + "".join(f"[{c}{c.upper()}]" for c in word) + r"\.)" for word in _ABBREVIATIONS)
# One pass over original-case text finds sentence ends (the punctuation run that closes a sentence, with its
# closing quotes and brackets) and Treebank's punctuation tokens. It starts with a character set, so `re`
# scans quickly; the branch is told apart by lookbehind on the first character.
_PUNCTUATION_RE = re.compile(
    rf"[.!?:,{_SPLIT_CHARS}](?:"
    rf"(?<=[!?])(?<![!?].)[.!?]*(?P<end>)[{_CLOSERS}]*(?=\s)"       # ? ! ?! ?. ending a sentence
    r"|(?<=\.)(?<![.!?].)(?:"                                         # a run starting with "." ending one:
    rf"\.+[.!?]*(?=[{_CLOSERS}]*\s+[A-Z]|[{_CLOSERS}\s]*{_BREAK})"   #   an ellipsis before a capital / at the end
    rf"|(?=[{_CLOSERS}\s]*{_BREAK})"                                  #   a turn's final period
    rf"|{_NOT_ABBREVIATION}(?<!\b[^\W\d_]\.)(?!(?<=\d\.)[{_CLOSERS}]*\s+[a-z])"  # a period, unless ...
    rf")(?P<period_end>)[{_CLOSERS}]*(?=\s)"
    r"|(?<=\.)(?<!\..)\.+"                                            # an ellipsis inside a sentence
    r"|(?<=[:,])(?:[:,]|(?=\D))"                                      # , : (not before a digit; as Treebank,
    r"|(?<![.:,]))")                                                  #   a next , or : is taken along); others
_RUNS_RE = re.compile(r"--|''|`+")  # only when such a run is present
_RUN_PIECE_RE = re.compile(r"\.+|.")
# Apostrophes, on lowercased text: a clitic or closing quote is split from the word before it ("dog 's",
# "dogs '"); an opening quote from the word after it ("' hello"). n't separately.
_APOSTROPHE_RE = re.compile(r"'(?:(?<=[^'\s]')(?:s|m|d|ll|re|ve)?(?=\s)(?P<close>)"
                            r"|(?<!\w')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w))")
_NOT_RE = re.compile(r"n't(?<=[^'\s]n't)(?=\s)")
_CONTRACTION_HINTS = ("cannot", "'ye", "gimme", "gonna", "gotta", "lemme", "more'n", "wanna")
_CONTRACTION_RE = re.compile(r"\b(?:(can)(not)|(d)('ye)|(gim)(me)|(gon)(na)|(got)(ta)|(lem)(me)|(more)('n))\b"
                             r"|\b(wan)(na)(?=\s)")


@functools.lru_cache(maxsize=4096)
def _sentence_end(run: str) -> str:
    """A sentence-closing run such as '.', '?!' or '.")' -> its tokens and a break (dots stay together)."""
    return f" {' '.join(_RUN_PIECE_RE.findall(run))} {_BREAK} "


def _mark_punctuation(match: re.Match) -> str:
    run = match.group()
    if match.lastindex:  # the (empty) group "end" or "period_end" took part: a sentence ends here
        return _sentence_end(run)
    if len(run) == 2 and run[0] in ":,":
        return f" {run[0]} {run[1]}"
    return f" {run} "


def _mark_apostrophe(match: re.Match) -> str:
    if match.start("close") >= 0:
        return f" {match.group()}"
    before = match.string[match.start() - 1] if match.start() else " "
    return "' " if before.isspace() else " ' "  # Treebank splits an opening quote after a non-space too


def _split_contraction(match: re.Match) -> str:
    return f" {' '.join(part for part in match.groups() if part)} "


def _tokenize_batch(text: str) -> list[str]:
    """Text whose turn ends are marked with _BREAK -> one string of space-separated lowercase tokens per
    sentence (some may be empty)."""
    if "<image>" in text:
        text = text.replace("<image>", " ")
    text = _PUNCTUATION_RE.sub(_mark_punctuation, text).lower()
    if "--" in text or "''" in text or "`" in text:
        text = _RUNS_RE.sub(r" \g<0> ", text)
    if "'" in text:
        text = _APOSTROPHE_RE.sub(_mark_apostrophe, text)
        if "n't" in text:
            text = _NOT_RE.sub(r" n't", text)
    if any(hint in text for hint in _CONTRACTION_HINTS):
        text = _CONTRACTION_RE.sub(_split_contraction, text)
    return text.split(_BREAK)


def tokenize(text: str) -> list[list[str]]:
    """`text` (one turn) -> its sentences, each a list of lowercase tokens (the rule in the module doc)."""
    text = text.replace(_BREAK, " ")
    return [tokens for piece in _tokenize_batch(f"{text} {_BREAK} ") if (tokens := piece.split())]


def iter_records(path: str | os.PathLike) -> Iterator[dict]:
    """Records of a JSON list (streamed: memory stays small) or a JSON-lines file. Errors name the file
    and the record index (0-based, in file order)."""
    path = os.fspath(path)
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"Training data file not found: {path!r}") from e
    with f:
        head = f.read(_READ_CHARS)
        first = head.lstrip()[:1]
        if first == "[":
            yield from _iter_json_list(f, head, path)
        elif first == "{":
            f.seek(0)
            yield from _iter_json_lines(f, path)
        elif first:
            raise ValueError(f"{path}: expected a JSON list of records or JSON lines, found {first!r}")


def _iter_json_list(f, buf: str, path: str) -> Iterator:
    decoder, space = json.JSONDecoder(), re.compile(r"\s*")
    pos, index, want_value = buf.index("[") + 1, 0, True
    while True:
        pos = space.match(buf, pos).end()
        if pos == len(buf):
            buf, pos = f.read(_READ_CHARS), 0
            if not buf:
                raise ValueError(f"{path}: the JSON list is not closed (the file ends after {index} records)")
            continue
        char = buf[pos]
        if char == "]" and (index == 0 or not want_value):
            if (buf[pos + 1:] + f.read()).strip():
                raise ValueError(f"{path}: unexpected data after the JSON list")
            return
        if not want_value:
            if char != ",":
                raise ValueError(f"{path}: after record {index - 1}: expected ',' or ']', found {char!r}")
            pos, want_value = pos + 1, True
            continue
        try:
            record, pos = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError as e:  # a record cut by the buffer's end, or bad JSON
            more = f.read(max(_READ_CHARS, len(buf))) if len(buf) - pos < _MAX_RECORD_CHARS else ""
            if not more:
                raise ValueError(f"{path}: record {index}: invalid JSON ({e.msg})") from None
            buf, pos = buf[pos:] + more, 0
            continue
        yield record
        index, want_value = index + 1, False


def _iter_json_lines(f, path: str) -> Iterator:
    index = 0
    for line_number, line in enumerate(f, 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: record {index} (line {line_number}): invalid JSON ({e.msg})") from None
            yield record
            index += 1


def _turn_texts(record, roles: frozenset[str] | None, source: str, index: int, out: list[str]) -> None:
    """Appends the texts of `record`'s turns (those whose "from" is in roles; all when roles is None)."""
    if not isinstance(record, dict):
        raise ValueError(f"{source}: record {index} is {type(record).__name__}, not an object")
    turns = record.get("conversations")
    if not isinstance(turns, list):
        raise ValueError(f"{source}: record {index} (id {record.get('id')!r}) has no 'conversations' list")
    for j, turn in enumerate(turns):
        value = turn.get("value") if isinstance(turn, dict) else None
        if not isinstance(value, str):
            raise ValueError(f"{source}: record {index} (id {record.get('id')!r}): conversations[{j}] 'value' "
                             f"is {type(value).__name__}, not a string")
        if roles is None or turn.get("from") in roles:
            out.append(value)


@dataclasses.dataclass(frozen=True)
class FrequencyCounts:
    """counts: int64[C], aligned with class_names (a repeated name's count is given to each of its indices);
    by_name: name -> count; records / sentences: how many were read / counted; files: paths read."""

    class_names: tuple[str, ...]
    counts: np.ndarray
    by_name: dict[str, int]
    records: int
    sentences: int
    files: tuple[str, ...]


class FrequencyCounter:
    """Accumulates class-name sentence counts over sources (paths or iterables of records).

    class_names: the class list (index = class index). roles: count turns whose "from" is one of these;
    None (default) counts every turn. count_edges: also count names at a sentence's first or last token
    (the study does not; see the module docstring).
    """

    def __init__(self, class_names: Sequence[str], *, roles: Iterable[str] | None = None,
                 count_edges: bool = False, batch_turns: int = 4096):
        self.class_names = tuple(class_names)
        self.roles = None if roles is None else frozenset([roles] if isinstance(roles, str) else roles)
        self.count_edges = count_edges
        self.batch_turns = batch_turns
        indices: dict[str, list[int]] = {}
        unmatchable = []
        for i, name in enumerate(self.class_names):
            sentences = tokenize(name)
            if not sentences:
                raise ValueError(f"class {i} ({name!r}) has no tokens to count")
            if len(sentences) > 1:
                unmatchable.append(name)
            indices.setdefault(" ".join(t for s in sentences for t in s), []).append(i)
        self.unmatchable = tuple(unmatchable)
        self._indices = list(indices.values())
        self._by_first: dict[str, list[tuple[int, str]]] = {}
        for d, key in enumerate(indices):
            self._by_first.setdefault(key.split(" ", 1)[0], []).append((d, f" {key} "))
        self._firsts = frozenset(self._by_first)
        self._counts = [0] * len(self._indices)
        self.records = self.sentences = 0
        self.files: list[str] = []

    def add(self, source: str | os.PathLike | Iterable[dict], name: str = "<records>") -> None:
        """Counts a file (JSON list or JSON lines) or an iterable of records (`name` labels its errors)."""
        if isinstance(source, (str, os.PathLike)):
            name = os.fspath(source)
            source = iter_records(name)
            self.files.append(name)
        texts: list[str] = []
        records = 0
        for index, record in enumerate(source):
            _turn_texts(record, self.roles, name, index, texts)
            records += 1
            if len(texts) >= self.batch_turns:
                self._count(texts)
                texts = []
        self._count(texts)
        self.records += records

    def _count(self, texts: list[str]) -> None:
        if not texts:
            return
        joined = f" {_BREAK} ".join(texts)
        if joined.count(_BREAK) != len(texts) - 1:
            joined = f" {_BREAK} ".join(t.replace(_BREAK, " ") for t in texts)
        firsts, by_first, counts, edges = self._firsts, self._by_first, self._counts, self.count_edges
        sentences = 0
        for piece in _tokenize_batch(f"{joined} {_BREAK} "):
            tokens = piece.split()
            if not tokens:
                continue
            sentences += 1
            present = firsts.intersection(tokens)
            if present:
                line = f" {' '.join(tokens)} " if edges else " ".join(tokens)
                for first in present:
                    for d, needle in by_first[first]:
                        if needle in line:
                            counts[d] += 1
        self.sentences += sentences

    def result(self) -> FrequencyCounts:
        counts = np.zeros(len(self.class_names), np.int64)
        for d, indices in enumerate(self._indices):
            counts[indices] = self._counts[d]
        return FrequencyCounts(self.class_names, counts,
                               {name: int(counts[i]) for i, name in enumerate(self.class_names)},
                               self.records, self.sentences, tuple(self.files))


def count_class_frequency(source: str | os.PathLike | Iterable[dict], class_names: Sequence[str], *,
                          roles: Iterable[str] | None = None, count_edges: bool = False) -> FrequencyCounts:
    """Class-name sentence counts in one source: a path (JSON list / JSON lines) or an iterable of records."""
    counter = FrequencyCounter(class_names, roles=roles, count_edges=count_edges)
    counter.add(source)
    return counter.result()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmcls_jax.analysis.frequency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True, help="LLaVA-format JSON list / JSON-lines files")
    parser.add_argument("--classes", required=True, help="JSON list of class names")
    parser.add_argument("--out", required=True, help="output JSON: class_names, counts, files, records, ...")
    parser.add_argument("--roles", nargs="+", default=None, help="count only these turns (default: all)")
    parser.add_argument("--count-edges", action="store_true",
                        help="also count names at a sentence's first or last token (the study does not)")
    parser.add_argument("--counting", choices=("regex", "study"), default="regex",
                        help="regex: this module's NLTK-free counter; study: the study's notebook with NLTK's own "
                             "tokenizers (analysis.frequency_study; the `study` extra)")
    parser.add_argument("--instruct-data", nargs="*", default=[],
                        help="with --counting study: instruction-tuning files, added to the --data (pretraining) "
                             "counts over the pretraining names only, as the study's correlation.ipynb")
    args = parser.parse_args(argv)
    if args.counting == "study":
        return _main_study(args)
    if args.instruct_data:
        parser.error("--instruct-data is for --counting study (the regex counter sums every --data file)")

    start = time.perf_counter()
    counter = FrequencyCounter(load_class_names(args.classes), roles=args.roles, count_edges=args.count_edges)
    if counter.unmatchable:
        print(f"note: these names span a sentence break and can never be counted: {list(counter.unmatchable)}",
              file=sys.stderr)
    for path in args.data:
        counter.add(path)
    result = counter.result()
    seconds = time.perf_counter() - start
    with open(args.out, "w") as f:
        json.dump({"class_names": list(result.class_names), "counts": result.counts.tolist(),
                   "files": list(result.files), "records": result.records, "sentences": result.sentences,
                   "seconds": round(seconds, 3), "roles": None if args.roles is None else list(args.roles),
                   "count_edges": args.count_edges}, f, indent=1)
    top = sorted(result.by_name.items(), key=lambda kv: -kv[1])[:10]
    print(f"{result.records} records, {result.sentences} sentences in {seconds:.1f} s -> {args.out}; "
          f"most frequent: {', '.join(f'{n} ({c})' for n, c in top)}")
    return 0


def _main_study(args) -> int:
    from vlmcls_jax.analysis import frequency_study as fs
    if args.count_edges:
        raise SystemExit("--count-edges is not the study's rule; it has no --counting study form")
    start = time.perf_counter()
    names = load_class_names(args.classes)
    counters = []
    for files in (args.data, args.instruct_data):
        counter = fs.StudyFrequencyCounter(names, roles=args.roles)
        for path in files:
            counter.add(path)
        counters.append(counter)
    pretrain, instruct = (dict(c.freq) for c in counters)
    freq = fs.combine(pretrain, instruct) if args.instruct_data else pretrain
    counts = fs.class_counts(names, freq)
    seconds = time.perf_counter() - start
    with open(args.out, "w") as f:
        json.dump({"class_names": list(names), "counts": counts.tolist(), "counting": "study",
                   "files": list(args.data), "instruct_files": list(args.instruct_data),
                   "records": sum(c.records for c in counters), "sentences": sum(c.sentences for c in counters),
                   "seconds": round(seconds, 3), "roles": None if args.roles is None else list(args.roles),
                   "study_freq": {"pretrain": pretrain, "instruct": instruct}}, f, indent=1)
    print(f"{sum(c.records for c in counters)} records in {seconds:.1f} s -> {args.out} (the study's counting)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
