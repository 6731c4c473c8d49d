"""The probing job (`job = "probe"`, the study's Table 3 left / Table 10): extract a VLM's hidden-state features
for a dataset's train and test splits, train one linear probe per feature, and write WORKDIR/results.json and
WORKDIR/table.md and table.csv (rows: each feature under the study's protocol, the best test accuracy over
epochs, and "{feature}, epoch chosen on validation"; the paper's number beside ours unless
`config.paper_numbers` is False).  Rows carry the model's label (`config.model.label`, by default the
checkpoint's last path component), so `python -m vlmcls_jax.eval.tables` merges probe runs with the others.
A CLIP checkpoint (CLIP or open_clip EVA01-CLIP: Table 3 right) is probed on its image embeddings instead
(`analysis/clip_features.py`: `clip/embed`, the study's `encode_image`, or its L2-normalised form `clip/unit`).

Features are cached under WORKDIR/features/{split}; a rerun resumes extraction and retrains the probes.

Two trainings per feature: the study's column (`feature_analysis/probe.py:39-129`, `probe.sh`): the whole
train split, in the order its seed-1234 shuffle of the whole manifest puts the train rows
(`config.probe.order = "study"`; "file": manifest order), one fixed order every epoch, the best test
accuracy over epochs (`best_on_test`); and the validation-selected column: `probe.val_fraction` of the train
rows held out, the epoch chosen on them (`val_selected`).  The study's CLIP linear probe: configs/table3_probe.py
`DATASET,clip` (or `,evaclip`).
"""

from __future__ import annotations

import json
import os

import jax

from vlmcls_jax import fingerprint
from vlmcls_jax import sharding as shd
from vlmcls_jax.analysis.clip_features import check_clip_features, extract_clip_features
from vlmcls_jax.analysis.features import FeatureSettings, extract_features, load_features
from vlmcls_jax.analysis.probe import ProbeSettings, train_probe
from vlmcls_jax.config_check import check_job_config
from vlmcls_jax.data.sources import ClassList, load_class_names, read_manifest
from vlmcls_jax.eval.candidates import study_order
from vlmcls_jax.eval.job import model_label
from vlmcls_jax.eval.loading import eval_mesh, load_model_section
from vlmcls_jax.eval.tables import write_tables
from vlmcls_jax.fileio import write_atomic


def run(config, workdir: str) -> dict:
    config = check_job_config(config, "probe")   # every field, the declared default where config has none
    data = config.data
    classes = ClassList(tuple(load_class_names(data.classes)))
    splits = {name: read_manifest(data.manifest, data.image_root, classes, split=split)
              for name, split in (("train", data.train_split), ("test", data.test_split))}
    workdir = fingerprint.claim(workdir, fingerprint.of(config, "probe"), overwrite=config.overwrite)
    p = config.probe
    if p.order not in ("study", "file"):
        raise ValueError(f"config.probe.order={p.order!r} is not 'study' or 'file'")
    if p.order == "study":   # probe.py:39-41, 61: the whole manifest shuffled, then its train rows in that order
        position = {e.id: i for i, e in enumerate(study_order(
            read_manifest(data.manifest, data.image_root, classes), p.order_seed))}
        splits["train"] = sorted(splits["train"], key=lambda e: position[e.id])
    if config.max_examples:
        splits = {k: v[: config.max_examples] for k, v in splits.items()}
    mesh = eval_mesh(config.mesh_shape)
    shd.check_batch_sizes(mesh, {"config.batch_size": config.batch_size})
    loaded_model = load_model_section(config.model, mesh)
    model, tokenizer, preprocess = loaded_model.model, loaded_model.tokenizer, loaded_model.inputs
    if preprocess is None:      # a two-tower CLIP: its image embeddings
        features = check_clip_features(tuple(config.features))
        extract = lambda examples, folder: extract_clip_features(
            model, examples, folder, features, loaded_model.preprocess, batch_size=config.batch_size, mesh=mesh)
    else:
        settings = FeatureSettings(features=tuple(config.features), wording=config.wording,
                                   batch_size=config.batch_size, pad_to_square=config.pad_to_square)
        features = settings.features
        extract = lambda examples, folder: extract_features(model, tokenizer, examples, folder, settings, preprocess,
                                                            mesh=mesh)
    loaded = {}
    for name, examples in splits.items():
        folder = os.path.join(workdir, "features", name)
        extract(examples, folder)
        loaded[name] = load_features(folder, examples)

    common = dict(epochs=p.epochs, batch_size=p.batch_size, learning_rate=p.learning_rate, shuffle=p.shuffle,
                  normalize=p.normalize, seed=config.seed)
    rows = {}
    for feature in features:
        args = (loaded["train"][2][feature], loaded["train"][1], loaded["test"][2][feature], loaded["test"][1],
                len(classes.names))
        study = train_probe(*args, ProbeSettings(val_fraction=0.0, **common))       # the whole train split
        selected = train_probe(*args, ProbeSettings(val_fraction=p.val_fraction, **common)) \
            if p.val_fraction > 0 else None
        if selected is not None and selected["val_selected"] is None:      # too few rows to hold any out
            selected = None
        rows[feature] = {"best_on_test": study["best_on_test"], "final_test_accuracy": study["final_test_accuracy"],
                         "train_examples": study["train_examples"], "test_examples": study["test_examples"],
                         "val_selected": selected and dict(selected["val_selected"],
                                                           train_examples=selected["train_examples"]),
                         "val_examples": selected["val_examples"] if selected else 0,
                         "model": model_label(config.model)}
        write_atomic(os.path.join(workdir, f"probe_history_{feature.replace('/', '_').replace(':', '')}.json"),
                     json.dumps({"study": study["history"], "val_selected": selected and selected["history"]}))
    results = {"dataset": data.name, "model": config.model.checkpoint,
               "examples": {k: len(v) for k, v in splits.items()}, "rows": rows,
               "checkpoints": {"model": loaded_model.provenance}}
    if jax.process_index() == 0:
        write_atomic(os.path.join(workdir, "results.json"), json.dumps(results, indent=2))
        write_tables([results], workdir, config.paper_numbers, not_run="none")
    return results
