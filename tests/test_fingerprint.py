"""fingerprint.py on its own: checkpoint identity, what counts as a change, fresh subfolders (the jobs' use of it
is tested in test_eval_job.py, test_analysis_jobs.py and test_trainer.py)."""

import json

import pytest

from vlmcls_jax import fingerprint


def test_a_local_checkpoint_rewritten_in_place_changes_its_identity(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\0" * (3 << 20))
    first = fingerprint.checkpoint_identity(str(tmp_path), None)
    assert fingerprint.checkpoint_identity(str(tmp_path), None) == first
    weights.write_bytes(b"\0" * ((3 << 20) - 1) + b"\1")     # same size, last byte changed: a new export
    assert fingerprint.checkpoint_identity(str(tmp_path), None) != first


def test_claim_resumes_refuses_or_starts_fresh(tmp_path):
    work = str(tmp_path / "run")
    facts = {"seed": 0, "generation.max_new_tokens": 64, "data.manifest sha256": "ab"}
    assert fingerprint.claim(work, facts) == work                           # first run: recorded
    assert fingerprint.claim(work, facts) == work                           # same: resumes
    assert fingerprint.claim(work, {**facts, "new.field": 1}) == work       # a field the record lacks: no change
    changed = {**facts, "generation.max_new_tokens": 4, "seed": 1}
    with pytest.raises(ValueError) as error:
        fingerprint.claim(work, changed)
    assert str(error.value) == (
        f"{work} holds outputs of another setting (generation.max_new_tokens 64 -> 4; seed 0 -> 1; all in "
        f"{work}/fingerprint.json): use another --workdir, or --config.overwrite=True to start fresh in a subfolder")
    assert fingerprint.claim(work, changed, overwrite=True) == f"{work}/fresh-1"
    assert fingerprint.claim(work, changed, overwrite=True) == f"{work}/fresh-1"     # resumes its own fresh run
    assert fingerprint.claim(work, {**changed, "seed": 2}, overwrite=True) == f"{work}/fresh-2"
    assert json.loads((tmp_path / "run" / "fingerprint.json").read_text())["seed"] == 0
