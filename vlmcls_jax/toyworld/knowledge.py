"""The toy world's knowledge, and its ImageWikiQA analogue (the study's Table 5).

ImageWikiQA asks multiple-choice questions that need two things: recognising the object, and knowing a fact
about it that the LLM learned from text.  Here every class has a home (a "red circle" lives in the meadow),
drawn from a seed; the VLM's instruction data carry:

  - facts, text only and balanced over classes (the LLM knows about every class, as a real LLM's
    pre-training gives it knowledge of all 1000 ImageNet classes): "Where does the red circle live?" ->
    "The red circle lives in the meadow.", FACTS_PER_RECORD of them as the turns of one conversation;
  - image questions in ImageWikiQA's format, long-tailed like the other instructions, answered in the
    study's chain-of-thought style: "Let's think step by step. The object is a red circle. The red circle
    lives in the meadow."  The answer names the class, then says the fact's own sentence, so the home
    follows the class the VLM named: the knowledge needs the recognition.  The answer names the place, not
    the letter: the study's parser (MMMU's) maps a free-text answer to the option whose text it contains.
    (Answers ending "The answer is B." were tried first: the tiny decoder learned to name the right place
    but not to find its letter among the options, which is in-context copying, so it stayed at chance; the
    README says more.)

The test questions (`wikiqa.jsonl`) are the same question about every balanced test image, in the released
ImageWikiQA format (`data/imagewikiqa.py` reads it, the `imagewikiqa` job answers it): a VLM that recognises
the class and remembers its home answers them; fine-tuning on classification data should then lift them, as
the study's +11.8 points.
"""

from __future__ import annotations

import numpy as np

from vlmcls_jax.data.prompts import CHAIN_OF_THOUGHT

PLACES = ("forest", "desert", "harbor", "valley", "island", "castle", "meadow", "canyon", "glacier", "village",
          "tundra", "lagoon")
QUESTION = "Where does this object live?"
FACTS_PER_RECORD = 3     # facts to a text-only record (turns of one conversation, ~70 tokens: the 96-token bucket)
LETTERS = "ABCD"


def homes(class_names: list[str], seed: int) -> dict[str, str]:
    """{class name: its place}, drawn uniformly from PLACES by `seed`."""
    rng = np.random.default_rng([seed, 7])
    return {name: PLACES[i] for name, i in zip(class_names, rng.integers(len(PLACES), size=len(class_names)))}


def fact(name: str, place: str) -> str:
    return f"The {name} lives in the {place}."


def fact_record(record_id: str, facts: list[tuple[str, str]]) -> dict:
    """A text-only LLaVA conversation stating some classes' homes, one turn each: FACTS [(name, place)]."""
    turns = []
    for name, place in facts:
        turns += [{"from": "human", "value": f"Where does the {name} live?"},
                  {"from": "gpt", "value": fact(name, place)}]
    return {"id": record_id, "conversations": turns}


def question(place: str, rng: np.random.Generator) -> tuple[str, str]:
    """(ImageWikiQA-style text with four options, the correct letter): the true place and three others."""
    others = [p for p in PLACES if p != place]
    options = [place] + [others[i] for i in rng.choice(len(others), 3, replace=False)]
    options = [options[i] for i in rng.permutation(4)]
    text = "\n".join([QUESTION, *(f"{letter}. {o}" for letter, o in zip(LETTERS, options)),
                      "Choose A, B, C, or D."])
    return text, LETTERS[options.index(place)]


def answer(name: str, place: str) -> str:
    """The training answer: the study's chain-of-thought opening, the recognition, the fact."""
    return f"{CHAIN_OF_THOUGHT} The object is a {name}. {fact(name, place)}"


def qa_record(record_id: str, image: str, name: str, place: str, rng: np.random.Generator) -> dict:
    """An image question in ImageWikiQA's format with its answer, as a LLaVA conversation."""
    text, _ = question(place, rng)
    return {"id": record_id, "image": image, "conversations": [
        {"from": "human", "value": f"<image>\n{text}"}, {"from": "gpt", "value": answer(name, place)}]}


def test_question(image: str, name: str, place: str, rng: np.random.Generator) -> dict:
    """One line of the released ImageWikiQA format."""
    text, letter = question(place, rng)
    return {"image": image, "text": text, "label": letter, "wiki": fact(name, place),
            "classname": name}
