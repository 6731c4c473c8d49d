"""Table 13 evaluators (eval.vqa_answers, textvqa, pope, mmvet) on hand-written records whose scores are worked
out by hand below, and the general job end to end: two "models" and MM-Vet's GPT-4 grader are API models
answered by a local server in the vendors' wire formats (tests/vendor_server.py), so every score is known.

The reference code, quoted where tested:
  LLaVA llava/eval/m4c_evaluator.py:242   acc = min(1, float(len(matching_answers)) / 3)
  LLaVA llava/eval/m4c_evaluator.py:202   word = self.NUMBER_MAP.setdefault(word, word)
  LLaVA llava/eval/eval_pope.py:12-17     text.split('.')[0]; text.replace(',', ''); 'No' / 'not' / 'no' in words -> no
  LLaVA llava/eval/eval_pope.py:53-56     precision = TP/(TP+FP); recall = TP/(TP+FN); f1 = 2PR/(P+R)
  MM-Vet mm-vet_evaluator.py:199-212      args.prompt + "\n" + " | ".join([question, answer.replace("<AND>",
                                          " <AND> ").replace("<OR>", " <OR> "), model_pred, ""])
  MM-Vet mm-vet_evaluator.py:228-230      max_tokens=3, temperature=temperature
  MM-Vet mm-vet_evaluator.py:257         + "\nPredict the correctness of the answer (digit): "
  MM-Vet mm-vet_evaluator.py:270,273     temperature += 0.5 ... if try_time > 5: score = 0.0
"""

import json

import pytest
from PIL import Image

from vlmcls_jax.eval import mmvet
from vlmcls_jax.eval.pope import pope_metrics, yes_or_no
from vlmcls_jax.eval.vqa_answers import normalize_answer, vqa_accuracy

# ---- TextVQA: VQA accuracy --------------------------------------------------------------------------------

Q1 = ["2", "2", "2", "two", "3", "3", "3", "3", "3", "4"]      # normalised: "2" x4, "3" x5, "4" x1
Q2 = ["stop"] * 2 + ["stop sign"] * 8


@pytest.mark.parametrize("raw, normalised", [
    ("Two.", "2"), ("The Coca-Cola", "coca cola"), ("dont know", "don't know"), ("1,000", "1000"),
    ("a stop sign!", "stop sign"), ("U.S.A", "usa"), ("3.5", "3.5"), ("none", "0")])
def test_vqa_normalisation(raw, normalised):
    assert normalize_answer(raw) == normalised


def test_vqa_accuracy_by_hand():
    # "Two." -> "2": leaving out a "2" leaves 3 matches (1), any other leaves 4 (1): 1.0
    assert vqa_accuracy("Two.", Q1) == 1.0
    # "4": leaving out the "4" leaves 0 (0); the other 9 leave 1 (1/3): 9/3/10 = 0.3
    assert vqa_accuracy("4", Q1) == pytest.approx(0.3)
    # "STOP" -> "stop": leaving out a "stop" leaves 1 (1/3, twice), else 2 (2/3, 8 times): (2/3 + 16/3)/10 = 0.6
    assert vqa_accuracy("STOP", Q2) == pytest.approx(0.6)
    assert vqa_accuracy("a stop sign", Q2) == 1.0 and vqa_accuracy("cat", Q2) == 0.0
    with pytest.raises(ValueError, match="10 human answers"):
        vqa_accuracy("x", ["x"] * 9)


# ---- POPE -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, answer", [
    ("Yes, there is a dog.", "yes"), ("No.", "no"), ("There is no cat in the image.", "no"),
    ("Yes. There is no cat.", "yes"),        # only the first sentence counts
    ("No, there is not.", "no"), ("Nope", "yes"), ("NO", "yes"), ("It is not there", "no")])
def test_pope_reads_answers_as_llava_does(text, answer):
    assert yes_or_no(text) == answer


def test_pope_metrics_by_hand():
    # preds yes no no yes yes / labels yes yes no no yes: TP 2, FN 1, TN 1, FP 1
    m = pope_metrics(["yes", "no", "no", "yes", "yes"], ["yes", "yes", "no", "no", "yes"])
    assert (m["tp"], m["fn"], m["tn"], m["fp"]) == (2, 1, 1, 1)
    assert m["accuracy"] == pytest.approx(3 / 5) and m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(2 / 3)
    assert m["yes_ratio"] == pytest.approx(3 / 5)
    assert pope_metrics(["no", "no"], ["yes", "no"])["f1"] == 0.0      # no "yes" at all: 0, not a crash


# ---- MM-Vet -----------------------------------------------------------------------------------------------

def test_mmvet_grader_question_and_parse():
    q = mmvet.grader_question("What is x?", "-1<AND>-5", "x = -1")
    assert q == mmvet.PROMPT + "\nWhat is x? | -1 <AND> -5 | x = -1 | "
    assert q.startswith("Compare the ground truth and prediction from AI models, to give a correctness score")
    assert mmvet.grader_question("a", "b", "c", digit=True).endswith(
        " | \nPredict the correctness of the answer (digit): ")
    assert mmvet.parse_score("0.8") == 0.8 and mmvet.parse_score("1.0 (totally") == 1.0
    assert mmvet.parse_score("maybe") is None and mmvet.parse_score("1.2") is None


# ---- the general job, end to end --------------------------------------------------------------------------

ANSWERS = {   # question -> (model a's answer, model b's answer)
    "what number is on the bus?": ("Two.", "4"),
    "what does the sign say?": ("STOP", "a stop sign"),
    "Is there a dog in the image?": ("Yes, there is a dog.", "Yes"),
    "Is there a cat in the image?": ("No.", "Yes"),
    "Is there a car in the image?": ("There is no car in the image.", "No"),
    "Is there a bird in the image?": ("Yes", "No, there is not."),
    "What is x in the equation?": ("PRED_GOOD", "PRED_GOOD"),
    "What does the text say?": ("PRED_DIGIT", "PRED_GOOD"),
    "Explain the joke.": ("PRED_BAD", "PRED_BAD"),
}


def answer(vendor, question, jpeg, model):
    if question.startswith("Compare the ground truth"):           # the MM-Vet grader (text only)
        assert jpeg is None and model == "gpt-4-0613"
        if "PRED_GOOD" in question:
            return "0.8"
        if "PRED_DIGIT" in question:
            return "1.0" if question.endswith("(digit): ") else "maybe"
        return "x"
    asked = question.split("\n")[0]
    return ANSWERS[asked][0 if model == "model-a" else 1]


@pytest.fixture
def benchmarks(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for name in ("img1", "img2", "coco1", "coco2", "mm1", "mm2", "mm3"):
        Image.new("RGB", (12, 10), (len(name) * 20, 90, 30)).save(root / f"{name}.jpg")
    (root / "textvqa.json").write_text(json.dumps({"data": [
        {"question_id": 1, "image_id": "img1", "question": "what number is on the bus?", "answers": Q1},
        {"question_id": 2, "image_id": "img2", "question": "what does the sign say?", "answers": Q2}]}))
    pope = root / "pope"
    pope.mkdir()
    ask = "Is there a {} in the image?".format
    rows = {"popular": [("coco1.jpg", ask("dog"), "yes"), ("coco1.jpg", ask("cat"), "yes"),
                        ("coco2.jpg", ask("car"), "no"), ("coco2.jpg", ask("bird"), "no")],
            "adversarial": [("coco1.jpg", ask("dog"), "yes"), ("coco2.jpg", ask("bird"), "no")]}
    for split, qs in rows.items():
        (pope / f"coco_pope_{split}.json").write_text("".join(
            json.dumps({"question_id": i + 1, "image": img, "text": text, "label": label}) + "\n"
            for i, (img, text, label) in enumerate(qs)))
    (root / "mm-vet.json").write_text(json.dumps({
        "v1_0": {"imagename": "mm1.jpg", "question": "What is x in the equation?", "answer": "-1<AND>-5",
                 "capability": ["rec"]},
        "v1_1": {"imagename": "mm2.jpg", "question": "What does the text say?", "answer": "hello",
                 "capability": ["ocr", "math"]},
        "v1_2": {"imagename": "mm3.jpg", "question": "Explain the joke.", "answer": "puns",
                 "capability": ["rec", "ocr"]}}))
    return root


def test_general_job_writes_table13(benchmarks, server, tmp_path, monkeypatch):
    from configs import table13_general
    from vlmcls_jax.eval import general_job

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    c = table13_general.get_config()
    c.models = ("api:anthropic/model-a", "api:anthropic/model-b")   # "before" and "after" fine-tuning
    c.labels = ("before", "after")
    c.api.base_url = server.url("anthropic")
    c.mmvet.grader_api.base_url = server.url("openai")
    c.textvqa.annotations, c.textvqa.image_root = str(benchmarks / "textvqa.json"), str(benchmarks)
    c.pope.folder, c.pope.image_root = str(benchmarks / "pope"), str(benchmarks)
    c.mmvet.data, c.mmvet.image_root = str(benchmarks / "mm-vet.json"), str(benchmarks)
    reference = tmp_path / "paper.json"
    reference.write_text(json.dumps({"entries": [
        {"model": "before", "setting": "benchmark score", "dataset": "TextVQA", "value": 58.2}]}))
    c.reference = str(reference)
    results = general_job.run(c, str(tmp_path / "run"))

    before, after = results["models"]["before"], results["models"]["after"]
    # TextVQA (test_vqa_accuracy_by_hand): a: (1.0 + 0.6) / 2; b: (0.3 + 1.0) / 2
    assert before["TextVQA"]["score"] == pytest.approx(0.8) and after["TextVQA"]["score"] == pytest.approx(0.65)
    # POPE popular, labels yes yes no no.  a: yes no no yes -> TP1 FN1 TN1 FP1: F1 0.5.
    # b: yes yes no no -> all right: F1 1.0, yes-ratio 0.5.
    assert before["POPE Popular"]["f1"] == pytest.approx(0.5) and before["POPE Popular"]["accuracy"] == 0.5
    assert after["POPE Popular"]["score"] == 1.0 and after["POPE Popular"]["yes_ratio"] == 0.5
    # POPE adversarial, labels yes no.  a: yes yes -> TP1 FP1: P 0.5, R 1, F1 2/3.  b: yes no -> F1 1.
    assert before["POPE Adverse"]["score"] == pytest.approx(2 / 3) and after["POPE Adverse"]["score"] == 1.0
    # MM-Vet, a: 0.8 (rec), 1.0 after the digit retry (ocr, math), 0 after 5 replies (rec, ocr)
    #   rec (0.8 + 0) / 2 = 40, ocr (1 + 0) / 2 = 50, math 100, total 1.8 / 3 = 60
    assert before["MMVet"]["capabilities"] == pytest.approx({"rec": 40.0, "ocr": 50.0, "math": 100.0, "total": 60.0})
    # b: 0.8, 0.8, 0: rec 40, ocr 40, math 80, total 1.6 / 3
    assert after["MMVet"]["score"] == pytest.approx(1.6 / 3)

    grader = [b for v, p, h, b in server.requests if v == "openai"]
    bad = [(b["temperature"], b["max_tokens"]) for b in grader if "PRED_BAD" in b["messages"][0]["content"]]
    # the same graded question for both models is sent once (the reply log): 5 tries at 0, 0, 0.5, 1.0, 1.5
    assert bad == [(0.0, 3), (0.0, 3), (0.5, 3), (1.0, 3), (1.5, 3)]
    table = (tmp_path / "run" / "table.md").read_text()
    assert "| before | benchmark score | 80.0 (58.2) | 50.0 | 66.7 | 60.0 |" in table
    assert "| after | benchmark score | 65.0 | 100.0 | 100.0 | 53.3 |" in table
    assert json.loads((tmp_path / "run" / "after" / "MMVet" / "results.json").read_text())["dataset"] == "MMVet"

    requests = len(server.requests)
    general_job.run(c, str(tmp_path / "run"))      # a rerun resumes: nothing is asked again
    assert len(server.requests) == requests


@pytest.fixture
def server():
    pytest.importorskip("openai")
    pytest.importorskip("anthropic")
    from vendor_server import VendorServer
    with VendorServer(answer) as s:
        yield s


def test_llava_v1_prompt_is_llava_eval_conversation():
    # LLaVA llava/conversation.py:242-251: conv_vicuna_v1, system + sep " " + "USER: " ... + "ASSISTANT:"
    from vlmcls_jax.data.prompt_formats import PROMPT_FORMATS
    system = ("A chat between a curious user and an artificial intelligence assistant. "
              "The assistant gives helpful, detailed, and polite answers to the user's questions.")
    assert PROMPT_FORMATS["llava_v1"]("Is there a dog in the image?") == \
        f"{system} USER: <image>\nIs there a dog in the image? ASSISTANT:"


def test_answer_items_with_a_local_model_resumes(tmp_path):
    """The general job's answering loop on a tiny random LLaVA (the local-model path of Table 13)."""
    import train_fixtures
    from vlmcls_jax.data.preprocess import ClipPreprocessConfig
    from vlmcls_jax.eval.general_job import AnswerSettings, answer_items
    from vlmcls_jax.eval.textvqa import VQAItem
    from vlmcls_jax.eval.vlm_inputs import VLMInputs

    model, tok, examples, _ = train_fixtures.eval_world(tmp_path, 3)
    inputs = VLMInputs(model, ClipPreprocessConfig(size=28, crop_size=(28, 28)), "llava_v1")
    items = [VQAItem(f"popular/{i}", e.image, "Is there a dog in the image?", ("yes",)) for i, e in enumerate(examples)]
    out = tmp_path / "pope.jsonl"
    settings = AnswerSettings(max_new_tokens=3, batch_size=2)
    records = answer_items(model, tok, inputs, items, str(out), settings)
    assert [r["id"] for r in records] == ["popular/0", "popular/1", "popular/2"]
    assert all(isinstance(r["output"], str) and r["answers"] == ["yes"] for r in records)
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:2]) + "\n")          # as if the run died after two answers
    again = answer_items(model, tok, inputs, items, str(out), settings)
    assert again == records and len(out.read_text().splitlines()) == 3


def test_general_job_loads_its_models_in_the_configs_dtype(tmp_path, monkeypatch):
    """Every model of the run is loaded as `config.model` says: bfloat16 by default (as the eval jobs; a 13B
    model in float32 fits no 16 GiB chip even split eight ways with its cache), float32 on request."""
    from configs import table13_general
    from vlmcls_jax.eval import general_job

    asked = []

    def load(checkpoint, mesh, revision, prompt_format, **options):
        asked.append((checkpoint, options["dtype"], options["param_dtype"], options["scan_layers"]))
        raise KeyboardInterrupt   # stop before any benchmark runs

    monkeypatch.setattr(general_job, "load_for_eval", load)
    c = table13_general.get_config()
    c.benchmarks = ()
    with pytest.raises(KeyboardInterrupt):
        general_job.run(c, str(tmp_path / "a"))
    c.model.dtype, c.model.param_dtype = "float32", "float32"
    with pytest.raises(KeyboardInterrupt):
        general_job.run(c, str(tmp_path / "b"))
    assert asked == [("llava-hf/llava-1.5-7b-hf", "bfloat16", "bfloat16", False),
                     ("llava-hf/llava-1.5-7b-hf", "float32", "float32", False)]
