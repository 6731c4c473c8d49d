"""The probing job (`job = "probe"`, the study's Table 3 left / Table 10): extract a VLM's hidden-state features
for a dataset's train and test splits, train one linear probe per feature, and write WORKDIR/results.json and
WORKDIR/table.md (rows: features; columns: the validation-selected and the study's best-on-test accuracy).

Features are cached under WORKDIR/features/{split}; a rerun resumes extraction and retrains the probes.
"""

from __future__ import annotations

import json
import os

import jax

from vlmcls_jax.analysis.features import FeatureSettings, extract_features, load_features
from vlmcls_jax.analysis.probe import ProbeSettings, train_probe
from vlmcls_jax.config_check import check_job_config
from vlmcls_jax.data.sources import ClassList, load_class_names, read_manifest
from vlmcls_jax.eval.loading import eval_mesh, load_for_eval, model_dtypes
from vlmcls_jax.eval.tables import write_atomic


def run(config, workdir: str) -> dict:
    check_job_config(config, "probe")
    data = config.data
    classes = ClassList(tuple(load_class_names(data.classes)))
    splits = {name: read_manifest(data.manifest, data.image_root, classes, split=split)
              for name, split in (("train", data.train_split), ("test", data.test_split))}
    if config.get("max_examples"):
        splits = {k: v[: config.max_examples] for k, v in splits.items()}
    mesh = eval_mesh(config.mesh_shape)
    loaded_model = load_for_eval(config.model.checkpoint, mesh, config.model.get("revision"),
                                 config.model.get("prompt_format", "auto"),
                                 scan_layers=config.model.get("scan_layers", False), **model_dtypes(config.model))
    model, tokenizer, preprocess = loaded_model.model, loaded_model.tokenizer, loaded_model.inputs
    settings = FeatureSettings(features=tuple(config.features), wording=config.wording,
                               batch_size=config.batch_size, pad_to_square=config.pad_to_square)
    loaded = {}
    for name, examples in splits.items():
        folder = os.path.join(workdir, "features", name)
        extract_features(model, tokenizer, examples, folder, settings, preprocess, mesh=mesh)
        loaded[name] = load_features(folder, examples)

    p = config.probe
    probe_settings = ProbeSettings(epochs=p.epochs, batch_size=p.batch_size, learning_rate=p.learning_rate,
                                   val_fraction=p.val_fraction, shuffle=p.shuffle, seed=config.seed)
    rows = {}
    for feature in settings.features:
        out = train_probe(loaded["train"][2][feature], loaded["train"][1], loaded["test"][2][feature],
                          loaded["test"][1], len(classes.names), probe_settings)
        rows[feature] = {k: v for k, v in out.items() if k != "history"}
        write_atomic(os.path.join(workdir, f"probe_history_{feature.replace('/', '_').replace(':', '')}.json"),
                     json.dumps(out["history"]))
    results = {"dataset": data.name, "model": config.model.checkpoint,
               "examples": {k: len(v) for k, v in splits.items()}, "rows": rows,
               "checkpoints": {"model": loaded_model.provenance}}
    if jax.process_index() == 0:
        write_atomic(os.path.join(workdir, "results.json"), json.dumps(results, indent=2))
        lines = [f"| feature | {data.name}: test accuracy, epoch chosen on validation | best-on-test (study) |",
                 "| --- | --- | --- |"]
        for feature, r in rows.items():
            chosen = "-" if r["val_selected"] is None else f"{100 * r['val_selected']['test_accuracy']:.1f}"
            lines.append(f"| {feature} | {chosen} | {100 * r['best_on_test']['test_accuracy']:.1f} |")
        write_atomic(os.path.join(workdir, "table.md"), "\n".join(lines) + "\n\nLinear probes, accuracy in %; "
                     f"train {len(splits['train'])}, test {len(splits['test'])} examples.\n")
    return results
