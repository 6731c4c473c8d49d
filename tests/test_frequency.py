"""Class-name frequency in LLaVA-format training data and its correlation with accuracy (the study's Fig. 3).

Exact counts on a hand-written corpus (the counting rule is in `vlmcls_jax/analysis/frequency.py`'s
docstring), the streaming reader, bad-input errors, the CLIs, and correlations against scipy and by hand.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from vlmcls_jax.analysis import correlation, frequency
from vlmcls_jax.analysis.frequency import FrequencyCounter, count_class_frequency, iter_records, tokenize

REPO = Path(__file__).resolve().parents[1]

NAMES = ["cat", "great white shark", "white shark", "hen", "missile", "sunglasses", "missile",
         "kite (bird of prey)", "St. Bernard", "Geoffroy's spider monkey", "goldfish"]


def _record(i, *turns):
    return {"id": f"r{i}", "image": f"{i}.jpg",
            "conversations": [{"from": role, "value": value} for role, value in turns]}


CORPUS = [
    _record(0, ("human", "<image>\nIs there a cat in the image?"),           # cat (human turn)
            ("gpt", "Yes, a cat sits next to a great white shark. The category is animals.")),
    # ^ cat; the shark counts for both "great white shark" and the name inside it; "category" is no cat
    _record(1, ("gpt", "A CAT and another cat, then a Cat.")),               # one sentence: cat once
    _record(2, ("gpt", "I saw a great white. Shark attacks are rare.")),     # split by a sentence: nothing
    _record(3, ("gpt", "Hens are not a hen's friend (a hen).")),             # hen once; "hens" is not "hen"
    _record(4, ("gpt", "Look: missile!")),                                   # punctuation around: missile
    _record(5, ("gpt", "Goldfish in a bowl")),                               # first token: not counted
    _record(6, ("human", "a photo of sunglasses")),                          # last token: not counted
    _record(7, ("gpt", "My kite (bird of prey) flew. A St. Bernard dog and Geoffroy's spider monkey.")),
    _record(8, ("human", "Is this a goldfish?"), ("gpt", "No.")),            # goldfish (human turn)
]
EXPECTED = {"cat": 3, "great white shark": 1, "white shark": 1, "hen": 1, "missile": 1, "sunglasses": 0,
            "kite (bird of prey)": 1, "St. Bernard": 1, "Geoffroy's spider monkey": 1, "goldfish": 1}
SENTENCES = 3 + 1 + 2 + 1 + 1 + 1 + 1 + 2 + 2


def _write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def _write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_tokenize_follows_treebank_rules_and_splits_sentences():
    assert tokenize("A goldfish. Then a St. Bernard dog! What?! Mr. Smith met J. Doe.") == [
        ["a", "goldfish", "."], ["then", "a", "st.", "bernard", "dog", "!"], ["what", "?", "!"],
        ["mr.", "smith", "met", "j.", "doe", "."]]
    assert tokenize("It's the dog's bowl, don't you cannot? 1,000 dogs' toys") == [
        ["it", "'s", "the", "dog", "'s", "bowl", ",", "do", "n't", "you", "can", "not", "?"],
        ["1,000", "dogs", "'", "toys"]]
    assert tokenize('He said "a tench." Then (a hen.) left') == [
        ["he", "said", '"', "a", "tench", ".", '"'], ["then", "(", "a", "hen", ".", ")"], ["left"]]
    assert tokenize("1. the dog, e.g. a T-shirt 16.4 wide... ok") == [
        ["1.", "the", "dog", ",", "e.g.", "a", "t-shirt", "16.4", "wide", "...", "ok"]]
    assert tokenize("<image>\nkite (bird of prey)") == [["kite", "(", "bird", "of", "prey", ")"]]
    assert tokenize("  ") == []


def test_word_tokens_match_nltk_on_single_sentences():
    """nltk (the test extra's, no library dependency): on one sentence, without sentence splitting, the
    tokens equal NLTK's word tokenizer's (quotes aside: NLTK writes `` and '')."""
    from nltk import tokenize as nltk_tokenize
    sentences = ["It's the dog's bowl, don't you cannot?", "He said \"hi\" -- then left; ok? yes! 50% of $3 & more",
                 "it’s “quoted” text — with dashes", "wanna gonna gotta lemme gimme more'n d'ye", "10:30, 1,000, a:b",
                 "[a] {b} <c> *d*", "the dogs' toys' owner's 'hello' o'brien", "BULLET::::- a ,, b", "the U.S.?"]
    tokenizer = nltk_tokenize.NLTKWordTokenizer()
    for sentence in sentences + NAMES:
        ours = [t for s in tokenize(sentence) for t in s]
        theirs = ['"' if t in ("``", "''") else t for t in tokenizer.tokenize(sentence.lower())]
        assert ours == theirs, sentence


def test_counts_on_a_hand_written_corpus():
    result = count_class_frequency(CORPUS, NAMES)
    assert result.by_name == EXPECTED
    assert result.counts.dtype == np.int64 and result.counts.shape == (len(NAMES),)
    assert result.counts.tolist() == [EXPECTED[n] for n in NAMES]
    assert result.counts[4] == result.counts[6] == 1  # a repeated name: its count at each index, not doubled
    assert (result.records, result.sentences, result.files) == (len(CORPUS), SENTENCES, ())


def test_count_edges_counts_names_at_a_sentence_edge():
    result = count_class_frequency(CORPUS, NAMES, count_edges=True)
    assert result.by_name == {**EXPECTED, "goldfish": 2, "sunglasses": 1}


def test_roles_restrict_the_turns_counted():
    gpt = count_class_frequency(CORPUS, NAMES, roles=["gpt"])
    assert gpt.by_name == {**EXPECTED, "cat": 2, "goldfish": 0}
    assert gpt.sentences == SENTENCES - 3
    human = count_class_frequency(CORPUS, NAMES, roles=["human"])
    assert human.by_name["cat"] == 1 and human.by_name["goldfish"] == 1 and human.by_name["hen"] == 0


def test_files_json_list_and_json_lines_give_the_same_counts(tmp_path, monkeypatch):
    monkeypatch.setattr(frequency, "_READ_CHARS", 7)  # records cut by the read buffer, many times
    listed = _write_json(tmp_path / "a.json", CORPUS)
    lines = _write_jsonl(tmp_path / "b.jsonl", CORPUS)
    assert list(iter_records(listed)) == CORPUS == list(iter_records(lines))
    counter = FrequencyCounter(NAMES, batch_turns=3)
    counter.add(listed)
    counter.add(lines)
    result = counter.result()
    assert result.by_name == {name: 2 * count for name, count in EXPECTED.items()}
    assert result.files == (str(listed), str(lines)) and result.records == 2 * len(CORPUS)
    assert list(iter_records(_write_json(tmp_path / "empty.json", []))) == []


def test_names_split_by_their_own_period_are_reported():
    counter = FrequencyCounter(["2012 Bentley Continental Supersports Conv. Convertible", "St. Bernard"])
    assert counter.unmatchable == ("2012 Bentley Continental Supersports Conv. Convertible",)


@pytest.mark.parametrize("records, message", [
    ([CORPUS[0], {"id": "x"}], r"record 1 \(id 'x'\) has no 'conversations' list"),
    ([CORPUS[0], CORPUS[1], _record(9, ("human", "ok"), ("gpt", None))],
     r"record 2 \(id 'r9'\): conversations\[1\] 'value' is NoneType, not a string"),
    ([CORPUS[0], 5], r"record 1 is int, not an object"),
])
def test_bad_records_name_the_file_and_the_index(tmp_path, records, message):
    for path in (_write_json(tmp_path / "bad.json", records), _write_jsonl(tmp_path / "bad.jsonl", records)):
        with pytest.raises(ValueError, match=re.escape(str(path)) + ": " + message):
            count_class_frequency(path, NAMES)
    with pytest.raises(ValueError, match="<records>: " + message):
        count_class_frequency(records, NAMES)


def test_bad_files_name_the_file_and_the_index(tmp_path, monkeypatch):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(CORPUS[:2])[:-1] + ', {"id": }]')
    with pytest.raises(ValueError, match=re.escape(f"{path}: record 2: invalid JSON")):
        list(iter_records(path))
    monkeypatch.setattr(frequency, "_READ_CHARS", 16)
    monkeypatch.setattr(frequency, "_MAX_RECORD_CHARS", 1000)  # bad JSON early in a longer file
    path.write_text(json.dumps(CORPUS[:2])[:-1] + ', {"id": }, ' + json.dumps(CORPUS)[1:])
    with pytest.raises(ValueError, match=re.escape(f"{path}: record 2: invalid JSON")):
        list(iter_records(path))
    monkeypatch.undo()
    path.write_text(json.dumps(CORPUS[:2])[:-1])
    with pytest.raises(ValueError, match=re.escape(f"{path}: the JSON list is not closed")):
        list(iter_records(path))
    path.write_text(json.dumps(CORPUS[0]) + "\n{oops\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}: record 1 (line 2): invalid JSON")):
        list(iter_records(path))
    path.write_text('"text"')
    with pytest.raises(ValueError, match="expected a JSON list of records or JSON lines"):
        list(iter_records(path))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        list(iter_records(tmp_path / "missing.json"))


def test_frequency_cli_end_to_end(tmp_path):
    data_a = _write_json(tmp_path / "pretrain.json", CORPUS[:4])
    data_b = _write_jsonl(tmp_path / "instruct.jsonl", CORPUS[4:])
    classes = _write_json(tmp_path / "classes.json", NAMES)
    out = tmp_path / "counts.json"
    run = subprocess.run([sys.executable, "-m", "vlmcls_jax.analysis.frequency", "--data", str(data_a),
                          str(data_b), "--classes", str(classes), "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    written = json.loads(out.read_text())
    assert written["class_names"] == NAMES and written["counts"] == [EXPECTED[n] for n in NAMES]
    assert written["files"] == [str(data_a), str(data_b)]
    assert (written["records"], written["sentences"]) == (len(CORPUS), SENTENCES)
    assert written["seconds"] >= 0 and "9 records" in run.stdout


# --- correlation -------------------------------------------------------------------------------------------


def _results(path: Path, rows) -> Path:
    return _write_jsonl(path, [{"id": str(i), "label": label, "correct": value} for i, (label, value) in
                               enumerate(rows)])


def test_per_class_accuracy_excludes_classes_without_examples(tmp_path):
    path = _results(tmp_path / "r.jsonl", [(0, True), (0, False), (2, True), (2, True), (2, False)])
    with path.open("a") as f:  # a resumed run wrote example "1" again: the last record wins
        f.write(json.dumps({"id": "1", "label": 0, "correct": True}) + "\n")
    accuracy, examples = correlation.per_class_accuracy(path, 4, field="correct")
    assert examples.tolist() == [2, 0, 3, 0]
    assert accuracy[0] == 1.0 and math.isclose(accuracy[2], 2 / 3)
    assert np.isnan(accuracy[1]) and np.isnan(accuracy[3])


def test_correlation_by_hand_and_against_scipy():
    # counts 1, 2, 3 against accuracy 0, 0.5, 0.5: deviations (-1, 0, 1) and (-1/3, 1/6, 1/6), so
    # r = (1/3 + 1/6) / sqrt(2 * 1/6) = sqrt(3)/2, and with 1 degree of freedom t = sqrt(3), p = 1/3.
    # Spearman's ranks (1, 2, 3) and (1, 2.5, 2.5) give the same. Class 3 has no examples.
    summary = correlation.frequency_correlation(np.array([1, 2, 3, 50]), np.array([0.0, 0.5, 0.5, np.nan]))
    assert math.isclose(summary["pearson_r"], math.sqrt(3) / 2, rel_tol=1e-12)
    assert math.isclose(summary["pearson_p"], 1 / 3, rel_tol=1e-9)
    assert math.isclose(summary["spearman_r"], math.sqrt(3) / 2, rel_tol=1e-12)
    assert (summary["classes_used"], summary["classes_excluded"]) == (3, 1)

    counts = np.array([0, 5, 10, 100, 3, 7, 2000])
    accuracy = np.array([0.1, 0.4, 0.5, 0.9, 0.2, 0.1, 0.8])
    summary = correlation.frequency_correlation(counts, accuracy)
    spearman, pearson = stats.spearmanr(counts, accuracy), stats.pearsonr(counts, accuracy)
    log_pearson = stats.pearsonr(np.log1p(counts), accuracy)
    assert math.isclose(summary["spearman_r"], spearman.statistic) and math.isclose(summary["spearman_p"],
                                                                                      spearman.pvalue)
    assert math.isclose(summary["pearson_r"], pearson.statistic) and math.isclose(summary["pearson_p"],
                                                                                    pearson.pvalue)
    assert math.isclose(summary["pearson_log1p_r"], log_pearson.statistic)
    with pytest.raises(ValueError, match="at least 2 classes"):
        correlation.frequency_correlation([1, 2], [0.5, np.nan])


def test_bins_follow_the_study_with_an_open_last_bin():
    counts = np.array([0, 5, 15, 150, 200_000, 55, 9])
    accuracy = np.array([0.2, 0.4, 0.5, 0.9, 1.0, 0.3, np.nan])
    bins = correlation.binned_accuracy(counts, accuracy)
    assert [(b["low"], b["high"]) for b in bins] == list(zip(correlation.STUDY_BIN_EDGES,
                                                             [*correlation.STUDY_BIN_EDGES[1:], None]))
    by_low = {b["low"]: (b["classes"], b["accuracy"]) for b in bins}
    assert by_low[0][0] == 2 and math.isclose(by_low[0][1], 0.3)  # 0 and 5; class 6 (no examples) is out
    assert by_low[10] == (1, 0.5) and by_low[50] == (1, 0.3) and by_low[100] == (1, 0.9)
    assert by_low[100_000] == (1, 1.0) and by_low[20] == (0, None)


def test_summary_plot_and_cli(tmp_path):
    results = _results(tmp_path / "r.jsonl", [(0, True), (1, False), (1, True), (2, True), (3, False)])
    plot = tmp_path / "fig3.png"
    summary = correlation.frequency_accuracy_summary(results, np.array([3, 12, 500, 0, 7]), field="correct",
                                                     plot_path=plot, title="toy")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (summary["classes_used"], summary["classes_excluded"], summary["field"]) == (4, 1, "correct")
    assert sum(b["classes"] for b in summary["bins"]) == 4
    json.dumps(summary)  # plain JSON types

    counts_a = _write_json(tmp_path / "a.json", {"class_names": list("abcde"), "counts": [1, 2, 300, 0, 5]})
    counts_b = _write_json(tmp_path / "b.json", {"class_names": list("abcde"), "counts": [2, 10, 200, 0, 2]})
    out, plot2 = tmp_path / "summary.json", tmp_path / "cli.png"
    assert correlation.main(["--results", str(results), "--counts", str(counts_a), str(counts_b), "--field",
                             "correct", "--plot", str(plot2), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    expected = correlation.frequency_accuracy_summary(results, np.array([3, 12, 500, 0, 7]), field="correct")
    assert written == json.loads(json.dumps(expected)) and plot2.is_file()


@pytest.mark.parametrize("record, message", [
    ({"label": 7, "correct": True}, r"r.jsonl:2: 'label' is 7, not a class index in \[0, 4\)"),
    ({"label": 1}, r"r.jsonl:2: no 'correct' field"),
    ({"label": 1, "correct": "yes"}, r"r.jsonl:2: 'correct' is 'yes', not a boolean"),
])
def test_bad_results_name_the_file_and_line(tmp_path, record, message):
    path = _write_jsonl(tmp_path / "r.jsonl", [{"label": 0, "correct": True}, record])
    with pytest.raises(ValueError, match=message):
        correlation.per_class_accuracy(path, 4, field="correct")
