"""Merged result tables: rows (model, setting), a column per dataset, reference numbers beside ours."""

import json

import pytest

from vlmcls_jax.eval import tables


def run(dataset, rows, examples=10):
    return {"dataset": dataset, "examples": examples, "rows": rows}


RUNS = [run("flowers", {"CLIP (study)": {"model": "clip-l", "top1": 0.75},
                        "VLM open world": {"model": "llava-7b", "substring_accuracy": 0.125}}),
        run("cars", {"CLIP (study)": {"model": "clip-l", "top1": 0.5},
                     "VLM probabilistic": {"model": "llava-7b", "sum_accuracy": 0.3333}}, examples=3)]


def test_merge_into_one_table_per_dataset_column(tmp_path):
    tables.write_tables(RUNS, str(tmp_path))
    md = (tmp_path / "table.md").read_text().splitlines()
    assert md[:5] == ["| model | setting | flowers | cars |", "| --- | --- | --- | --- |",
                      "| clip-l | CLIP (study) | 75.0 | 50.0 |", "| llava-7b | VLM open world | 12.5 | - |",
                      "| llava-7b | VLM probabilistic | - | 33.3 |"]
    assert "flowers 10, cars 3" in md[-1]
    assert (tmp_path / "table.csv").read_text().splitlines() == [
        "model,setting,flowers,cars", "clip-l,CLIP (study),75.00,50.00", "llava-7b,VLM open world,12.50,",
        "llava-7b,VLM probabilistic,,33.33"]


def test_reference_numbers_shown_beside_ours(tmp_path):
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"entries": [{"model": "clip-l", "setting": "CLIP (study)", "dataset": "cars",
                                            "value": 60.25, "source": "a paper, Table 1"}]}))
    tables.write_tables(RUNS, str(tmp_path / "out"), str(ref))
    md = (tmp_path / "out" / "table.md").read_text()
    assert "| clip-l | CLIP (study) | 75.0 | 50.0 (60.2) |" in md and "reference value" in md
    csv = (tmp_path / "out" / "table.csv").read_text().splitlines()
    assert csv[0] == "model,setting,flowers,cars,cars (reference)" and csv[1] == "clip-l,CLIP (study),75.00,50.00,60.25"
    ref.write_text(json.dumps({"entries": [{"model": "clip-l", "dataset": "cars", "value": 1}]}))
    with pytest.raises(ValueError, match=r"entries\[0\] lacks \['setting'\]"):
        tables.load_reference(str(ref))


def test_cli_and_errors(tmp_path, capsys):
    for r in RUNS:
        (tmp_path / r["dataset"]).mkdir()
        (tmp_path / r["dataset"] / "results.json").write_text(json.dumps(r))
    tables.main([str(tmp_path / "flowers"), str(tmp_path / "cars" / "results.json"), "--out", str(tmp_path / "t")])
    assert "| clip-l | CLIP (study) | 75.0 | 50.0 |" in capsys.readouterr().out
    with pytest.raises(ValueError, match="two runs give model 'clip-l', setting 'CLIP \\(study\\)' on dataset 'flowers'"):
        tables.merge([RUNS[0], RUNS[0]])
    with pytest.raises(FileNotFoundError, match="no results.json"):
        tables.load_run(str(tmp_path / "t"))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="missing field 'dataset'"):
        tables.load_run(str(tmp_path / "bad.json"))


def test_study_numbers_file_names_its_sources():
    """The few numbers the study's repository prints, each with the file it was read from."""
    from importlib import resources
    data = json.loads(resources.files("vlmcls_jax.eval").joinpath("study_numbers.json").read_text())
    assert data["source"]["repo"] == "yuhui-zh15/VLMClassifier"
    for entry in data["entries"]:
        assert entry["file"] and len(entry["commit"]) == 40 and isinstance(entry["value"], float)
