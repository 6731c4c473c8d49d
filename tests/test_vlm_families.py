"""Every VLM family runs through the evaluation job by changing only `config.model`: the checkpoint (and,
optionally, `prompt_format`).  Tiny random checkpoints of each family, saved in Hugging Face format."""

import json

import pytest

from vlmcls_jax import demo
from vlmcls_jax.data.prompt_formats import VICUNA_SYSTEM
from vlmcls_jax.eval import job

import train_fixtures

# family -> (prompt format chosen by "auto" from config.json, the open-world prompt the job must have used)
QUESTION = "What type of object is in this photo?"
PROMPTS = {
    "llava_next": ("llava_next_vicuna", f"{VICUNA_SYSTEM} USER: <image>\n{QUESTION} ASSISTANT:"),  # Llama text
    "blip2": ("blip2", f"Question: {QUESTION} Answer:"),
    "instructblip": ("instructblip", QUESTION),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    manifest = train_fixtures.shapes_dataset(root / "images", 4)
    (root / "classes.json").write_text(json.dumps(demo.class_names()))
    return root, manifest


@pytest.mark.parametrize("family", sorted(PROMPTS))
def test_family_runs_every_vlm_experiment_of_the_eval_job(family, data, tmp_path):
    root, manifest = data
    ckpt = train_fixtures.tiny_family_checkpoint(tmp_path / family, family)
    c = train_fixtures.tiny_eval_config(ckpt, ckpt, manifest, root / "classes.json", root / "images")
    c.experiments, c.model.label = ("open", "closed", "scoring"), family
    results = job.run(c, str(tmp_path / "run"))
    assert set(results["rows"]) == {"VLM open world", "VLM closed world", "VLM closed world, 2 labels",
                                    "VLM probabilistic", "VLM probabilistic, 2 labels"}
    assert all(m["examples"] == 4 and m["model"] == family for m in results["rows"].values())
    assert results["checkpoints"]["model"]["prompt_format"] == PROMPTS[family][0]
    first = json.loads((tmp_path / "run" / "outputs" / "open.jsonl").read_text().splitlines()[0])
    assert first["prompt"] == PROMPTS[family][1]
