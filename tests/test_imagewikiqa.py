"""ImageWikiQA (Table 5): the released file's loader, the study's MMMU answer parser, and the resumable,
shardable evaluator on a tiny random LLaVA."""

import dataclasses
import json
import random
from pathlib import Path

import pytest

import train_fixtures
from vlmcls_jax.data.imagewikiqa import read_imagewikiqa
from vlmcls_jax.data.preprocess import ClipPreprocessConfig
from vlmcls_jax.data.study import imagewikiqa_path
from vlmcls_jax.eval.answer_parser import imagewikiqa_prompt, parse_choice, study_response
from vlmcls_jax.eval.imagewikiqa_eval import ImageWikiQASettings, evaluate_imagewikiqa, question_rng, score_output

RELEASED = Path(imagewikiqa_path())     # the study's file, shipped in the package


def released_file() -> Path:
    return RELEASED


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def row(**changes):
    base = {"image": "a.png", "text": "Which one?\nA. red\nB. green\nC. blue\nD. black\nChoose A, B, C, or D.",
            "label": "B", "wiki": "w", "classname": "thing"}
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


# ---- loader ---------------------------------------------------------------------------------------------

def test_released_file_loads(tmp_path):
    questions, report = read_imagewikiqa(released_file(), tmp_path)
    assert len(questions) == 2000 and report["questions"] == 2000
    assert report["missing_images"] == 2000 and len(report["missing"]) == 5     # no images here: all counted
    lines = RELEASED.read_text().splitlines()
    for q, line in zip(questions, lines):
        raw = json.loads(line)
        assert list(q.options) == ["A", "B", "C", "D"] and q.label in q.options
        # The options equal what the study's scorer takes: text.split("\n")[1:5], then choice[3:].
        assert list(q.options.values()) == [c[3:] for c in raw["text"].split("\n")[1:5]]
        assert q.text == raw["text"] and q.classname == raw["classname"] and q.wiki == raw["wiki"]
        assert q.image == str(tmp_path / raw["image"])
    assert [q.id for q in questions] == list(range(1, 2001))
    first = questions[0]
    assert first.label == "C" and first.options["C"] == "Trendelenburg position"
    assert first.question == "Which position is particularly important for this object when transporting a " \
                             "patient in shock?"


@pytest.mark.parametrize("bad, message", [
    (row(classname=None), r"bad.jsonl:2: missing field 'classname'"),
    (row(label=None), r"bad.jsonl:2: missing field 'label'"),
    (row(label=3), r"bad.jsonl:2: field 'label' is 3, not a string"),
    (row(label="E"), r"bad.jsonl:2: field 'label': 'E' is not one of the options A, B, C, D"),
    (row(text="Which one? Choose A, B, C, or D."), r"bad.jsonl:2: field 'text': options not parseable"),
    (row(text="Which one?\nA. red\nC. blue\nChoose."), r"bad.jsonl:2: field 'text': .*option 'C', expected 'B'"),
    (row(text="Which one?\nA) red\nB) blue"), r"bad.jsonl:2: field 'text': options not parseable"),
    (row(image="/etc/passwd"), r"bad.jsonl:2: field 'image': .*absolute"),
    (row(image="images/../../secret.png"), r"bad.jsonl:2: field 'image': .*'\.\.'"),
    ('{"image": "a.png", "text"', r"bad.jsonl:2: not valid JSON"),
    ('["a list"]', r"bad.jsonl:2: expected a JSON object"),
])
def test_loader_errors_name_file_line_and_field(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [row(), bad])
    with pytest.raises(ValueError, match=message):
        read_imagewikiqa(path, tmp_path)


def test_missing_images_are_counted_kept_or_refused(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "here.png").write_bytes(b"x")
    path = write_jsonl(tmp_path / "q.jsonl", [row(image="images/here.png"), row(image="images/gone1.png"), "",
                                              row(image="images/here.png", wiki=None), row(image="gone2.png")])
    questions, report = read_imagewikiqa(path, tmp_path)
    assert [q.id for q in questions] == [1, 2, 4, 5]                           # line numbers; blank line skipped
    assert report == {"questions": 4, "missing_images": 2,
                      "missing": [str(tmp_path / "images" / "gone1.png"), str(tmp_path / "gone2.png")]}
    assert questions[2].wiki == ""
    with pytest.raises(FileNotFoundError, match=r"q.jsonl:2: field 'image': .*gone1.png"):
        read_imagewikiqa(path, tmp_path, require_images=True)
    with pytest.raises(FileNotFoundError, match="image_root"):
        read_imagewikiqa(path, tmp_path / "nope")


# ---- parser ---------------------------------------------------------------------------------------------

OPTIONS = {"A": "Fowler's position", "B": "Upright position", "C": "Trendelenburg position", "D": "Flat position"}

CASES = [
    ("C", "C", "letter"),
    ("C.", "C", "letter"),                                      # end punctuation stripped
    ("'B'", "B", "letter"),
    ("(B)", "B", "bracket"),
    ("The answer is (D).", "D", "bracket"),
    ("Answer: (C)", "C", "bracket"),
    ("Answer: C", "C", "letter"),
    ("The answer is B.", "B", "letter"),
    ("I think it's D", "D", "letter"),
    ("  A  ", "A", "letter"),
    ("A is wrong and B is wrong, so the answer is D", "D", "letter"),             # last letter wins
    ("(A) is tempting, but (C) is right.", "C", "bracket"),                       # last bracket wins
    ("(A) Fowler's position is not it; I think the answer is B", "A", "bracket"),  # brackets first
    ("A stretcher carries patients lying flat.", "A", "letter"),                  # the article "A" counts
    (("Let's think step by step. The object is a stretcher. Patients in shock have their legs raised. "
      "So the answer is C."), "C", "letter"),
    ("The patient should lie with the feet raised, which is called the Trendelenburg position.", "C", "text"),
    ("Although the upright position is sometimes used, the Trendelenburg position is preferred in shock",
     "C", "text"),
    ("The Trendelenburg position was once recommended, but now the flat position is preferred", "D", "text"),
    ("THE TRENDELENBURG POSITION IS THE BEST CHOICE HERE", "C", "text"),           # case-insensitive
    (study_response("B. Upright position"), "B", "text"),      # the study's prefix makes it long enough
]


@pytest.mark.parametrize("response, letter, how", CASES)
def test_parser_on_real_looking_outputs(response, letter, how):
    assert parse_choice(response, OPTIONS, random.Random(0)) == (letter, how)


@pytest.mark.parametrize("response", [
    "I cannot tell from this image.",     # long enough, but no letter or option text
    "",
    "B. Upright position",                # "B." is not a bare letter, and 3 words are too few for text
    "C) Trendelenburg position",
    "B.'",                                # strips "'" after ".", so "B." stays
    "Trendelenburg position",
    "c",                                  # letters are case-sensitive
])
def test_parser_random_fallback_is_seeded(response):
    picks = {parse_choice(response, OPTIONS, random.Random(seed)) for seed in range(40)}
    assert {how for _, how in picks} == {"random"} and {x for x, _ in picks} == set(OPTIONS)
    assert parse_choice(response, OPTIONS, random.Random(7)) == parse_choice(response, OPTIONS, random.Random(7))


def test_parser_tie_between_prefix_options_goes_to_the_earlier_letter():
    options = {"A": "Red", "B": "Red with white markings", "C": "Solid black", "D": "White"}
    # "white" (D) starts last, so it wins over "red" and "red with white markings" ...
    assert parse_choice("The coat is red with white markings usually", options, random.Random(0)) == ("D", "text")
    options["D"] = "Brindle"       # ... without it, those two start at the same place: np.argmax takes A
    assert parse_choice("The coat is red with white markings usually", options, random.Random(0)) == ("A", "text")


def test_study_prompt():
    assert imagewikiqa_prompt("Q?\nA. x\nB. y") == "USER: <image>\nQ?\nA. x\nB. y\nASSISTANT: Let's think step by step."
    assert imagewikiqa_prompt("Q?", chain_of_thought=False) == "USER: <image>\nQ?\nASSISTANT:"
    assert study_response(" The answer is C. ") == "Let's think step by step. The answer is C."
    assert study_response(" C ", chain_of_thought=False) == "C"


# ---- evaluator ------------------------------------------------------------------------------------------

PRE = ClipPreprocessConfig(size=28, crop_size=(28, 28))
SETTINGS = ImageWikiQASettings(max_new_tokens=4, batch_size=3)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(model, tokenizer, questions): 5 rendered images, 6 questions on them (one image asked twice), and one
    question whose image is missing."""
    root = tmp_path_factory.mktemp("iwqa")
    model, tok, examples, names = train_fixtures.eval_world(root, 5)
    rows = []
    for i, e in enumerate(examples + examples[:1]):
        options = [e.label_name] + [n for n in names if n != e.label_name][:3]
        options = options[i % 4:] + options[:i % 4]            # the answer in different places
        letter = "ABCD"[options.index(e.label_name)]
        text = "What is this?\n" + "\n".join(f"{x}. {o}" for x, o in zip("ABCD", options)) + "\nChoose A, B, C, or D."
        rows.append({"image": e.id, "text": text, "label": letter, "wiki": "", "classname": e.label_name})
    rows.insert(3, {**rows[0], "image": "missing.png"})
    questions, report = read_imagewikiqa(write_jsonl(root / "q.jsonl", rows), root / "data")
    assert report["missing_images"] == 1 and len(questions) == 7
    return model, tok, questions


def records(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_evaluator_records_each_question_and_scores_the_missing_image_wrong(world, tmp_path):
    model, tok, questions = world
    summary = evaluate_imagewikiqa(model, tok, questions, str(tmp_path / "a.jsonl"), SETTINGS, PRE)
    got = records(tmp_path / "a.jsonl")
    assert sorted(r["id"] for r in got) == [q.id for q in questions]
    gone = [r for r in got if r["image_missing"]]
    assert len(gone) == 1 and gone[0]["id"] == 4 and gone[0]["correct"] is False and gone[0]["output"] is None
    by_id = {q.id: q for q in questions}
    for r in got:
        if not r["image_missing"]:       # the record is the parse of its output, reproducibly
            assert r["response"] == study_response(r["output"])             # "Let's think step by step. " + output
            assert r == score_output(by_id[r["id"]], r["output"], r["response"], SETTINGS)
    assert summary["questions"] == 7 and summary["missing"] == 0 and summary["missing_images"] == 1
    assert sum(summary["parsed_by"].values()) == 6
    assert summary["accuracy"] == sum(r["correct"] for r in got) / 7
    assert sum(t for _, t in summary["per_class"].values()) == 7
    assert summary["per_class"][questions[0].classname][1] == 3     # asked twice, plus the missing copy


def test_evaluator_resumes_without_redoing_finished_questions(world, tmp_path):
    model, tok, questions = world
    whole = evaluate_imagewikiqa(model, tok, questions, str(tmp_path / "w.jsonl"), SETTINGS, PRE)
    path = tmp_path / "r.jsonl"
    evaluate_imagewikiqa(model, tok, questions[:4], str(path), SETTINGS, PRE)
    with open(path, "a") as f:
        f.write('{"id": 5, "outp')                                   # died while writing a line
    resumed = evaluate_imagewikiqa(model, tok, questions, str(path), SETTINGS, PRE)
    ids = [r["id"] for r in records(path)]
    assert sorted(ids) == [q.id for q in questions] and resumed == whole
    # Everything done: the model is not needed any more.
    assert evaluate_imagewikiqa(None, None, questions, str(path), SETTINGS, PRE) == whole


def test_two_shares_give_the_unsplit_summary(world, tmp_path):
    model, tok, questions = world
    whole = evaluate_imagewikiqa(model, tok, questions, str(tmp_path / "w.jsonl"), SETTINGS, PRE)
    first = evaluate_imagewikiqa(model, tok, questions, str(tmp_path / "s.jsonl"), SETTINGS, PRE, shard=(0, 2))
    assert first["questions"] == 4 and first["missing"] == 3
    both = evaluate_imagewikiqa(model, tok, questions, str(tmp_path / "s.jsonl"), SETTINGS, PRE, shard=(1, 2))
    assert both == whole
    parts = [r["id"] for i in range(2) for r in records(tmp_path / f"s.jsonl.part{i}-of-2")]
    assert sorted(parts) == [q.id for q in questions]


def test_random_fallback_seed_depends_on_seed_and_question_only():
    draws = {question_rng(1234, 9).choice("ABCD") for _ in range(5)}
    assert len(draws) == 1
    assert [question_rng(1234, i).random() for i in range(3)] == [question_rng(1234, i).random() for i in range(3)]
    assert question_rng(1234, 1).random() != question_rng(1235, 1).random()


def test_model_vqa_protocol_parses_the_generation_alone(world, tmp_path, monkeypatch):
    """The study's fine-tuned row (training_analysis/llava/model_vqa.py with lines 76-77 enabled): prompt
    `...ASSISTANT:ASSISTANT: Let's think step by step. ` in LLaVA's tokenization (prompt format llava_v1), and
    `outputs = tokenizer.batch_decode(output_ids, skip_special_tokens=True)[0].strip()` (model_vqa.py:105-107)
    parsed as it is (eval_imagewikiqa.ipynb: `gen = item["text"]`), without the prefix.  Generation is stubbed
    (the decoding path is the tests above); the prompts it is handed and their encoding are checked."""
    from vlmcls_jax.eval import imagewikiqa_eval
    from vlmcls_jax.eval.vlm_inputs import VLMInputs
    model, tok, questions = world
    inputs = VLMInputs(model, PRE, "llava_v1")
    s = dataclasses.replace(SETTINGS, protocol="model_vqa", pad_to_square=True)
    seen = []

    def fake_answer_batch(model, tokenizer, prompts, images, preprocess, settings, mesh=None):
        seen.extend(prompts)
        assert settings.pad_to_square and preprocess.prompt_format == "llava_v1"
        batch = preprocess.encode(tokenizer, prompts, images, pad_to_square=True)      # LLaVA's chunked ids
        assert batch["input_ids"].shape[0] == len(prompts)
        return [" (B) is it. "] * len(prompts)

    monkeypatch.setattr(imagewikiqa_eval, "answer_batch", fake_answer_batch)
    evaluate_imagewikiqa(model, tok, questions[:3], str(tmp_path / "v.jsonl"), s, inputs)
    assert seen[0].endswith("USER: <image>\n" + questions[0].text + " ASSISTANT:ASSISTANT: Let's think step by step. ")
    got = [r for r in records(tmp_path / "v.jsonl") if not r["image_missing"]]
    assert got and all(r["response"] == "(B) is it." and r["parsed"] == "B" for r in got)
    with pytest.raises(ValueError, match="needs prompt format 'llava_v1'"):
        evaluate_imagewikiqa(model, tok, questions[:3], str(tmp_path / "w.jsonl"), s, PRE)
