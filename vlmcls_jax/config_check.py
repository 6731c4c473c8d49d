"""A job's config checked against the job's fields (`vlmcls_jax.defaults`) before anything is loaded or
compiled: a misspelt field (which nothing would read, so its value would be silently ignored) or a value
of the wrong type is an error naming the field.  What the job then reads is the config overlaid on the
declared defaults (`overlay`): every field of the job, the config's value where it gives one, so a job reads
`config.field` and no default is written a second time in a job.

    config = check_job_config(config, "train")   # check_config(config, defaults.train_config(), ...), overlaid

Rules, field by field: every field of `config` must exist in `reference` (else: the field's dotted name
and the closest known names); a section (ConfigDict) must stay a section; a number where the reference has
a float may be an int (not a bool); a tuple may be given as a list; a `placeholder(type)` field (default
None) takes that type; a plain None default takes anything; None is accepted everywhere (e.g. "no limit").  `free_form` sections (dotted names)
are the user's to fill (learning-rate groups, objective parameters) and are not looked into.
ml-collections already refuses unknown or mistyped *command-line* overrides of a locked config; this
covers configs built in Python (recipes, notebooks, tests) too.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import ml_collections
from ml_collections.config_dict import FieldReference

from vlmcls_jax.defaults import DATASETS, JOB_FIELDS, PER_DATASET, STUDY_DATA_FIELDS, job_fields

Section = ml_collections.ConfigDict | ml_collections.FrozenConfigDict


def _declared_type(section: Section, key: str) -> type | None:
    """The type a reference field accepts: a placeholder's declared type, else its value's (None: any)."""
    field = section._fields[key]   # noqa: SLF001  (ConfigDict exposes no public way to read a placeholder's type)
    if isinstance(field, FieldReference):
        return field.get_type()
    return None if field is None else type(field)


def _type_ok(value, expected: type | None) -> bool:
    if expected is None or value is None:     # a plain None default takes anything; any field may be None
        return True
    if expected is bool or isinstance(value, bool):
        return isinstance(value, bool) and expected is bool
    if expected is float:
        return isinstance(value, (int, float))
    if expected in (tuple, list):
        return isinstance(value, (tuple, list))
    return isinstance(value, expected)


def _problems(config: Section, reference: Section, where: str, free_form: set[str]) -> list[str]:
    out = []
    for key in config.keys():
        name = f"{where}.{key}"
        if key not in reference:
            out.append(f"{name} is not a field of this job" + _suggest(key, reference))
            continue
        value, expected = config[key], _declared_type(reference, key)
        if isinstance(reference[key], Section):
            if not isinstance(value, Section):
                out.append(f"{name} must be a section of fields, got {type(value).__name__} {value!r}")
            elif name.split(".", 1)[1] not in free_form:
                out += _problems(value, reference[key], name, free_form)
        elif not _type_ok(value, expected):
            out.append(f"{name} must be {expected.__name__}, got {type(value).__name__} {value!r}")
    return out


def _suggest(key: str, section: Section, prefix: str = "") -> str:
    """" (did you mean PREFIXname?)" with the closest names in `section`, else the names it has."""
    near = difflib.get_close_matches(key, list(section.keys()), n=3)
    return (f" (did you mean {', '.join(prefix + n for n in near)}?)" if near
            else f"; known: {sorted(section.keys())}")


def override_problem(config: Section, argument: str) -> str | None:
    """For a command-line argument `--config.a.b=VALUE`: None when `config` has the field a.b (or the argument
    is no override), else one line naming the argument and the closest real field.  (ml-collections refuses
    such an override too, with a chained traceback.)"""
    if not argument.startswith("--config."):
        return None
    dotted = argument[len("--config."):].split("=", 1)[0]
    section, where = config, "config"
    for key in dotted.split("."):
        if not isinstance(section, Section):
            return f"{argument}: {where} is a value, not a section of fields"
        if key not in section:
            return (f"{argument}: {where}.{key} is not a field of this config"
                    + _suggest(key, section, "--" + where + "."))
        section, where = section[key], f"{where}.{key}"
    return None


def check_config(config: Section, reference: Section, *, free_form: Sequence[str] = (), job: str = "") -> None:
    """Raises ValueError listing every field of `config` that `reference` lacks or types differently."""
    problems = _problems(config, reference, "config", set(free_form))
    if problems:
        raise ValueError(f"config does not fit the {job or config.get('job', '?')} job's fields "
                         "(vlmcls_jax/defaults.py):\n  " + "\n  ".join(problems))


def check_job_config(config: Section, job: str) -> ml_collections.ConfigDict:
    """`check_config` against `job`'s fields and free-form sections (`defaults.JOB_FIELDS`); returns `config`
    overlaid on them (`overlay`; for the eval and probe jobs, on the defaults of the dataset it names:
    `defaults_dataset`)."""
    free_form = JOB_FIELDS[job][1]
    check_config(config, job_fields(job), free_form=free_form, job=job)
    dataset = defaults_dataset(config) if job in PER_DATASET else None
    return overlay(job_fields(job, dataset), config, free_form)


def overlay(reference: Section, config: Section, free_form: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """`reference` with every field `config` gives replaced by the config's value (sections field by field;
    a `free_form` section, dotted name, wholesale: its keys are the user's), locked.  The values are the
    config's own (an int stays an int where the default is a float, a list a list)."""
    def merge(into: dict, given: dict, where: str) -> dict:
        for key, value in given.items():
            name = f"{where}{key}"
            if isinstance(value, dict) and isinstance(into.get(key), dict) and name not in free_form:
                merge(into[key], value, name + ".")
            else:
                into[key] = value
        return into
    merged = ml_collections.ConfigDict(merge(reference.to_dict(), config.to_dict(), ""))
    merged.lock()
    return merged


def defaults_dataset(config: Section) -> str:
    """The study dataset whose defaults (manifest, class list, split, probe epochs: `defaults.eval_config`)
    fill what an eval or probe config leaves out: `data.name`'s, or the declared default dataset when the
    config names no dataset and no files of its own.  Another dataset's files have no defaults: a config
    naming one (or naming its own manifest or class list) must give `defaults.STUDY_DATA_FIELDS` itself."""
    data = config.get("data", {})
    name = data.get("name")
    if name in DATASETS:
        return name
    missing = [f"config.data.{k}" for k in STUDY_DATA_FIELDS if k not in data]
    if missing and len(missing) < len(STUDY_DATA_FIELDS):
        raise ValueError(f"{', '.join(missing)}: no default for "
                         + (f"dataset {name!r}" if name is not None else "a config with its own data files")
                         + f" (defaults exist for the study's datasets {list(DATASETS)}); give "
                         + ", ".join(f"config.data.{k}" for k in STUDY_DATA_FIELDS))
    return job_fields("eval").data.name   # its other fields' defaults hold for any dataset but ImageNet
