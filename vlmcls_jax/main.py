"""Entry point: `python -m vlmcls_jax.main --config configs/NAME.py[:ARGS] --workdir DIR`.

The config's `job` field picks what runs; each job is a function `run(config, workdir)`.
"""

from __future__ import annotations

import os

from absl import app, flags
from ml_collections import config_flags

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


def jobs():
    from vlmcls_jax import demo
    from vlmcls_jax.analysis import probe_job
    from vlmcls_jax.eval import general_job, imagewikiqa_job
    from vlmcls_jax.eval import job as eval_job
    from vlmcls_jax.toyworld import pipeline as toyworld
    from vlmcls_jax.train import trainer
    return {"demo": demo.run, "train": trainer.run, "eval": eval_job.run, "probe": probe_job.run,
            "imagewikiqa": imagewikiqa_job.run, "toyworld": toyworld.run, "general": general_job.run}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _MULTIHOST.value:
        from vlmcls_jax.sharding import initialize_distributed
        initialize_distributed()
    if _CACHE.value:
        import jax
        jax.config.update("jax_compilation_cache_dir", _CACHE.value)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    config = _CONFIG.value
    table = jobs()
    if config.job not in table:
        raise app.UsageError(f"config field job={config.job!r} is not one of {sorted(table)}")
    table[config.job](config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
