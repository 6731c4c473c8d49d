"""Entry point: `python -m vlmcls_jax.main --config configs/NAME.py[:ARGS] --workdir DIR [--config.FIELD=VALUE ...]`.

The config's `job` field picks what runs; each job is a function `run(config, workdir)`.
`python -m vlmcls_jax.main --help` lists the jobs, the configs and the flags.
"""

from __future__ import annotations

import ast
import glob
import importlib
import os
import sys
import tempfile
import time

from absl import app, flags
from ml_collections import config_flags

from vlmcls_jax.user_errors import USER_ERROR_EXIT, config_folder, fail, is_user_error, one_line

_CONFIG = config_flags.DEFINE_config_file("config", None, "ml-collections config file", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "where outputs are written")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "join a multi-host run with jax.distributed.initialize() "
                               "(TPU pods and SLURM clusters provide the coordinates in the environment)")
_CACHE = flags.DEFINE_string(
    "compilation_cache_dir", os.environ.get("JAX_COMPILATION_CACHE_DIR")
    or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "vlmcls_jax", "jax"),
    "JAX's persistent compilation cache: programs compiled once (a training step, a generation loop) are "
    "loaded from here by later stages and later runs instead of compiled again; '' turns it off")
flags.mark_flags_as_required(["config", "workdir"])

# job name -> (module with `run(config, workdir)`, what it does)
JOBS = {
    "eval": ("vlmcls_jax.eval.job", "the classification experiments on one dataset: CLIP zero-shot, VLM open and "
             "closed world, probabilistic inference (Tables 1-2, Figure 2)"),
    "probe": ("vlmcls_jax.analysis.probe_job", "linear probes on a VLM's features (Table 3 left, Table 10)"),
    "train": ("vlmcls_jax.train.trainer",
              "fine-tuning: projector, LoRA, mixtures; checkpoints and resume (Tables 3-5)"),
    "imagewikiqa": ("vlmcls_jax.eval.imagewikiqa_job", "ImageWikiQA question answering (Table 5)"),
    "toyworld": ("vlmcls_jax.toyworld.pipeline", "the whole study in miniature, offline, on a CPU"),
    "demo": ("vlmcls_jax.demo", "a random tiny LLaVA through the converters and both inference modes"),
    "general": ("vlmcls_jax.eval.general_job", "TextVQA, POPE and MM-Vet before and after fine-tuning (Table 13)"),
}


def jobs() -> dict:
    return {name: importlib.import_module(module).run for name, (module, _) in JOBS.items()}


def config_files() -> list[str]:
    """The shipped config files."""
    return sorted(p for p in glob.glob(os.path.join(config_folder(), "*.py"))
                  if not os.path.basename(p).startswith(("_", "common")))


def help_text() -> str:
    def first_line(path):
        with open(path) as f:
            doc = ast.get_docstring(ast.parse(f.read())) or ""
        return doc.split("\n\n")[0].replace("\n", " ")[:110]

    configs = config_files()
    where = os.path.dirname(configs[0]) if configs else "configs"
    where = os.path.relpath(where) if not os.path.relpath(where).startswith("..") else where
    lines = [__doc__.strip(), "", "Jobs (the config's `job` field):"]
    lines += [f"  {name:12s} {text}" for name, (_, text) in JOBS.items()]
    lines += ["", f"Configs ({where}/; `--config FILE:ARG` passes ARG to the file's get_config):"]
    lines += [f"  {os.path.basename(p):24s} {first_line(p)}" for p in configs]
    lines += ["", "Overrides: any config field, by its dotted name, after --config:",
              "  --config.model.checkpoint=DIR  --config.generation.max_new_tokens=8",
              "  --config.label_set_sizes='(100, 20)'  (a tuple, quoted for the shell)",
              "  A misspelt or mistyped field is refused before anything runs (fields: vlmcls_jax/defaults.py).",
              "", "Flags:",
              "  --config FILE[:ARG]      the config (required)",
              "  --workdir DIR            where outputs go (required); rerunning with the same DIR resumes",
              f"  --multihost              {flags.FLAGS['multihost'].help}",
              "  --compilation_cache_dir  JAX's persistent compilation cache ('' turns it off)",
              "  --verbosity N            -1 (default): progress, key facts, outputs and warnings;",
              "                           0: library INFO logs too (orbax, JAX backend start); 1: debug logs and",
              "                           full tracebacks for user errors",
              "", f"A user error (config, data, checkpoint, path, permission, mesh) ends with one line on stderr and "
              f"exit status {USER_ERROR_EXIT}."]
    return "\n".join(lines)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing with our help, a quiet default verbosity and one-line errors (a misspelt
    `--config.x` override named with the closest real field)."""
    if any(a in ("-h", "--help", "--helpshort", "-?") for a in argv[1:]):
        print(help_text())
        sys.exit(0)
    try:
        remaining = flags.FLAGS(argv)
        if flags.FLAGS["verbosity"].using_default_value:   # absl's own flag, which app.run would raise to INFO
            flags.FLAGS.verbosity = -1                      # (orbax & co. log every save at INFO)
    except Exception as e:   # noqa: BLE001  (every way a command line can be wrong ends in one line)
        from vlmcls_jax.config_check import override_problem
        config = _load_config_file(argv)
        problems = [p for p in (override_problem(config, a) for a in argv[1:]) if p] if config is not None else []
        fail(problems[0] if problems else f"{one_line(e)} (see --help)")
    try:   # ml-collections defers a config file's load error to the first use
        flags.FLAGS["config"].value.get("job")
    except Exception as e:   # noqa: BLE001
        fail(f"--config {flags.FLAGS['config'].config_filename}: {one_line(e.__cause__ or e)}")
    return remaining


def _load_config_file(argv: list[str]):
    """The config that `--config FILE[:ARG]` in argv names, without overrides (None if it does not load):
    what a refused override is checked against."""
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--config=") else \
            argv[i + 1] if arg == "--config" and i + 1 < len(argv) else None
        if value:
            path, _, config_arg = value.partition(":")
            try:
                spec = importlib.util.spec_from_file_location("_vlmcls_config", path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                return module.get_config(config_arg) if config_arg else module.get_config()
            except Exception:   # noqa: BLE001  (the flag parser's own message is shown instead)
                return None
    return None


def start_backend(verbosity: int) -> None:
    """Starts JAX's backends.  A platform plugin that cannot start on this machine (libtpu without TPUs)
    writes its C++ logs straight to stderr; at the default verbosity they are held back, and shown only
    if no backend starts."""
    import jax
    if verbosity >= 0:
        jax.devices()
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            jax.devices()
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def describe(config, workdir: str) -> str:
    """The run's key facts in one line: job, checkpoints, data, devices, workdir."""
    import jax
    facts = [f"{config.job} job"]
    for section in ("model", "clip"):
        if section in config and config[section].get("checkpoint") and (
                section == "model" or "clip" in config.get("experiments", ("clip",))):
            facts.append(f"{section} {config[section].checkpoint}")
    data = config.get("data")
    if data is not None:
        source = data.get("manifest") or data.get("classification_manifest") or data.get("train_json") \
            or data.get("caption_json")
        facts.append("data " + " ".join(str(x) for x in (data.get("name"), source) if x))
    facts.append(f"{jax.device_count()} {jax.devices()[0].platform} device(s)")
    return ", ".join(facts) + f"; outputs in {workdir}"


def outputs(workdir: str) -> str:
    names = sorted(os.listdir(workdir)) if os.path.isdir(workdir) else []
    return " ".join(n + ("/" if os.path.isdir(os.path.join(workdir, n)) else "") for n in names
                    if not n.startswith("."))


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments: {argv[1:]} (flags take the form --name=value; see --help)")
    verbosity = flags.FLAGS["verbosity"].value
    if _MULTIHOST.value:
        from vlmcls_jax.sharding import initialize_distributed
        initialize_distributed()
    start_backend(verbosity)
    if _CACHE.value:
        import jax
        jax.config.update("jax_compilation_cache_dir", _CACHE.value)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    config, workdir = _CONFIG.value, _WORKDIR.value
    if config.get("job") not in JOBS:
        fail(f"config field job={config.get('job')!r} is not one of {sorted(JOBS)}")
    import jax
    started = time.time()
    if jax.process_index() == 0:
        print(describe(config, workdir), flush=True)
    try:
        jobs()[config.job](config, workdir)
    except Exception as e:   # noqa: BLE001
        if verbosity >= 1 or not is_user_error(e, config_flags.get_config_filename(flags.FLAGS["config"])):
            raise
        fail(one_line(e))
    if jax.process_index() == 0:
        print(f"{config.job} job done in {time.time() - started:.0f} s; wrote {workdir}: {outputs(workdir)}",
              flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
