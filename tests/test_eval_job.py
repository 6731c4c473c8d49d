"""The evaluation job end to end on tiny random models: every experiment, label sets, tables, resume."""

import json

import pytest

import train_fixtures
from vlmcls_jax import demo
from vlmcls_jax.eval import job, tables


def test_eval_job_writes_tables_and_resumes(tmp_path, capsys):
    llava = train_fixtures.tiny_checkpoint(tmp_path / "llava")
    clip = train_fixtures.tiny_clip_checkpoint(tmp_path / "clip")
    manifest = train_fixtures.shapes_dataset(tmp_path / "data", 5)
    (tmp_path / "classes.json").write_text(json.dumps(demo.class_names()))
    c = train_fixtures.tiny_eval_config(llava, clip, manifest, tmp_path / "classes.json", tmp_path / "data")
    workdir = tmp_path / "run"
    c.scoring.subset_size = 4              # scoring.subset="study": the first N of the seed's shuffle
    results = job.run(c, str(workdir))
    rows = results["rows"]
    assert set(rows) == {"CLIP (single)", "CLIP (single), 2 labels", "VLM open world", "VLM closed world",
                         "VLM closed world, 2 labels", "VLM probabilistic", "VLM probabilistic, 2 labels"}
    assert all(m["examples"] == (4 if "probabilistic" in row else 5) for row, m in rows.items())
    assert {m["model"] for m in rows.values()} == {"llava", "clip"}        # checkpoint folder names
    assert rows["CLIP (single), 2 labels"]["top1"] >= 0.0
    table = (workdir / "table.md").read_text().splitlines()
    shown = sum(len(tables.table_rows(s, m)) for s, m in rows.items())   # probabilistic: sum, avg, cfg rows
    assert table[0] == "| model | setting | flowers |" and len(table) == 2 + shown + 2 and shown == len(rows) + 4
    assert f"| llava | VLM open world | {100 * rows['VLM open world']['substring_accuracy']:.1f} |" in table
    csv_rows = (workdir / "table.csv").read_text().splitlines()   # the paper's column: none for label "llava"
    assert csv_rows[0] == "model,setting,flowers,flowers (paper),row" and len(csv_rows) == 1 + shown
    assert json.loads((workdir / "results.json").read_text())["rows"] == rows
    # The study's scripts load every VLM in bfloat16 (main_results/main.py:63 `torch_dtype=torch.bfloat16`).
    assert {k: results["checkpoints"]["model"][k] for k in ("dtype", "param_dtype")} == \
        {"dtype": "bfloat16", "param_dtype": "bfloat16"}
    assert (workdir / "label_set_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # sampling="study" (the default): the closed-world choices are the study's draws over the whole split
    # (eval.candidates.study_plan; tests/test_study_sampling.py checks them against main.py's lines), and
    # the CLIP rows' headline is the substring rule, with per-example predictions written.
    from vlmcls_jax.data.sources import ClassList, read_manifest
    from vlmcls_jax.eval.candidates import study_plan
    names = demo.class_names()
    split = read_manifest(c.data.manifest, c.data.image_root, ClassList(tuple(names)), split=c.data.split)
    order, plan = study_plan(split, names, len(set(names)), c.seed)
    closed = [json.loads(x) for x in (workdir / "outputs" / "closed_all.jsonl").read_text().splitlines()]
    assert all(r["prompt"].count('Choose one from "' + ", ".join(plan[r["id"]]) + '".') == 1 for r in closed)
    assert [r["id"] for r in closed] == [e.id for e in order]          # evaluated in the study's order
    scored = [json.loads(x)["id"] for x in (workdir / "outputs" / "scoring.jsonl").read_text().splitlines()]
    assert scored == [e.id for e in order[:4]]
    clip_rows = [json.loads(x) for x in (workdir / "outputs" / "CLIP_single.jsonl").read_text().splitlines()]
    assert len(clip_rows) == 5 and rows["CLIP (single)"]["substring_accuracy"] == \
        sum(r["substring_match"] for r in clip_rows) / 5
    # A second run resumes every per-example file and reproduces the numbers.
    assert job.run(c, str(workdir))["rows"] == rows
    assert len((workdir / "outputs" / "open.jsonl").read_text().splitlines()) == 5
    # A rerun of one experiment keeps the other rows (merged, not dropped), and ends with a summary.
    c.experiments = ("open",)
    assert job.run(c, str(workdir))["rows"] == rows
    assert json.loads((workdir / "results.json").read_text())["rows"] == rows
    table = (workdir / "table.md").read_text()
    assert all(f" | {row} | " in table for row in rows)     # every row, the earlier ones included
    out = capsys.readouterr().out.splitlines()
    assert out[-len(rows) - 3] == "flowers: 5 examples"
    assert out[-2].startswith("wrote ") and out[-2].endswith("/label_set_size.png")
    assert out[-1] == f"wrote per-example outputs to {workdir / 'outputs'}/"
    # Another checkpoint or generation length in this workdir: refused before anything loads, naming the change;
    # with overwrite, a fresh subfolder of its own.
    c.generation.max_new_tokens = 4
    with pytest.raises(ValueError, match=r"holds outputs of another setting \(generation.max_new_tokens 3 -> 4;"):
        job.run(c, str(workdir))
    c.model.checkpoint = str(clip)
    with pytest.raises(ValueError, match=r"model.checkpoint .*/llava\" -> .*/clip\"; model.checkpoint identity"):
        job.run(c, str(workdir))
    c.model.checkpoint, c.overwrite = str(llava), True
    fresh = job.run(c, str(workdir))
    assert len((workdir / "fresh-1" / "outputs" / "open.jsonl").read_text().splitlines()) == 5
    assert set(fresh["rows"]) == {"VLM open world"}            # the earlier rows belong to the other setting
    assert json.loads((workdir / "fingerprint.json").read_text())["generation.max_new_tokens"] == 3
    assert json.loads((workdir / "fresh-1" / "fingerprint.json").read_text())["generation.max_new_tokens"] == 4
    open_line = [line for line in out[-len(rows) - 3:] if line.startswith("  VLM open world ")]
    assert open_line[0].endswith(f"  {100 * rows['VLM open world']['substring_accuracy']:5.1f}%  (llava)")


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
    assert json.loads((workdir / "results.json").read_text())["rows"] == rows   # each run added its row
    assert {m["model"] for m in rows.values()} == {"tiny-llava"}
    files = sorted(p.name for p in (workdir / "outputs").glob("*.jsonl"))
    assert files == ["closed_all_chain_of_thought.jsonl", "closed_all_dataset_order.jsonl",
                     "open_wording_identify.jsonl"]
    cot = json.loads((workdir / "outputs" / files[0]).read_text().splitlines()[0])
    assert cot["prompt"].endswith("ASSISTANT: Let's think step by step.")
    ordered = json.loads((workdir / "outputs" / files[1]).read_text().splitlines()[0])
    assert 'Choose one from "' + ", ".join(dict.fromkeys(demo.class_names())) + '".' in ordered["prompt"]


def test_earlier_rows_are_kept_only_from_the_same_examples_and_checkpoint(tmp_path):
    clip, vlm = {"checkpoint": "clip-a"}, {"checkpoint": "llava-a", "prompt_format": "llava"}
    earlier = {"dataset": "flowers", "examples": 5, "skipped_images": 0, "checkpoints": {"clip": clip, "model": vlm},
               "rows": {"CLIP (study)": {"top1": 0.5, "model": "a"}, "VLM open world": {"substring_accuracy": 0.2},
                        "VLM closed world": {"substring_accuracy": 0.4}}}
    (tmp_path / "results.json").write_text(json.dumps(earlier))
    now = {"dataset": "flowers", "examples": 5, "skipped_images": 0, "checkpoints": {"model": vlm},
           "rows": {"VLM open world": {"substring_accuracy": 0.3}}}
    merged = job.merge_earlier(now, str(tmp_path))
    assert merged["rows"] == {"CLIP (study)": {"top1": 0.5, "model": "a"},
                              "VLM closed world": {"substring_accuracy": 0.4}, "VLM open world": {"substring_accuracy": 0.3}}
    assert merged["checkpoints"] == {"clip": clip, "model": vlm}
    other_vlm = dict(now, checkpoints={"model": dict(vlm, checkpoint="llava-b")})
    assert set(job.merge_earlier(other_vlm, str(tmp_path))["rows"]) == {"CLIP (study)", "VLM open world"}
    other_examples = dict(now, examples=4)
    assert job.merge_earlier(other_examples, str(tmp_path)) == other_examples


def test_a_batch_that_cannot_split_over_the_mesh_is_refused_before_loading(tmp_path, monkeypatch):
    """mesh (4, 1, 2) on the 8 test devices splits batches 4 ways: the study's scoring batch of 1 is refused
    with the field's name before any checkpoint is read."""
    from configs import table1
    manifest = train_fixtures.shapes_dataset(tmp_path / "data", 3)
    (tmp_path / "classes.json").write_text(json.dumps(demo.class_names()))
    c = table1.get_config("flowers")
    c.model.checkpoint = str(tmp_path / "no_such_checkpoint")
    c.data.manifest, c.data.classes, c.data.image_root, c.data.split = (
        str(manifest), str(tmp_path / "classes.json"), str(tmp_path / "data"), "train")
    c.experiments, c.mesh_shape = ("open", "scoring"), (4, 1, 2)
    monkeypatch.setattr(job, "load_for_eval", lambda *a, **k: pytest.fail("loaded before the check"))
    with pytest.raises(ValueError, match=r"^config\.scoring\.batch_size=1: a batch splits over the 4 batch devices"):
        job.run(c, str(tmp_path / "run"))
