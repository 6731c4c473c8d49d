"""Result tables: rows (model, setting), a column per dataset, the paper's number beside ours; the shipped
paper numbers; every job's results.json merged by `python -m vlmcls_jax.eval.tables`."""

import json
import pathlib

import pytest

from vlmcls_jax.eval import tables

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(dataset, rows, examples=10):
    return {"dataset": dataset, "examples": examples, "rows": rows}


SWEEP = {"0.0": 0.1, "1.0": 0.3333, "2.0": 0.5, "3.0": 0.5, "4.0": 0.25}   # best: 0.5, first at alpha 2
RUNS = [run("flowers", {"CLIP (study)": {"model": "clip-l", "top1": 0.75},
                        "VLM open world": {"model": "llava-7b", "substring_accuracy": 0.125}}),
        run("cars", {"CLIP (study)": {"model": "clip-l", "top1": 0.5},
                     "VLM probabilistic": {"model": "llava-7b", "sum_accuracy": 0.3333, "avg_accuracy": 0.25,
                                           "cfg_accuracy": 0.5, "cfg_sweep": SWEEP}}, examples=3)]


def test_merge_into_one_table_per_dataset_column(tmp_path):
    tables.write_tables(RUNS, str(tmp_path), paper=False)
    md = (tmp_path / "table.md").read_text().splitlines()
    assert md[:7] == ["| model | setting | flowers | cars |", "| --- | --- | --- | --- |",
                      "| clip-l | CLIP (study) | 75.0 | 50.0 |", "| llava-7b | VLM open world | 12.5 | - |",
                      "| llava-7b | VLM probabilistic | - | 33.3 |",
                      "| llava-7b | VLM probabilistic (avg rule) | - | 25.0 |",
                      "| llava-7b | VLM probabilistic (cfg rule, best alpha) | - | 50.0 |"]
    assert "flowers 10, cars 3" in md[-1] and "llava-7b / cars: alpha 2." in md[-1]
    assert (tmp_path / "table.csv").read_text().splitlines() == [
        "model,setting,flowers,cars", "clip-l,CLIP (study),75.00,50.00", "llava-7b,VLM open world,12.50,",
        "llava-7b,VLM probabilistic,,33.33", "llava-7b,VLM probabilistic (avg rule),,25.00",
        "llava-7b,\"VLM probabilistic (cfg rule, best alpha)\",,50.00"]


def test_probabilistic_rows_avg_cfg_and_the_whole_sweep():
    """Item 9: Avg and CFG rows, the alpha named; label-set and wording variants keep their suffix."""
    rows = tables.table_rows("VLM probabilistic, wording identify, 5 labels", RUNS[1]["rows"]["VLM probabilistic"],
                             cfg_sweep=True)
    assert [r[0] for r in rows[:3]] == ["VLM probabilistic, wording identify, 5 labels",
                                        "VLM probabilistic (avg rule), wording identify, 5 labels",
                                        "VLM probabilistic (cfg rule, best alpha), wording identify, 5 labels"]
    assert rows[2][1:] == (0.5, "alpha 2")          # a tie (alpha 2 and 3) goes to the smaller alpha
    assert [r[:2] for r in rows[3:]] == [
        (f"VLM probabilistic (cfg rule, alpha {a}), wording identify, 5 labels", SWEEP[f"{a}.0"]) for a in range(5)]
    with pytest.raises(ValueError, match="cfg_sweep is empty"):
        tables.best_alpha({})


def test_probe_rows_study_protocol_and_validation_selected():
    metrics = {"model": "m", "best_on_test": {"epoch": 7, "test_accuracy": 0.9},
               "val_selected": {"epoch": 3, "val_accuracy": 0.8, "test_accuracy": 0.85}}
    assert tables.table_rows("llm:-1/last", metrics) == [("llm:-1/last", 0.9, ""),
                                                         ("llm:-1/last, epoch chosen on validation", 0.85, "")]
    assert tables.table_rows("llm:-1/last", dict(metrics, val_selected=None)) == [("llm:-1/last", 0.9, "")]
    assert tables.headline(metrics) == 0.9
    assert tables.headline({"exact_accuracy": 0.4, "substring_accuracy": 0.6, "headline": "exact_accuracy"}) == 0.4
    with pytest.raises(KeyError, match="no accuracy"):
        tables.headline({"examples": 3})


def test_paper_numbers_beside_ours_and_not_run_rows(tmp_path):
    paper = tmp_path / "paper.json"
    entries = [dict(model="clip-l", setting="CLIP (study)", dataset="cars", value=60.25, table="Table 1, closed"),
               dict(model="clip-l", setting="CLIP (study)", dataset="imagenet", value=70.0, table="Table 1, closed"),
               dict(model="gpt-4", setting="VLM open world", dataset="flowers", value=51.0, table="Table 1, open"),
               dict(model="gpt-4", setting="VLM open world", dataset="TextVQA", value=9.0, table="Table 13, x"),
               dict(model="eva", setting="probe", dataset="flowers", value=99.2, table="Table 3 right, Linear")]
    paper.write_text(json.dumps({"entries": entries}))
    md = tables.write_tables(RUNS, str(tmp_path / "out"), str(paper))
    lines = md.splitlines()
    assert "| clip-l | CLIP (study) | 75.0 | 50.0 (60.25) |" in lines
    # A paper row of a paper table ours appear in (Table 1), in our columns only; Table 3 right is not touched.
    assert lines[-3] == "| gpt-4 | VLM open world | not run (51.0) | - |" and "| eva |" not in md
    assert f"In parentheses: {paper} for the same model" in lines[-1]
    csv = (tmp_path / "out" / "table.csv").read_text().splitlines()
    assert csv[0] == "model,setting,flowers,flowers (paper),cars,cars (paper),row"
    assert csv[1] == "clip-l,CLIP (study),75.00,,50.00,60.25,ours" and csv[-1] == "gpt-4,VLM open world,,51.0,,,not run"
    everything = tables.render(RUNS, tables.load_paper(str(paper)), not_run="all")[0].splitlines()
    assert everything[0] == "| model | setting | flowers | cars | imagenet | TextVQA |"
    assert "| clip-l | CLIP (study) | 75.0 | 50.0 (60.25) | not run (70.0) | - |" in everything
    assert "| gpt-4 | VLM open world | not run (51.0) | - | - | not run (9.0) |" in everything
    assert "| eva | probe | not run (99.2) | - | - | - |" in everything
    assert "not run (" not in tables.render(RUNS, tables.load_paper(str(paper)), not_run="none")[0]
    paper.write_text(json.dumps({"entries": [{"model": "clip-l", "dataset": "cars", "value": 1}]}))
    with pytest.raises(ValueError, match=r"entries\[0\] lacks \['setting'\]"):
        tables.load_paper(str(paper))
    paper.write_text(json.dumps({"entries": [entries[0], entries[0]]}))
    with pytest.raises(ValueError, match=r"entries\[1\] repeats"):
        tables.load_paper(str(paper))


def test_cli_and_errors(tmp_path, capsys):
    for r in RUNS:
        (tmp_path / r["dataset"]).mkdir()
        (tmp_path / r["dataset"] / "results.json").write_text(json.dumps(r))
    tables.main([str(tmp_path / "flowers"), str(tmp_path / "cars" / "results.json"), "--out", str(tmp_path / "t"),
                 "--no-paper", "--cfg-sweep"])
    out = capsys.readouterr().out
    assert "| clip-l | CLIP (study) | 75.0 | 50.0 |" in out and "(cfg rule, alpha 4) | - | 25.0 |" in out
    with pytest.raises(ValueError, match=r"two runs give model 'clip-l', setting 'CLIP \(study\)' on dataset 'flowers'"):
        tables.merge([RUNS[0], RUNS[0]])
    with pytest.raises(FileNotFoundError, match="no results.json"):
        tables.load_run(str(tmp_path / "t"))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="missing field 'dataset'"):
        tables.load_run(str(tmp_path / "bad.json"))
    (tmp_path / "old_probe.json").write_text(json.dumps(run("flowers", {"llm:-1/last": {"best_on_test": {}}})))
    with pytest.raises(ValueError, match="row 'llm:-1/last' has no 'model' label"):
        tables.load_run(str(tmp_path / "old_probe.json"))


# --- the shipped paper numbers ------------------------------------------------------------------------------

def test_shipped_paper_numbers_match_the_paper_by_hand():
    """Values typed from the paper (arXiv 2405.18415, NeurIPS 2024 camera-ready), checked against the file."""
    paper = tables.load_paper()
    assert len(paper) == 303
    by_hand = {  # (model label, row, dataset): the paper's printed value, where it is printed
        ("llava-1.5-7b-hf", "VLM open world", "imagenet"): 22.8,                   # Table 1, LLaVA1.5-7B, open
        ("clip-vit-large-patch14-336", "CLIP (study)", "imagenet"): 74.8,         # Table 1, CLIP-L
        ("gpt-4-turbo-2024-04-09", "VLM closed world", "imagenet"): 60.6,         # Table 1, GPT4, closed
        ("llava-1.5-7b-hf", "VLM probabilistic", "imagenet"): 34.8,               # Table 2, Prob (Sum)
        ("blip2-opt-2.7b", "VLM probabilistic (avg rule)", "cars"): 1.2,          # Table 2, Prob (Avg)
        ("blip2-opt-2.7b", "VLM probabilistic (cfg rule, best alpha)", "cars"): 69.2,   # Table 2, Avg w/ CFG
        ("llava-1.5-7b-hf", "llm:-1/last", "flowers"): 94.5,                      # Table 3 left, Last Tok
        ("llava-1.5-7b-hf", "ImageWikiQA (chain of thought)", "ImageWikiQA"): 38.0,   # Table 5, LLaVA1.5-7B
    }
    for key, value in by_hand.items():
        assert paper[key]["value"] == value, key
    data = json.loads((ROOT / "vlmcls_jax" / "eval" / tables.PAPER_FILE).read_text())
    assert data["source"]["arxiv"] == "2405.18415" and "NeurIPS 2024" in data["source"]["paper"]
    assert "ships with vlmcls_jax" in data["source"]["shipped"]
    assert all(e.get("source", "").startswith("arXiv 2405.18415") for e in data["entries"])


def test_paper_numbers_ship_as_package_data():
    setup = (ROOT / "setup.py").read_text()
    assert f'package_data={{"vlmcls_jax.eval": ["{tables.PAPER_FILE}"],' in setup


def test_cfg_row_is_the_studys_sum_based_sweep():
    """The study's inference_analysis/get_accuracy.ipynb (cell 1), the only code computing the CFG row:
        for alpha in range(0, 9):
            ...
                probs.append(
                    (
                        alpha * np.array(prob)
                        + (1 - alpha) * np.array(calibrated_probs[idx])
                    ).sum()
                )
    a SUM base, every alpha 0..8 printed and none fixed; alpha = 1 is Sum, so the best of the sweep is never
    below Sum: the paper's CFG numbers are above its Sum numbers in all eight cells (Table 2)."""
    paper = tables.load_paper()
    for model in ("llava-1.5-7b-hf", "blip2-opt-2.7b"):
        for d in ("imagenet", "flowers", "cars", "caltech"):
            assert (paper[(model, "VLM probabilistic (cfg rule, best alpha)", d)]["value"]
                    >= paper[(model, "VLM probabilistic", d)]["value"])
    import numpy as np

    from vlmcls_jax.eval import vlm_scoring
    sums = np.array([[-1.0, -3.0], [-2.5, -2.0], [-0.5, -4.0]])   # [images, classes]
    records = [{"id": str(i), "label": i % 2, "label_name": "ab"[i % 2], "sum": list(s)} for i, s in enumerate(sums)]
    out = vlm_scoring.summarize(records, ["a", "b"], np.array([1, 1]), 2.0, cfg_sweep_alphas=tuple(range(9)))
    calibrated = sums.mean(0)
    for alpha in range(9):   # the notebook's formula, written out
        preds = [int(np.argmax(alpha * s + (1 - alpha) * calibrated)) for s in sums]
        assert out["cfg_sweep"][f"{float(alpha)}"] == np.mean([p == i % 2 for i, p in enumerate(preds)])


def test_clip_row_beside_the_paper():
    """CLIP's results row as the eval job writes it (`evaluate_clip`'s fields plus the model label)."""
    row = {"examples": 4, "top1": 0.75, "top5": 1.0, "mean_per_class_recall": 0.75,
           "model": "clip-vit-large-patch14-336"}
    md = tables.render([run("flowers", {"CLIP (study)": row}, 4)], tables.load_paper())[0]
    assert "| clip-vit-large-patch14-336 | CLIP (study) | 75.0 (76.0) |" in md        # Table 1, CLIP-L, Flowers
    assert "| EVA01-CLIP-g-14-plus | CLIP (study) | not run (81.0) |" in md           # Table 1, EVA-G: not run


# --- the four jobs' results.json, merged --------------------------------------------------------------------

@pytest.fixture(scope="module")
def job_runs(tmp_path_factory):
    """A Table 1 run (open and closed world; CLIP's row: test_clip_row_beside_the_paper), a Table 2 (scoring)
    run, a probe run and an ImageWikiQA run of the real jobs on a tiny random LLaVA, labelled with the paper's
    model labels."""
    import train_fixtures
    from configs import table1, table2, table3_probe, table5_imagewikiqa
    from vlmcls_jax import demo
    from vlmcls_jax.main import jobs

    root = tmp_path_factory.mktemp("jobs")
    llava = train_fixtures.tiny_checkpoint(root / "llava")
    manifest = train_fixtures.shapes_dataset(root / "data", 6)
    rows = [dict(json.loads(x), split="test" if i % 2 else "train")
            for i, x in enumerate(manifest.read_text().splitlines())]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "classes.json").write_text(json.dumps(demo.class_names()))

    def data(c):
        c.data.manifest, c.data.classes = str(manifest), str(root / "classes.json")
        c.data.image_root = str(root / "data")
        c.model.checkpoint, c.model.label = str(llava), "llava-1.5-7b-hf"
        return c

    c1 = data(table1.get_config("flowers"))
    c1.experiments = ("open", "closed")
    c1.generation.max_new_tokens, c1.generation.batch_size = 2, 4
    c2 = data(table2.get_config("flowers,scoring"))
    c2.scoring.batch_size = 4
    c3 = data(table3_probe.get_config("flowers"))
    c3.features, c3.probe.epochs, c3.probe.batch_size, c3.probe.val_fraction = ("llm:-1/last",), 3, 4, 0.34
    c5 = table5_imagewikiqa.get_config()
    names = demo.class_names()
    options = "\n".join(f"{x}. {n}" for x, n in zip("ABCD", names))
    (root / "q.jsonl").write_text("".join(json.dumps(
        {"image": f"{i}.png", "text": f"What is this?\n{options}\nChoose A, B, C, or D.", "label": "ABCD"[i],
         "wiki": "", "classname": names[i]}) + "\n" for i in range(1)))
    c5.data.questions, c5.data.image_root = str(root / "q.jsonl"), str(root / "data")
    c5.model.checkpoint, c5.model.label = str(llava), "llava-1.5-7b-hf"
    c5.generation.max_new_tokens, c5.generation.batch_size = 2, 1
    results = {}
    for name, job, config in (("table1", "eval", c1), ("table2", "eval", c2), ("probe", "probe", c3),
                              ("imagewikiqa", "imagewikiqa", c5)):
        results[name] = jobs()[job](config, str(root / name))
    return root, results


def test_every_jobs_results_render_with_the_papers_numbers(job_runs, capsys):
    """Done-when of issue 17: `python -m vlmcls_jax.eval.tables` over a Table 1, a Table 2, a probe and an
    ImageWikiQA run prints each row with the paper's number beside ours (read from the shipped file)."""
    root, results = job_runs
    paper = tables.load_paper()
    tables.main([str(root / n) for n in ("table1", "table2", "probe", "imagewikiqa")] + ["--out", str(root / "t")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| model | setting | flowers | ImageWikiQA |"

    def expect(model, setting, dataset, ours):   # this row's line: ours (paper) in its column, "-" in the other
        value = paper[(model, setting, dataset)]["value"]
        cells = [f"{100 * ours:.1f} ({value})", "-"]
        assert f"| {model} | {setting} | " + " | ".join(cells[::-1] if dataset == "ImageWikiQA" else cells) + " |" \
            in lines, (model, setting)
        return value

    r1, r2 = results["table1"]["rows"], results["table2"]["rows"]["VLM probabilistic"]
    llava = "llava-1.5-7b-hf"
    assert expect(llava, "VLM open world", "flowers", r1["VLM open world"]["substring_accuracy"]) == 5.9   # Table 1
    assert expect(llava, "VLM closed world", "flowers", r1["VLM closed world"]["substring_accuracy"]) == 10.2
    assert expect(llava, "VLM probabilistic", "flowers", r2["sum_accuracy"]) == 14.5       # Table 2
    assert expect(llava, "VLM probabilistic (avg rule)", "flowers", r2["avg_accuracy"]) == 16.5
    best = max(r2["cfg_sweep"].values())
    assert expect(llava, "VLM probabilistic (cfg rule, best alpha)", "flowers", best) == 26.8
    probe = results["probe"]["rows"]["llm:-1/last"]                                        # Table 3 left
    assert expect(llava, "llm:-1/last", "flowers", probe["best_on_test"]["test_accuracy"]) == 94.5
    iwqa = results["imagewikiqa"]["rows"]["ImageWikiQA (chain of thought)"]                # Table 5
    assert expect(llava, "ImageWikiQA (chain of thought)", "ImageWikiQA", iwqa["accuracy"]) == 38.0
    # Paper rows of the same tables with no run here, e.g. GPT-4 (Table 1) and Claude 3 (Table 5).
    assert "| gpt-4-turbo-2024-04-09 | VLM open world | not run (51.0) | - |" in lines
    assert "| claude-3-opus-20240229 | ImageWikiQA (chain of thought) | - | not run (54.3) |" in lines
    notes = [line for line in lines if line][-1]
    assert "at the best alpha of 0..8" in notes and "llava-1.5-7b-hf / flowers: alpha " in notes


def test_each_jobs_own_table_shows_the_paper_number_and_can_turn_it_off(job_runs):
    """Every job writes `ours (paper)` by default (config.paper_numbers); the keys tables reads are there."""
    root, results = job_runs
    for name in ("table1", "table2", "probe"):
        for setting, metrics in results[name]["rows"].items():
            assert metrics["model"] == "llava-1.5-7b-hf"
            tables.table_rows(setting, metrics)   # no KeyError: every row has a field tables reads
    assert "| llava-1.5-7b-hf | VLM open world | " in (root / "table1" / "table.md").read_text()
    assert " (5.9) |" in (root / "table1" / "table.md").read_text()
    assert " (16.5) |" in (root / "table2" / "table.md").read_text()
    probe_md = (root / "probe" / "table.md").read_text()
    assert " (94.5) |" in probe_md and "| llm:-1/last, epoch chosen on validation |" in probe_md
    assert "| llava-1.5-7b-hf | " in (root / "imagewikiqa" / "table.md").read_text()
    assert " (38.0) |" in (root / "imagewikiqa" / "table.md").read_text()
    assert "not run (" not in probe_md   # paper rows with no run: listed by the merged table only
    from vlmcls_jax.eval.job import write_results  # what the eval job calls, with config.paper_numbers
    (root / "off").mkdir()
    write_results(results["table2"], str(root / "off"), paper_numbers=False)
    off = (root / "off" / "table.md").read_text()
    assert "| llava-1.5-7b-hf | VLM probabilistic (avg rule) | " in off and "(16.5)" not in off
    assert (root / "off" / "table.csv").read_text().splitlines()[0] == "model,setting,flowers"
    from vlmcls_jax.eval.imagewikiqa_job import paper_beside
    assert paper_beside("llava-1.5-7b-hf", True) == " (38.0)" and paper_beside("llava-1.5-7b-hf", False) == ""
