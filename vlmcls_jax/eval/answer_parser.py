"""Multiple-choice answers from free text, as the study scores ImageWikiQA (Table 5), and its prompt.

The study (yuhui-zh15/VLMClassifier) scores ImageWikiQA outputs with MMMU's `parse_multi_choice_response`
(MMMU-Benchmark/MMMU, `eval/utils/eval_utils.py`), pasted into `imagewikiqa/eval.ipynb` and
`training_analysis/llava/eval_imagewikiqa.ipynb` unchanged. `parse_choice` reimplements its behaviour rule by
rule (see its docstring) and also says which rule decided.

The study's prompt (`imagewikiqa/main.py`, LLaVA-1.5 branch) is the released question text verbatim (question,
the options "A. ..." to "D. ...", "Choose A, B, C, or D.") with chain of thought started in the assistant turn:

    USER: <image>\\n{text}\\nASSISTANT: Let's think step by step.

decoded greedily for up to 1024 new tokens. Its scorer parses `decoded.split("ASSISTANT:")[-1].strip()`, and
because llava-hf's `generate` returns the prompt too, that text starts with the prefix: "Let's think step by
step. <generated>" (`study_response`). This matters: the prefix's five words make any answer long enough for
the option-text rule (more than 5 words). (`training_analysis/llava/model_vqa.py`, the LLaVA-trained-on-ImageNet
rows, uses the original LLaVA code, whose outputs are the generated text only, with the prefix lines there
commented out "Enable This Part for ImageWikiQA": `imagewikiqa_eval`'s protocol "model_vqa".)  BLIP-2 and
InstructBLIP differ: chain of thought inside the question, the text after "Answer:" parsed
(`prompt_formats.study_prompt` / `study_prediction`, which the evaluation uses for every family).  The scorer
seeds Python's `random` once with 1234.
"""

from __future__ import annotations

import random

from vlmcls_jax.data.prompts import CHAIN_OF_THOUGHT, llava_prompt

# The study's ImageWikiQA settings (imagewikiqa/main.py, imagewikiqa/eval.ipynb).
ASSISTANT_PREFIX = CHAIN_OF_THOUGHT   # "Let's think step by step.", after "ASSISTANT:"
MAX_NEW_TOKENS = 1024                 # model.generate(**inputs, max_new_tokens=1024), greedy
STUDY_SEED = 1234                     # random.seed(1234) before scoring: the random fallback's seed
HOWS = ("bracket", "letter", "text", "random")

_END_PUNCTUATION = (",", ".", "!", "?", ";", ":", "'")


def imagewikiqa_prompt(text: str, chain_of_thought: bool = True) -> str:
    """The study's LLaVA-1.5 prompt for one question `text` (the released `text` field, unchanged)."""
    return llava_prompt(text, ASSISTANT_PREFIX if chain_of_thought else "")


def study_response(output: str, chain_of_thought: bool = True) -> str:
    """The text the study parses for a generated `output`: the assistant turn after "ASSISTANT:", stripped,
    i.e. the chain-of-thought prefix, a space, then the generation."""
    output = output.strip()
    if not chain_of_thought:
        return output
    return f"{ASSISTANT_PREFIX} {output}" if output else ASSISTANT_PREFIX


def parse_choice(response: str, options: dict[str, str], rng: random.Random) -> tuple[str, str]:
    """The option letter a free-text `response` picks -> (letter, how), with MMMU's rules in MMMU's order.

    0. Whitespace is stripped from both ends (the study's responses were always `.strip()`ped before
       parsing), then the characters , . ! ? ; : ' are stripped from both ends, one character kind at a
       time in that order (MMMU's `for char in [...]: response = response.strip(char)`, so "B.'" keeps
       its "."). The response is then padded with a space on each side.
    1. "bracket": every letter whose "(X)" appears anywhere is a candidate ("The answer is (D).").
    2. "letter" (only if rule 1 found none): every letter appearing as " X " between spaces is a candidate:
       "C", "Answer: C", "So the answer is A.", and also "A" used as a word ("A dog is ..." -> A).
       "B. Upright position" is NOT a bare letter (the "." touches it).
    3. "text" (only if rules 1-2 found none, and the padded response has more than 5 whitespace-separated
       words): every option whose text occurs in the response, case-insensitively, as a substring, is a
       candidate.
    4. Several candidates: the one whose occurrence starts LAST wins (`str.rfind` of "(X)", " X ", or the
       lower-cased option text); ties (one option text a prefix of another) go to the earlier letter
       (`np.argmax`). A rule that finds candidates settles it: "(A) ... answer is B" is A.
    5. "random" (no candidates): `rng.choice` over the letters in order. MMMU uses the global `random`
       (seeded 1234 once by the study, so its draws depend on file order); pass an rng seeded per question
       for results that do not depend on order.
    """
    letters = list(options)
    text = response.strip()
    for char in _END_PUNCTUATION:
        text = text.strip(char)
    text = f" {text} "

    found = [(text.rfind(f"({x})"), x) for x in letters if f"({x})" in text]
    how = "bracket"
    if not found:
        found = [(text.rfind(f" {x} "), x) for x in letters if f" {x} " in text]
        how = "letter"
    if not found and len(text.split()) > 5:
        lower = text.lower()
        found = [(lower.rfind(options[x].lower()), x) for x in letters if options[x].lower() in lower]
        how = "text"
    if not found:
        return rng.choice(letters), "random"
    last = max(start for start, _ in found)
    return next(x for start, x in found if start == last), how
