"""Table 8: the class -> WordNet synonyms file built by nltk's WordNet reader from a database in WordNet's own
format (tests/wordnet_fixture.py: real ImageNet synsets at their real offsets), and the eval job's
"VLM open world, ImageNet synonyms" row, computed from open-world answers that a local server gives in the
OpenAI wire format (tests/vendor_server.py), so the counts are known by hand."""

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("nltk")

from vlmcls_jax.eval import synonyms  # noqa: E402
from wordnet_fixture import write_wordnet  # noqa: E402

CLASSES = ["tench", "goldfish", "great white shark"]
WNIDS = ["n01440764", "n01443537", "n01484850"]
# image colour -> (label index, the server's answer)
IMAGES = [((200, 0, 0), 0, "It is a Tinca tinca."),           # a synonym only
          ((0, 200, 0), 1, "A goldfish in a bowl."),           # the class name
          ((0, 0, 200), 2, "This is a white shark."),          # a synonym ("great white shark" is not in it)
          ((200, 200, 0), 0, "Probably a carp.")]              # wrong either way


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    rows = []
    for i, (colour, label, _) in enumerate(IMAGES):
        Image.new("RGB", (16, 16), colour).save(root / f"{i}.jpg")
        rows.append({"image": f"{i}.jpg", "label": CLASSES[label], "label_idx": label,
                     "imagenet_label": WNIDS[label], "split": "valid"})
    (root / "imagenet.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "classes.json").write_text(json.dumps(CLASSES))
    return root


def test_builder_reads_wordnet_lemmas(data, tmp_path, capsys):
    out = tmp_path / "synonyms.json"
    synonyms.main(["--classes", str(data / "classes.json"), "--manifest", str(data / "imagenet.jsonl"),
                   "--wordnet", str(write_wordnet(tmp_path / "wordnet")), "--out", str(out)])
    assert json.loads(out.read_text()) == [
        {"class": "tench", "wnid": "n01440764", "synonyms": ["tench", "Tinca tinca"]},
        {"class": "goldfish", "wnid": "n01443537", "synonyms": ["goldfish", "Carassius auratus"]},
        {"class": "great white shark", "wnid": "n01484850", "synonyms": [
            "great white shark", "white shark", "man-eater", "man-eating shark", "Carcharodon carcharias"]}]
    assert "3 classes, 6 synonyms besides the class names" in capsys.readouterr().out
    with pytest.raises(ValueError, match="class 1 .* is not a WordNet noun id"):
        synonyms.build_synonyms(None, ["n01440764", "01443537"], CLASSES[:2])
    with pytest.raises(ValueError, match=r"synonyms.json: entry 0 is 'tench'.*has 'carp' there"):
        synonyms.load_synonyms(str(out), ["carp", "goldfish", "great white shark"])


def test_eval_job_adds_the_synonyms_row(data, tmp_path, monkeypatch):
    pytest.importorskip("openai")
    from configs import table1
    from vendor_server import VendorServer
    from vlmcls_jax.eval import job

    file = tmp_path / "synonyms.json"
    synonyms.main(["--classes", str(data / "classes.json"), "--manifest", str(data / "imagenet.jsonl"),
                   "--wordnet", str(write_wordnet(tmp_path / "wordnet")), "--out", str(file)])

    def answer(vendor, question, jpeg, model):
        import io
        pixel = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), np.float32).mean((0, 1))
        return min(IMAGES, key=lambda x: np.abs(pixel - np.array(x[0])).sum())[2]

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with VendorServer(answer) as server:
        c = table1.get_config("imagenet")
        c.experiments = ("open",)
        c.model.checkpoint = "api:openai/gpt-4-turbo-2024-04-09"
        c.model.api.base_url = server.url("openai")
        c.data.manifest, c.data.classes, c.data.image_root, c.data.split = (
            str(data / "imagenet.jsonl"), str(data / "classes.json"), str(data), "valid")
        c.synonyms = str(file)
        results = job.run(c, str(tmp_path / "run"))
    rows = results["rows"]
    assert rows["VLM open world"]["substring_accuracy"] == 0.25                  # goldfish only
    row = rows["VLM open world, ImageNet synonyms"]
    assert row["substring_accuracy"] == 0.75 and row["without_synonyms"] == 0.25 and row["gained"] == 2
    table = (tmp_path / "run" / "table.md").read_text()
    # the paper's Table 8 value for GPT-4 with synonyms (51.1) beside ours
    assert "| gpt-4-turbo-2024-04-09 | VLM open world, ImageNet synonyms | 75.0 (51.1) |" in table
