"""Jobs read their config overlaid on the declared defaults (vlmcls_jax/defaults.py), and nothing else declares a
job's default: `check_job_config` fills what a config leaves out, the library settings the jobs build agree with
the declared defaults, no job module reads a field through `.get(field, default)`, and the eval job runs exactly
the experiments its config lists (`eval.job.EXPERIMENTS`, filled by `@experiment`)."""

import ast
import dataclasses
import json
import pathlib

import ml_collections
import pytest

from vlmcls_jax import defaults
from vlmcls_jax.config_check import check_job_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_overlay_fills_what_a_config_leaves_out():
    given = ml_collections.ConfigDict({"learning_rates": {"lora": 1e-4}, "lora": {"rank": 8, "alpha": 16},
                                       "data": {"classification_manifest": "m.jsonl"}})
    config = check_job_config(given, "train")
    declared = defaults.train_config()
    assert config.data.mix_seed == declared.data.mix_seed == 1234              # omitted: the declared default
    assert config.data.question == declared.data.question and config.optim.to_dict() == declared.optim.to_dict()
    assert config.data.classification_manifest == "m.jsonl" and config.lora.rank == 8
    assert config.lora.alpha == 16 and isinstance(config.lora.alpha, int)      # the config's value as given
    assert dict(config.learning_rates) == {"lora": 1e-4}      # a free-form section is the user's, not merged
    assert "data" not in given.learning_rates and "num_steps" not in given      # the caller's config is untouched
    with pytest.raises(AttributeError):
        config.num_stepz = 1                                                    # locked
    # The eval and probe jobs: the defaults of the study dataset the config names.
    imagenet = check_job_config(ml_collections.ConfigDict({"data": {"name": "imagenet"}}), "eval")
    assert (imagenet.data.split, imagenet.data.manifest) == ("valid", "data/imagenet.jsonl")
    assert check_job_config(ml_collections.ConfigDict({"data": {"name": "imagenet"}}), "probe").probe.epochs == 100
    assert check_job_config(ml_collections.ConfigDict(), "probe").data.name == "flowers"   # the declared default
    # Another dataset's files have no defaults (never the flowers files under another name).
    with pytest.raises(ValueError, match=r"config.data.manifest, config.data.classes: no default for dataset 'toy'"):
        check_job_config(ml_collections.ConfigDict({"data": {"name": "toy"}}), "eval")
    with pytest.raises(ValueError, match=r"config.data.name, config.data.classes: no default for a config with"):
        check_job_config(ml_collections.ConfigDict({"data": {"manifest": "m.jsonl"}}), "probe")
    # An unknown key is still refused in one line naming it.
    with pytest.raises(ValueError, match=r"config.data.mix_sead is not a field of this job \(did you mean mix_seed"):
        check_job_config(ml_collections.ConfigDict({"data": {"mix_sead": 1}}), "train")


def test_the_settings_the_jobs_build_default_as_the_config_does():
    """Where a library dataclass declares a default for a config field too, the two agree: a job given the
    declared defaults builds the library's default settings (the one translation: generation.max_new_tokens 0,
    the study's, is the library's None)."""
    from vlmcls_jax.analysis.features import FeatureSettings
    from vlmcls_jax.analysis.probe import ProbeSettings
    from vlmcls_jax.eval.api_model import ApiOptions
    from vlmcls_jax.eval.imagewikiqa_eval import ImageWikiQASettings
    from vlmcls_jax.eval.vlm_generation import GenerationSettings
    from vlmcls_jax.eval.vlm_scoring import ScoringSettings
    from vlmcls_jax.train.guard import GuardConfig

    e, p, w, t = defaults.eval_config(), defaults.probe_config(), defaults.imagewikiqa_config(), defaults.train_config()
    pairs = [(ApiOptions, dict(e.model.api)),
             (GenerationSettings, dict(e.generation, pad_to_square=e.pad_to_square,
                                       max_new_tokens=e.generation.max_new_tokens or None)),
             (ScoringSettings, dict(e.scoring, wording=e.generation.wording, pad_to_square=e.pad_to_square)),
             (ProbeSettings, dict(p.probe, seed=p.seed)),
             (FeatureSettings, dict(features=p.features, wording=p.wording, batch_size=p.batch_size,
                                    pad_to_square=p.pad_to_square)),
             (ImageWikiQASettings, dict(w.generation, seed=w.seed, pad_to_square=w.pad_to_square)),
             (GuardConfig, dict(t.guard))]
    for cls, declared in pairs:
        shared = [f for f in dataclasses.fields(cls) if f.name in declared]
        assert len(shared) >= 4, cls
        differ = {f.name: (f.default, declared[f.name]) for f in shared if f.default != declared[f.name]}
        assert not differ, f"{cls.__name__} (library default, defaults.py) differ: {differ}"
    assert ApiOptions(**dict(e.model.api)) == ApiOptions()


JOB_MODULES = {"train": "vlmcls_jax/train/trainer.py", "eval": "vlmcls_jax/eval/job.py",
               "imagewikiqa": "vlmcls_jax/eval/imagewikiqa_job.py", "probe": "vlmcls_jax/analysis/probe_job.py",
               "general": "vlmcls_jax/eval/general_job.py"}


def _names(section):
    for key, value in section.items():
        yield key
        if isinstance(value, ml_collections.ConfigDict) and key not in ("learning_rates", "objective"):
            yield from _names(value)


@pytest.mark.parametrize("job", sorted(JOB_MODULES))
def test_no_job_restates_a_default(job):
    """The jobs read the resolved config's fields directly: no `.get("field", ...)` naming one of the job's
    fields (which would hold a second default, or None, for what the overlay already filled)."""
    fields = set(_names(defaults.job_fields(job)))
    path = ROOT / JOB_MODULES[job]
    found = [f"{JOB_MODULES[job]}:{node.lineno} .get({node.args[0].value!r})"
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
             and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value in fields]
    assert not found


def test_the_eval_job_runs_exactly_the_listed_experiments(tmp_path, monkeypatch):
    """Registered experiments run in the order config.experiments lists them, each once, their checks first;
    the others not at all; an unknown name is refused listing the registered ones."""
    import train_fixtures
    from vlmcls_jax import demo
    from vlmcls_jax.eval import job

    monkeypatch.setattr(job, "EXPERIMENTS", dict(job.EXPERIMENTS))   # registrations below stay in this test
    calls = []
    for name in ("first", "second", "third"):
        def check(ev, name=name):
            calls.append(f"check {name}")

        @job.experiment(name, reads=(), check=check)
        def fake(ev, name=name):
            calls.append(name)
            return {f"{name} row": {"substring_accuracy": 0.5, "examples": len(ev.examples), "model": "m"}}
    with pytest.raises(ValueError, match="registered twice"):
        job.experiment("first", reads=())(lambda ev: {})

    manifest = train_fixtures.shapes_dataset(tmp_path / "data", 2)
    (tmp_path / "classes.json").write_text(json.dumps(demo.class_names()))
    config = ml_collections.ConfigDict({
        "experiments": ("third", "first", "third"),
        "data": {"name": "shapes", "manifest": str(manifest), "classes": str(tmp_path / "classes.json"),
                 "image_root": str(tmp_path / "data"), "split": "train"}})
    results = job.run(config, str(tmp_path / "run"))
    assert calls == ["check third", "check first", "third", "first"]
    assert list(results["rows"]) == ["third row", "first row"] and results["examples"] == 2
    recorded = json.loads((tmp_path / "run" / "fingerprint.json").read_text())
    assert recorded["sampling"] == "study" and recorded["seed"] == 1234    # the defaults the run used, recorded
    assert not any(k.startswith(("model.", "clip.")) for k in recorded)    # no listed experiment reads them

    config.experiments = ("first", "scorng")
    with pytest.raises(ValueError, match=r"unknown \['scorng'\]; the registered experiments are \['clip', 'open', "
                                         r"'closed', 'scoring', 'first', 'second', 'third'\]"):
        job.run(config, str(tmp_path / "other"))
    assert not (tmp_path / "other").exists()
