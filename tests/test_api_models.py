"""Proprietary VLMs through their official SDKs (eval.api_model, eval.api_vendors): the real `openai`,
`anthropic` and `google-genai` clients talk to a local server that speaks each API's wire format
(tests/vendor_server.py), including 429 and 500 replies and a dropped connection.  Nothing of ours is mocked.

The study's requests (yuhui-zh15/VLMClassifier), quoted where the tests check them:
  main_results/main_api.py:113  return base64.b64encode(image_file.read()).decode("utf-8")   (no resizing)
  main_results/main_api.py:126  model="gpt-4-turbo",   (no temperature, no max_tokens; text, then image)
  main_results/main_api.py:135  "url": f"data:image/jpeg;base64,{base64_image}"
  main_results/main_api.py:75   max_tokens=1024,      (Claude; image, then text)
  main_results/main_api.py:85   "media_type": "image/jpeg",
  main_results/main_api.py:42   response = model.generate_content([question, image])   (Gemini: text, then image)
  main_results/main_api.py:166  question = "What type of object is in this photo?"
  main_results/main_api.py:164  question = f"What type of object is in this photo? Choose one from
                                  \"{', '.join(shuffled_choices)}\"."
  imagewikiqa/main_api.py:148   question = f"{item['text']} Let's think step by step."
"""

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("openai")
pytest.importorskip("anthropic")
pytest.importorskip("google.genai")

from configs import table1, table5_imagewikiqa  # noqa: E402
from vendor_server import VendorServer, image_of  # noqa: E402
from vlmcls_jax.eval import imagewikiqa_job, job  # noqa: E402
from vlmcls_jax.eval.api_model import ApiModel, ApiOptions, ApiRequestError  # noqa: E402
from vlmcls_jax.eval.rate_limit import RateLimiter  # noqa: E402

KEY = "sk-test-9f8e7d6c5b4a-never-written"
ENV = {"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY, "GOOGLE_API_KEY": KEY}
COLOURS = {"daisy": (250, 250, 240), "rose": (200, 20, 30), "tulip": (250, 200, 0)}
MODELS = {"openai": "gpt-4-turbo-2024-04-09", "anthropic": "claude-3-opus-20240229",
          "google": "gemini-1.0-pro-vision-001"}


def name_of(jpeg: bytes) -> str:
    """The class whose colour the image is (the server's "model")."""
    pixel = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), np.float32).mean((0, 1))
    return min(COLOURS, key=lambda c: np.abs(pixel - COLOURS[c]).sum())


def answer(vendor, question, jpeg, model):
    if "Choose one of" in question or "\nA." in question:         # ImageWikiQA: option A is always right here
        return "The object is a flower, so the answer is (A)."
    return "It is a red rose." if name_of(jpeg) == "rose" and "Choose" not in question else \
        f"This is a photo of a {name_of(jpeg)}."


@pytest.fixture
def server():
    with VendorServer(answer) as s:
        yield s


@pytest.fixture
def dataset(tmp_path):
    """6 images (2 per class; JPEG files except one PNG), a manifest and a class list."""
    root = tmp_path / "data"
    root.mkdir()
    rows = []
    for i, name in enumerate(list(COLOURS) * 2):
        fmt = "PNG" if i == 5 else "JPEG"
        path = root / f"{i}.{fmt.lower()}"
        Image.new("RGB", (40 + i, 30), COLOURS[name]).save(path, format=fmt)
        rows.append({"image": path.name, "label": name, "split": "test"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "classes.json").write_text(json.dumps(list(COLOURS)))
    return root


def eval_config(vendor, server, root):
    c = table1.get_config("flowers")
    c.experiments = ("open", "closed")
    c.model.checkpoint = f"api:{vendor}/{MODELS[vendor]}"
    c.model.api.base_url = server.url(vendor)
    c.model.api.backoff_seconds, c.model.api.concurrency = 0.01, 4
    c.data.manifest, c.data.classes, c.data.image_root = (str(root / "manifest.jsonl"), str(root / "classes.json"),
                                                          str(root))
    c.generation.batch_size = 4
    return c


def workdir_text(workdir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in workdir.rglob("*") if p.is_file())


@pytest.mark.parametrize("vendor", ["openai", "anthropic", "google"])
def test_eval_job_through_each_sdk_with_failures_then_resumes_for_free(vendor, server, dataset, tmp_path,
                                                                       monkeypatch, capsys):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    server.plan += ["429", "500", "drop"]
    workdir = tmp_path / "run"
    results = job.run(eval_config(vendor, server, dataset), str(workdir))

    # Every example answered once per row (12 requests) plus the three failed attempts, retried.
    assert len(server.requests) == 12 + 3
    out = capsys.readouterr().out
    assert out.count("retry 1 of 6") + out.count("retry 2 of 6") + out.count("retry 3 of 6") == 3
    assert "429" in out and "500" in out and "for image " in out          # the retry names the image
    open_row, closed_row = results["rows"]["VLM open world"], results["rows"]["VLM closed world"]
    # Open world: the roses are answered "a red rose" (substring right, exact wrong); closed: "a photo of a X".
    assert open_row["substring_accuracy"] == 1.0 and closed_row["substring_accuracy"] == 1.0
    assert open_row["model"] == MODELS[vendor]

    # The study's requests, as the SDK put them on the wire.
    vendor_, path, headers, body = server.requests[-1]
    first = json.loads((workdir / "outputs" / "open.jsonl").read_text().splitlines()[0])
    assert first["prompt"] == "What type of object is in this photo?"                       # main_api.py:166
    closed = json.loads((workdir / "outputs" / "closed_all.jsonl").read_text().splitlines()[0])["prompt"]
    names = closed.removeprefix('What type of object is in this photo? Choose one from "').removesuffix('".')
    assert sorted(names.split(", ")) == sorted(COLOURS)                                       # main_api.py:164
    bodies = [b for _, _, _, b in server.requests]
    if vendor == "openai":
        assert headers["authorization"] == f"Bearer {KEY}" and path == "/v1/chat/completions"
        assert body["model"] == MODELS[vendor] and "temperature" not in body and "max_tokens" not in body
        assert [p["type"] for p in body["messages"][0]["content"]] == ["text", "image_url"]
        sent = [base64.b64decode(b["messages"][0]["content"][1]["image_url"]["url"].split(",")[1]) for b in bodies]
    elif vendor == "anthropic":
        assert KEY in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
        assert body["max_tokens"] == 1024 and "temperature" not in body
        assert [p["type"] for p in body["messages"][0]["content"]] == ["image", "text"]
        sent = [base64.b64decode(b["messages"][0]["content"][0]["source"]["data"]) for b in bodies]
    else:
        assert headers["x-goog-api-key"] == KEY and path.endswith(f"/models/{MODELS[vendor]}:generateContent")
        assert "generationConfig" not in body and "generation_config" not in body
        assert ["text" in p for p in body["contents"][0]["parts"]] == [True, False]
        sent = [image_of(vendor, b) for b in bodies]
    # JPEG files go as their own bytes (main_api.py:113); the PNG is re-encoded as a JPEG.
    files = {(dataset / f"{i}.jpeg").read_bytes() for i in range(5)}
    assert files <= set(sent)
    assert sum(s not in files for s in set(sent)) == 1 and all(s[:2] == b"\xff\xd8" for s in sent)

    # Tokens and cost: input 100 + words of the question, output words of the answer (vendor_server).
    usage = json.loads((workdir / "results.json").read_text())["api_usage"]
    log = [json.loads(x) for x in (workdir / "api_responses.jsonl").read_text().splitlines()]
    assert usage["requests"] == len(log) == 12 and usage["this_run"]["retries"] == 3
    assert usage["input_tokens"] == sum(100 + len(r["prompt"].split()) for r in log)
    assert usage["output_tokens"] == sum(len(r["output"].split()) for r in log)
    price_in, price_out = {"openai": (10, 30), "anthropic": (15, 75), "google": (0.5, 1.5)}[vendor]
    cost = (usage["input_tokens"] * price_in + usage["output_tokens"] * price_out) / 1e6
    assert usage["cost_usd"] == pytest.approx(cost)

    # The key is nowhere on disk or in the output.
    assert KEY not in workdir_text(workdir) and KEY not in out + capsys.readouterr().err

    # A rerun sends nothing (even with the per-row outputs gone: the replies are in api_responses.jsonl).
    (workdir / "outputs" / "open.jsonl").unlink()
    again = job.run(eval_config(vendor, server, dataset), str(workdir))
    assert len(server.requests) == 15
    assert again["rows"]["VLM open world"]["substring_accuracy"] == 1.0
    assert again["api_usage"]["this_run"] == {"sent": 0, "reused_from_log": 6, "retries": 0}


def test_a_failed_request_stops_the_job_naming_it_and_keeps_the_batchs_other_replies(server, dataset, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    c = eval_config("openai", server, dataset)
    c.experiments = ("open",)
    c.model.api.max_retries, c.model.api.concurrency = 1, 1   # one at a time: the plan hits one request
    server.plan += ["ok", "500", "500"]           # one request of the first batch fails twice: retries exhausted
    with pytest.raises(ApiRequestError, match=r"request for image .*\.jpeg \(question 'What type.*failed 2 times"):
        job.run(c, str(tmp_path / "run"))
    log = (tmp_path / "run" / "api_responses.jsonl").read_text().splitlines()
    assert len(log) == 3                          # the batch's other three replies were kept as they came
    assert not (tmp_path / "run" / "outputs" / "open.jsonl").exists() or \
        (tmp_path / "run" / "outputs" / "open.jsonl").read_text() == ""
    before = len(server.requests)
    results = job.run(c, str(tmp_path / "run"))
    assert len(server.requests) - before == 6 - 3  # only what had no reply is sent again
    assert results["rows"]["VLM open world"]["examples"] == 6

    server.plan += ["400"]                         # a client error is not retried
    c.model.checkpoint = "api:openai/gpt-4-turbo"
    with pytest.raises(ApiRequestError, match=r"failed: BadRequestError 400"):
        job.run(c, str(tmp_path / "run2"))


def test_scoring_and_missing_key_fail_before_any_request(server, dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    c = eval_config("anthropic", server, dataset)
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY"):
        job.run(c, str(tmp_path / "a"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    c.experiments = ("open", "scoring")
    with pytest.raises(ValueError, match="token probabilities"):
        job.run(c, str(tmp_path / "b"))
    assert server.requests == []
    c.model.checkpoint = "api:mistral/pixtral"
    with pytest.raises(ValueError, match="api:VENDOR/MODEL"):
        job.run(c, str(tmp_path / "c"))


def test_imagewikiqa_job_sends_the_studys_chain_of_thought_question(server, dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    rows = [{"image": "0.jpeg", "text": f"What is this?\nA. {a}\nB. grass\nC. sky\nD. car\nChoose A, B, C, or D.",
             "label": label, "wiki": "", "classname": a} for a, label in (("daisy", "A"), ("rose", "B"))]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = table5_imagewikiqa.get_config()
    c.model.checkpoint = "api:google/gemini-1.0-pro-vision-001"
    c.model.api.base_url = server.url("google")
    c.data.questions, c.data.image_root = str(tmp_path / "q.jsonl"), str(dataset)
    results = imagewikiqa_job.run(c, str(tmp_path / "run"))
    questions = [b["contents"][0]["parts"][0]["text"] for _, _, _, b in server.requests]
    assert sorted(questions) == sorted(f"{r['text']} Let's think step by step." for r in rows)   # main_api.py:148
    row = results["rows"]["ImageWikiQA (chain of thought)"]
    # The reply "... the answer is (A)." is parsed alone (eval.ipynb: gen = item["output"]): A, right then wrong.
    assert row["accuracy"] == 0.5 and row["parsed_by"]["bracket"] == 2
    assert results["api_usage"]["requests"] == 2 and results["api_usage"]["cost_usd"] > 0


def test_rate_limiter_holds_requests_and_tokens_per_minute():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(requests_per_minute=2, tokens_per_minute=1000, clock=lambda: now[0], sleep=sleep)
    a = limiter.acquire(300)
    now[0] = 10.0
    limiter.acquire(300)
    now[0] = 20.0
    limiter.acquire(300)                 # third request in a minute: waits until the first leaves (t=60)
    assert now[0] == pytest.approx(60.0)
    limiter.settle(a, 300)
    # t=60: the window holds the requests of t=10 and t=60 (600 tokens); 500 more tokens wait for t=10's to
    # leave (t=70), and the request count allows it then too.
    limiter.acquire(500)
    assert now[0] == pytest.approx(70.0) and len(slept) == 2
    big = RateLimiter(tokens_per_minute=100, clock=lambda: now[0], sleep=sleep)
    big.acquire(50)
    big.acquire(500)                     # larger than the budget: waits for an empty window, then goes alone
    assert now[0] == pytest.approx(130.0)


def test_api_model_reuses_replies_and_sends_a_repeated_request_once(server, dataset, tmp_path):
    log = tmp_path / "replies.jsonl"
    model = ApiModel("api:openai/gpt-4-turbo", ApiOptions(base_url=server.url("openai")), str(log),
                     environ={"OPENAI_API_KEY": KEY})
    images = [str(dataset / "0.jpeg"), str(dataset / "1.jpeg"), str(dataset / "0.jpeg")]
    texts = model.answer(["q?", "q?", "q?"], images)
    assert texts == ["This is a photo of a daisy.", "It is a red rose.", "This is a photo of a daisy."]
    assert len(server.requests) == 2
    log.write_text(log.read_text() + '{"id": "torn')        # a crash while writing the next line
    again = ApiModel("api:openai/gpt-4-turbo", ApiOptions(base_url=server.url("openai")), str(log),
                     environ={"OPENAI_API_KEY": KEY})
    assert again.answer(["q?"], images[1:2]) == ["It is a red rose."] and len(server.requests) == 2
    assert again.usage()["this_run"] == {"sent": 0, "reused_from_log": 1, "retries": 0}


def test_study_sample_is_the_studys_shuffled_subset():
    """The API runs' subset is the eval job's study order (seed 1234) cut at max_examples=100."""
    import random

    from vlmcls_jax.eval.candidates import study_order
    data = [{"image": f"{i}.jpg"} for i in range(500)]
    expected = list(data)
    random.seed(1234)                 # main_api.py:19-20, 197
    random.shuffle(expected)
    expected = expected[:100]
    c = __import__("configs.table1_api", fromlist=["get_config"]).get_config("openai,flowers")
    assert c.sampling == "study" and c.seed == 1234
    assert study_order(data, c.seed)[: c.max_examples] == expected


def test_table1_api_config():
    from configs import table1_api
    c = table1_api.get_config("anthropic,imagenet")
    assert c.model.checkpoint == "api:anthropic/claude-3-opus-20240229" and c.data.split == "valid"
    assert c.max_examples == 100 and c.experiments == ("open", "closed")
    with pytest.raises(ValueError, match="VENDOR 'mistral'"):
        table1_api.get_config("mistral,flowers")


def test_api_model_requests_wait_for_the_rate_limit(server, dataset, tmp_path):
    now, slept = [0.0], []

    def sleep(s):
        slept.append(s)
        now[0] += s

    model = ApiModel("api:anthropic/claude-3-opus-20240229",
                     ApiOptions(base_url=server.url("anthropic"), requests_per_minute=2, concurrency=1),
                     str(tmp_path / "replies.jsonl"), environ={"ANTHROPIC_API_KEY": KEY}, clock=lambda: now[0],
                     sleep=sleep)
    model.answer(["q?"] * 3, [str(dataset / f"{i}.jpeg") for i in range(3)])
    assert len(server.requests) == 3 and slept == [pytest.approx(60.0)]   # the third waited for the window


def test_encode_image_sends_jpeg_files_as_they_are(dataset):
    from vlmcls_jax.eval.api_vendors import encode_image
    jpeg = dataset / "0.jpeg"
    assert encode_image(str(jpeg)) == jpeg.read_bytes()                  # main_api.py:113, no resizing
    png = encode_image(str(dataset / "5.png"))
    assert png[:2] == b"\xff\xd8" and Image.open(io.BytesIO(png)).size == (45, 30)
    small = encode_image(str(jpeg), max_side=20)                         # only when asked
    assert Image.open(io.BytesIO(small)).size == (20, 15)
