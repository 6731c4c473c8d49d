"""The evaluation job end to end on tiny random models: every experiment, label sets, tables, resume."""

import json

from vlmcls_jax import demo
from vlmcls_jax.eval import job

import train_fixtures


def test_eval_job_writes_tables_and_resumes(tmp_path):
    llava = train_fixtures.tiny_checkpoint(tmp_path / "llava")
    clip = train_fixtures.tiny_clip_checkpoint(tmp_path / "clip")
    manifest = train_fixtures.shapes_dataset(tmp_path / "data", 5)
    (tmp_path / "classes.json").write_text(json.dumps(demo.class_names()))
    c = train_fixtures.tiny_eval_config(llava, clip, manifest, tmp_path / "classes.json", tmp_path / "data")
    workdir = tmp_path / "run"
    results = job.run(c, str(workdir))
    rows = results["rows"]
    assert set(rows) == {"CLIP (single)", "CLIP (single), 2 labels", "VLM open world", "VLM closed world",
                         "VLM closed world, 2 labels", "VLM probabilistic", "VLM probabilistic, 2 labels"}
    assert all(m["examples"] == 5 for m in rows.values())
    assert {m["model"] for m in rows.values()} == {"llava", "clip"}        # checkpoint folder names
    assert rows["CLIP (single), 2 labels"]["top1"] >= 0.0
    table = (workdir / "table.md").read_text().splitlines()
    assert table[0] == "| model | setting | flowers |" and len(table) == 2 + len(rows) + 2
    assert f"| llava | VLM open world | {100 * rows['VLM open world']['substring_accuracy']:.1f} |" in table
    csv_rows = (workdir / "table.csv").read_text().splitlines()
    assert csv_rows[0] == "model,setting,flowers" and len(csv_rows) == 1 + len(rows)
    assert json.loads((workdir / "results.json").read_text())["rows"] == rows
    # The study's scripts load every VLM in bfloat16 (main_results/main.py:63 `torch_dtype=torch.bfloat16`).
    assert {k: results["checkpoints"]["model"][k] for k in ("dtype", "param_dtype")} == \
        {"dtype": "bfloat16", "param_dtype": "bfloat16"}
    assert (workdir / "label_set_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A second run resumes every per-example file and reproduces the numbers.
    assert job.run(c, str(workdir))["rows"] == rows
    assert len((workdir / "outputs" / "open.jsonl").read_text().splitlines()) == 5


def test_prompt_variants_get_their_own_rows_and_files(tmp_path):
    """Table 2 variants: a wording, chain of thought and the class list's order are separate rows and
    output files, so a rerun with another variant never resumes the wrong outputs."""
    from configs import table2
    llava = train_fixtures.tiny_checkpoint(tmp_path / "llava")
    manifest = train_fixtures.shapes_dataset(tmp_path / "data", 3)
    (tmp_path / "classes.json").write_text(json.dumps(demo.class_names()))
    workdir = tmp_path / "run"
    rows = {}
    for variant in ("wording:identify", "order", "cot"):
        c = table2.get_config(f"flowers,{variant}")
        c.model.checkpoint, c.model.label = str(llava), "tiny-llava"
        c.data.manifest, c.data.classes, c.data.image_root, c.data.split = (
            str(manifest), str(tmp_path / "classes.json"), str(tmp_path / "data"), "train")
        c.generation.max_new_tokens, c.generation.batch_size = 2, 4
        rows.update(job.run(c, str(workdir))["rows"])
    assert set(rows) == {"VLM open world, wording identify", "VLM closed world, dataset order",
                         "VLM closed world, chain of thought"}
    assert {m["model"] for m in rows.values()} == {"tiny-llava"}
    files = sorted(p.name for p in (workdir / "outputs").glob("*.jsonl"))
    assert files == ["closed_all_chain_of_thought.jsonl", "closed_all_dataset_order.jsonl",
                     "open_wording_identify.jsonl"]
    cot = json.loads((workdir / "outputs" / files[0]).read_text().splitlines()[0])
    assert cot["prompt"].endswith("ASSISTANT: Let's think step by step.")
    ordered = json.loads((workdir / "outputs" / files[1]).read_text().splitlines()[0])
    assert 'Choose one from "' + ", ".join(dict.fromkeys(demo.class_names())) + '".' in ordered["prompt"]
