"""`python -m vlmcls_jax.plan --config <job config> (--topology v5e:2x4 | --devices 8 --hbm_gib 80)`: see
`vlmcls_jax.plan`."""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "the job's ml-collections config file", lock_config=True)
_TOPOLOGY = flags.DEFINE_string("topology", None, "a TPU topology as JAX spells it: v5e:2x4, v4:2x2x1, v5p:2x2x1")
_DEVICES = flags.DEFINE_integer("devices", 0, "with --hbm_gib: a budget of N devices (GPUs), compiled for CPU")
_HBM = flags.DEFINE_float("hbm_gib", 80.0, "memory per device for --devices")
_CHIP = flags.DEFINE_enum("chip", "h100", ["h100", "a100"], "speeds for --devices (plan/chips.py)")
_SEQ = flags.DEFINE_integer("seq_len", 0, "train: the padded sequence length to plan for (default: the bucket "
                            "the recipe's records pad to)")
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if bool(_TOPOLOGY.value) == bool(_DEVICES.value):
        raise app.UsageError("give either --topology or --devices (with --hbm_gib)")
    import jax

    from vlmcls_jax.plan import chips, footer, header, job_config, plan, row_line

    if _DEVICES.value:   # CPU only: no TPU plugin initialised for a budget
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", _DEVICES.value)
        target = chips.budget_target(_DEVICES.value, _HBM.value, _CHIP.value)
    else:
        target = chips.tpu_target(_TOPOLOGY.value)
    try:
        config = job_config(_CONFIG.value)
        print(header(config, target), flush=True)
        rows = plan(config, target, seq_len=_SEQ.value or None,
                    on_row=lambda r: print(row_line(r, target), flush=True))
    except ValueError as e:   # a bad config (a field named), as the jobs report it: one line, exit status 2
        from vlmcls_jax.user_errors import fail, is_user_error
        if not is_user_error(e):
            raise
        fail(str(e))
    print(footer(config, rows, target))


if __name__ == "__main__":
    app.run(main)
