"""docs/protocol.md: its references into our code resolve, and the rows it marks `same` hold, each checked
against the study's string or number quoted here with its file:line (yuhui-zh15/VLMClassifier at d069792)."""

import pathlib
import re

from vlmcls_jax import defaults

ROOT = pathlib.Path(__file__).resolve().parents[1]
CARD = (ROOT / "docs" / "protocol.md").read_text()


STUDY_DIRS = ("main_results/", "inference_analysis/", "feature_analysis/", "imagewikiqa/", "training_analysis/",
              "data_analysis/")
STUDY_NAMES = {"main.py", "probe.py", "extract_feature.py", "model_vqa.py"}   # cited bare: the study's files


def test_every_reference_into_our_code_resolves():
    ours = sorted(str(p.relative_to(ROOT)) for d in ("vlmcls_jax", "configs") for p in (ROOT / d).rglob("*.py"))
    checked = 0
    for path, line in re.findall(r"([\w/]+\.py):(\d+)", CARD):
        if path.startswith(STUDY_DIRS) or path in STUDY_NAMES:
            continue
        matches = [f for f in ours if f == path or f.endswith("/" + path)]
        assert len(matches) == 1, f"docs/protocol.md cites {path}: matches {matches}"
        lines = (ROOT / matches[0]).read_text().splitlines()
        assert int(line) <= len(lines), f"docs/protocol.md cites {path}:{line}; the file has {len(lines)} lines"
        checked += 1
    assert checked > 40


def test_rows_are_numbered_once_and_the_in_flight_items_are_named():
    numbers = [int(n) for n in re.findall(r"^\| (\d+) \|", CARD, flags=re.M)]
    assert numbers == list(range(1, len(numbers) + 1))
    for item in (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20):   # issue 17's items
        assert f"(item {item}, branch " in CARD, item
    for option in ('`sampling="study"`', '`subset="study"`', '`counting="study"`'):
        assert option in CARD


def test_same_rows_hold_against_the_studys_strings():
    from vlmcls_jax.data.prompt_formats import PROMPT_FORMATS, scoring_prefix
    from vlmcls_jax.data.prompts import QUESTION_WORDINGS, closed_world_question, llava_prompt
    from vlmcls_jax.eval.answer_parser import ASSISTANT_PREFIX, MAX_NEW_TOKENS
    from vlmcls_jax.eval.clip_templates import TEMPLATE_SETS

    q = "What type of object is in this photo?"               # main_results/main.py:81
    assert QUESTION_WORDINGS["default"] == q
    assert llava_prompt(q) == f"USER: <image>\n{q}\nASSISTANT:"           # main.py:134
    assert PROMPT_FORMATS["blip2"](q, "") == f"Question: {q} Answer:"    # main.py:124
    assert closed_world_question(q, ["a", "b"]) == f"{q} Choose one from \"a, b\"."   # main.py:104
    assert TEMPLATE_SETS["study"] == ("A photo of a {}",)                 # main.py:204 f"A photo of a {cls}"
    # inference_analysis/main.py:170 and :162
    assert llava_prompt(q, scoring_prefix("llava_hf")) == (
        "USER: <image>\nWhat type of object is in this photo?\nASSISTANT: The photo features a")
    assert PROMPT_FORMATS["blip2"](q, scoring_prefix("blip2")) == (
        "Question: What type of object is in this photo? Answer: A")
    # imagewikiqa/main.py:71 and :77
    assert llava_prompt("Q", ASSISTANT_PREFIX) == "USER: <image>\nQ\nASSISTANT: Let's think step by step."
    assert MAX_NEW_TOKENS == 1024
    # main_results/main.py:146 `max_new_tokens=64 if not chain_of_thought else 512` (the jobs' defaults)
    from vlmcls_jax.eval.vlm_generation import study_max_new_tokens
    assert defaults.eval_config().generation.max_new_tokens == 0          # 0: the study's value:
    assert (study_max_new_tokens(False), study_max_new_tokens(True)) == (64, 512)
    # feature_analysis/probe.py:86 `lr=0.001`, :89 `bsz = 512`, :37 `--n_epochs` 500; probe.sh ImageNet 100
    for dataset, epochs in (("flowers", 500), ("imagenet", 100)):
        p = defaults.probe_config(dataset).probe
        assert (p.learning_rate, p.batch_size, p.epochs) == (1e-3, 512, epochs)
