"""The VQA answer normalisation and accuracy that TextVQA is scored with: a port of `EvalAIAnswerProcessor`
and `TextVQAAccuracyEvaluator` from LLaVA's `llava/eval/m4c_evaluator.py` (haotian-liu/LLaVA at c121f04),
itself copied from MMF's processors.py, which follows the official VQA evaluation (vqaEval.py: contractions,
number words, articles, punctuation).  Ported rather than imported: the rules live only inside those research
repositories (no maintained package on PyPI carries them), and the tables below are theirs verbatim.

    normalize_answer("Two dogs!")                 -> "2 dogs"
    vqa_accuracy("two", ["2"] * 3 + ["3"] * 7)    -> 1.0   (min(1, matches among the other 9 / 3), averaged
                                                             over the 10 leave-one-out subsets)
Quirks kept on purpose (they change scores): PERIOD_STRIP's lookbehind is written `(?!<=\\d)` (a
negative lookahead for the text "<=" and a digit, not a lookbehind), and its `sub` gets `re.UNICODE` as its
*count* argument (so at most 32 periods are removed), exactly as in the original.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

CONTRACTIONS = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldve": "could've",
    "couldnt": "couldn't",
    "couldn'tve": "couldn't've",
    "couldnt've": "couldn't've",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hadnt've": "hadn't've",
    "hadn'tve": "hadn't've",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hed": "he'd",
    "hed've": "he'd've",
    "he'dve": "he'd've",
    "hes": "he's",
    "howd": "how'd",
    "howll": "how'll",
    "hows": "how's",
    "Id've": "I'd've",
    "I'dve": "I'd've",
    "Im": "I'm",
    "Ive": "I've",
    "isnt": "isn't",
    "itd": "it'd",
    "itd've": "it'd've",
    "it'dve": "it'd've",
    "itll": "it'll",
    "let's": "let's",
    "maam": "ma'am",
    "mightnt": "mightn't",
    "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've",
    "mightve": "might've",
    "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't",
    "notve": "not've",
    "oclock": "o'clock",
    "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at",
    "shant": "shan't",
    "shed've": "she'd've",
    "she'dve": "she'd've",
    "she's": "she's",
    "shouldve": "should've",
    "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll",
    "somebodys": "somebody's",
    "someoned": "someone'd",
    "someoned've": "someone'd've",
    "someone'dve": "someone'd've",
    "someonell": "someone'll",
    "someones": "someone's",
    "somethingd": "something'd",
    "somethingd've": "something'd've",
    "something'dve": "something'd've",
    "somethingll": "something'll",
    "thats": "that's",
    "thered": "there'd",
    "thered've": "there'd've",
    "there'dve": "there'd've",
    "therere": "there're",
    "theres": "there's",
    "theyd": "they'd",
    "theyd've": "they'd've",
    "they'dve": "they'd've",
    "theyll": "they'll",
    "theyre": "they're",
    "theyve": "they've",
    "twas": "'twas",
    "wasnt": "wasn't",
    "wed've": "we'd've",
    "we'dve": "we'd've",
    "weve": "we've",
    "werent": "weren't",
    "whatll": "what'll",
    "whatre": "what're",
    "whats": "what's",
    "whatve": "what've",
    "whens": "when's",
    "whered": "where'd",
    "wheres": "where's",
    "whereve": "where've",
    "whod": "who'd",
    "whod've": "who'd've",
    "who'dve": "who'd've",
    "wholl": "who'll",
    "whos": "who's",
    "whove": "who've",
    "whyll": "why'll",
    "whyre": "why're",
    "whys": "why's",
    "wont": "won't",
    "wouldve": "would've",
    "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've",
    "yall": "y'all",
    "yall'll": "y'all'll",
    "y'allll": "y'all'll",
    "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've",
    "youd": "you'd",
    "youd've": "you'd've",
    "you'dve": "you'd've",
    "youll": "you'll",
    "youre": "you're",
    "youve": "you've",
}

NUMBER_MAP = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES = ["a", "an", "the"]
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")
PUNCTUATIONS = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
                "?", "!"]


def _word_tokenize(word: str) -> str:
    word = word.lower()
    word = word.replace(",", "").replace("?", "").replace("'s", " 's")
    return word.strip()


def _process_punctuation(in_text: str) -> str:
    out_text = in_text
    for p in PUNCTUATIONS:
        if (p + " " in in_text or " " + p in in_text) or (re.search(COMMA_STRIP, in_text) is not None):
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    return PERIOD_STRIP.sub("", out_text, re.UNICODE)   # sic: re.UNICODE (32) is the count


def _process_digit_article(in_text: str) -> str:
    out_text = [NUMBER_MAP.get(word, word) for word in in_text.lower().split()]
    out_text = [word for word in out_text if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in out_text)


def normalize_answer(answer: str) -> str:
    """`EvalAIAnswerProcessor.__call__`: lowercase, punctuation, number words, articles, contractions."""
    answer = _word_tokenize(answer)
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(answer))


def answer_scores(human_answers: Sequence[str]) -> dict[str, float]:
    """Each distinct normalised human answer's VQA score: over the 10 ways to leave one human out, the mean of
    min(1, how many of the other 9 gave it / 3) (`TextVQAAccuracyEvaluator._compute_answer_scores`)."""
    answers = [normalize_answer(a) for a in human_answers]
    if len(answers) != 10:
        raise ValueError(f"VQA accuracy needs 10 human answers, got {len(answers)}: {list(human_answers)}")
    scores = {}
    for unique in set(answers):
        accs = [min(1.0, sum(other == unique for j, other in enumerate(answers) if j != i) / 3)
                for i in range(len(answers))]
        scores[unique] = sum(accs) / len(accs)
    return scores


def vqa_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """The VQA score of one predicted answer against the 10 human answers (0 when no human gave it)."""
    return answer_scores(human_answers).get(normalize_answer(prediction), 0.0)
