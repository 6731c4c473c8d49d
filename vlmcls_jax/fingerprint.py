"""What produced a workdir's resumable outputs, so a rerun never resumes (or reports) another setting's results.

A job that resumes (eval, probe, ImageWikiQA, training) first calls `claim`, which keeps WORKDIR/fingerprint.json:
every config field that can change a result (flattened to dotted names: checkpoint, dtype, prompt format,
generation and scoring settings, seed, ...), the SHA-256 of each data file the config names, and each
checkpoint's identity (the hub commit it resolved to; for a local folder, its config.json's SHA-256 and a
sampled hash of each weight file: `sample_sha256`).  Fields that cannot change a result (batch sizes, meshes,
logging, labels, and the variants that get their own rows and output files) are left out, per job (`VOLATILE`).

A rerun in the same workdir with the same fingerprint resumes.  A different one is refused in one line naming
what changed, or, with `--config.overwrite=True`, starts fresh in WORKDIR/fresh-N (or resumes the fresh-N whose
fingerprint matches).  A field a workdir's fingerprint lacks (written by an older version) is not a change.

    workdir = fingerprint.claim(workdir, fingerprint.of(config, "eval"), overwrite=config.overwrite)
"""

from __future__ import annotations

import glob
import hashlib
import json
import os

from vlmcls_jax.fileio import write_json

FILE = "fingerprint.json"

# Dotted config fields (or section prefixes ending in ".") that never change a job's results.
_ALWAYS = ("job", "overwrite", "mesh_shape", "max_workers", "model.label", "clip.label", "model.scan_layers")
VOLATILE = {
    # wording, chain of thought, choice order and label-set sizes give their own rows and output files.
    "eval": _ALWAYS + ("experiments", "label_set_sizes", "data.name", "generation.batch_size", "generation.wording",
                       "generation.chain_of_thought", "generation.choice_order", "scoring.batch_size",
                       "scoring.chunk_size"),
    "probe": _ALWAYS + ("data.name", "batch_size", "probe."),   # the probes are trained anew on every run
    "imagewikiqa": _ALWAYS + ("generation.batch_size", "baseline"),
    "train": _ALWAYS + ("checkpoint_every", "keep_checkpoints", "log_every", "stop_at_step", "export_hf",
                        "peak_tflops", "activation_sharding", "model.remat", "data.worker_count", "guard."),
}
# Config fields naming data files, hashed (when set).
DATA_FILES = ("data.manifest", "data.classes", "data.questions", "data.train_json", "data.classification_manifest",
              "data.caption_json", "data.mix_with")


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_identity(checkpoint: str, revision: str | None) -> dict:
    """The hub commit a checkpoint id resolved to; for a local folder, what its files are; for an
    "api:VENDOR/MODEL" checkpoint, that name (a dated model version is the vendor's identity for it)."""
    from vlmcls_jax.convert.hf import checkpoint_provenance, resolve_checkpoint
    if checkpoint.startswith("api:"):
        return {"api": checkpoint}
    folder = resolve_checkpoint(checkpoint, revision)
    commit = checkpoint_provenance(checkpoint, revision, folder)["commit"]
    if commit is not None:
        return {"commit": commit}
    weights = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
    config = next(p for p in (os.path.join(folder, n) for n in ("config.json", "open_clip_config.json"))
                  if os.path.isfile(p))
    return {os.path.basename(config): file_sha256(config),
            "weights": {os.path.basename(p): sample_sha256(p) for p in weights}}


def sample_sha256(path: str, block: int = 1 << 20) -> str:
    """SHA-256 of a file's size, first and last MiB: weights written again (a new export in the same folder)
    differ there, and hashing gigabytes on every run is avoided."""
    digest = hashlib.sha256(str(os.path.getsize(path)).encode())
    with open(path, "rb") as f:
        digest.update(f.read(block))
        f.seek(max(os.path.getsize(path) - block, 0))
        digest.update(f.read(block))
    return digest.hexdigest()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def of(config, job: str) -> dict:
    """The fingerprint of `config` (resolved: every field of the job, `config_check.check_job_config`, so the
    record names the defaults a run used) for `job`: {dotted field: JSON value}."""
    volatile = VOLATILE[job]
    if job == "eval":   # what only the experiments a run does not run read (their models) is not part of it
        from vlmcls_jax.eval.job import EXPERIMENTS
        read = {field for name in config.experiments for field in EXPERIMENTS[name].reads}
        volatile += tuple(sorted({field for e in EXPERIMENTS.values() for field in e.reads} - read))
    facts = {k: v for k, v in _flatten(config.to_dict()).items()
             if not any(k == p or (p.endswith(".") and k.startswith(p)) for p in volatile)}
    for field in DATA_FILES:
        if facts.get(field):
            facts[f"{field} sha256"] = file_sha256(facts[field]) if os.path.isfile(facts[field]) else "missing"
    for section in ("model", "clip"):
        if facts.get(f"{section}.checkpoint"):
            facts[f"{section}.checkpoint identity"] = checkpoint_identity(facts[f"{section}.checkpoint"],
                                                                          facts.get(f"{section}.revision"))
    return json.loads(json.dumps(facts, default=str))   # as it reads back (tuples as lists)


def _differences(recorded: dict, facts: dict) -> list[str]:
    def short(v):
        text = json.dumps(v)
        return text if len(text) <= 80 else text[:77] + "..."
    return [f"{k} {short(recorded[k])} -> {short(facts[k])}" for k in sorted(facts)
            if k in recorded and recorded[k] != facts[k]]


def _read(directory: str) -> dict | None:
    path = os.path.join(directory, FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _write(directory: str, facts: dict) -> None:
    import jax
    if jax.process_index() == 0:
        os.makedirs(directory, exist_ok=True)
        write_json(os.path.join(directory, FILE), facts, sort_keys=True)


def claim(workdir: str, facts: dict, *, overwrite: bool = False) -> str:
    """The folder the job writes to: `workdir` when its outputs were produced with the same `facts` (or it has
    none yet); else raises ValueError naming what changed, or (overwrite) a fresh subfolder WORKDIR/fresh-N.
    Every process of a multi-process run reaches the same decision (all read before process 0 writes)."""
    recorded = _read(workdir)
    changes = [] if recorded is None else _differences(recorded, facts)
    target = workdir
    if changes:
        if not overwrite:
            shown = "; ".join(changes[:4]) + (f"; and {len(changes) - 4} more" if len(changes) > 4 else "")
            raise ValueError(f"{workdir} holds outputs of another setting ({shown}; all in {workdir}/{FILE}): "
                             "use another --workdir, or --config.overwrite=True to start fresh in a subfolder")
        fresh = {int(p.rsplit("-", 1)[1]): p for p in glob.glob(os.path.join(workdir, "fresh-*"))
                 if p.rsplit("-", 1)[1].isdigit()}
        matching = [fresh[n] for n in sorted(fresh) if (r := _read(fresh[n])) is not None
                    and not _differences(r, facts)]
        target = matching[0] if matching else os.path.join(workdir, f"fresh-{max(fresh, default=0) + 1}")
        recorded = _read(target)
        print(f"{workdir} holds outputs of another setting ({'; '.join(changes[:4])}); "
              f"{'resuming' if recorded else 'starting fresh in'} {target} (config.overwrite)", flush=True)
    _barrier("fingerprint read")
    _write(target, {**(recorded or {}), **facts})
    _barrier("fingerprint written")
    return target


def _barrier(name: str) -> None:
    import jax
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)
