"""Every VLM family runs through the evaluation job by changing only `config.model`: the checkpoint (and,
optionally, `prompt_format`).  Tiny random checkpoints of each family, saved in Hugging Face format."""

import json

import pytest

import train_fixtures
from vlmcls_jax import demo
from vlmcls_jax.data.prompt_formats import VICUNA_SYSTEM
from vlmcls_jax.eval import job

# family -> (prompt format chosen by "auto" from config.json, the open-world prompt the job must have used)
QUESTION = "What type of object is in this photo?"
PROMPTS = {
    "llava_next": ("llava_next_vicuna", f"{VICUNA_SYSTEM} USER: <image>\n{QUESTION} ASSISTANT:"),  # Llama text
    "blip2": ("blip2", f"Question: {QUESTION} Answer:"),
    # main_results/main.py:121-125: `elif "blip" in model_id:` ... f"Question: {question} Answer:" (InstructBLIP too)
    "instructblip": ("instructblip", f"Question: {QUESTION} Answer:"),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    manifest = train_fixtures.shapes_dataset(root / "images", 4)
    (root / "classes.json").write_text(json.dumps(demo.class_names()))
    return root, manifest


@pytest.mark.parametrize("family", sorted(PROMPTS))
def test_family_runs_every_vlm_experiment_of_the_eval_job(family, data, tmp_path):
    root, manifest = data
    ckpt = train_fixtures.tiny_family_checkpoint(tmp_path / family, family)
    c = train_fixtures.tiny_eval_config(ckpt, ckpt, manifest, root / "classes.json", root / "images")
    c.experiments, c.model.label = ("open", "closed", "scoring"), family
    results = job.run(c, str(tmp_path / "run"))
    assert set(results["rows"]) == {"VLM open world", "VLM closed world", "VLM closed world, 2 labels",
                                    "VLM probabilistic", "VLM probabilistic, 2 labels"}
    assert all(m["examples"] == 4 and m["model"] == family for m in results["rows"].values())
    assert results["checkpoints"]["model"]["prompt_format"] == PROMPTS[family][0]
    first = json.loads((tmp_path / "run" / "outputs" / "open.jsonl").read_text().splitlines()[0])
    assert first["prompt"] == PROMPTS[family][1]


def test_blip2_qformer_fine_tuning_trains_only_the_qformer(data, tmp_path):
    """The study's BLIP-2 fine-tuning (configs/finetune_blip2_qformer.py, LAVIS blip2_opt): Q-Former, query
    tokens, language projection and the vision LayerNorm after the ViT (LAVIS's `ln_vision`) trained, the ViT and
    OPT frozen, on classification records in LAVIS's caption format `a photo of {label}\\n`, image tokens first."""
    import numpy as np
    from flax import nnx

    from configs import finetune_blip2_qformer
    from vlmcls_jax.convert import load_hf
    from vlmcls_jax.defaults import train_config
    from vlmcls_jax.train import trainer

    root, manifest = data
    ckpt = train_fixtures.tiny_family_checkpoint(tmp_path / "blip2", "blip2")
    recipe = finetune_blip2_qformer.get_config("flowers")
    c = train_config()
    c.model.checkpoint, c.model.dtype = str(ckpt), "float32"
    c.learning_rates = {name: 1e-2 for name in recipe.learning_rates}       # the recipe's groups, a visible lr
    c.data.classification_manifest, c.data.image_root = str(manifest), str(root / "images")
    c.data.template, c.data.buckets, c.data.batch_size = recipe.data.template, (64,), 8
    c.num_steps, c.log_every, c.checkpoint_every, c.optim.warmup_ratio = 3, 1, 0, 0.0
    trainer.run(c, str(tmp_path / "run"))
    before = nnx.to_flat_state(nnx.state(load_hf(str(ckpt)), nnx.Param))
    after = dict(nnx.to_flat_state(nnx.state(load_hf(str(tmp_path / "run" / "hf_export")), nnx.Param)))
    changed = {"/".join(map(str, path[:2])) if path[0] == "vision_model" else str(path[0])
               for path, v in before if not np.array_equal(v[...], after[path][...])}
    assert changed == {"qformer", "query_tokens", "language_projection", "vision_model/post_layernorm"}
    with pytest.raises(ValueError, match="InstructBLIP training is not supported yet"):
        c.model.checkpoint = str(train_fixtures.tiny_family_checkpoint(tmp_path / "iblip", "instructblip"))
        trainer.run(c, str(tmp_path / "run2"))


@pytest.mark.parametrize("family", ["blip2", "llava_next"])
def test_probe_features_of_other_families(family, data, tmp_path):
    """Probing (Table 3 left) reads the decoder's hidden states of any family, and BLIP-2's projected Q-Former
    outputs as its `projector` feature; features a family does not have are refused by name."""
    from vlmcls_jax.analysis.features import FeatureSettings, extract_features, load_features
    from vlmcls_jax.data.sources import ClassList, read_manifest
    from vlmcls_jax.eval.loading import load_for_eval

    root, manifest = data
    loaded = load_for_eval(str(train_fixtures.tiny_family_checkpoint(tmp_path / family, family)))
    examples = read_manifest(manifest, root / "images", ClassList(tuple(demo.class_names())))
    wanted = ("llm:-1/last", "llm:-1/mean") + (("projector/mean",) if family == "blip2" else ())
    extract_features(loaded.model, loaded.tokenizer, examples, str(tmp_path / "f"), FeatureSettings(
        features=wanted, batch_size=4), loaded.inputs)
    _, labels, feats = load_features(str(tmp_path / "f"), examples)
    assert len(labels) == 4 and set(feats) == set(wanted)
    assert all(v.shape == (4, 32) and (v != 0).any() for v in feats.values())
    with pytest.raises(ValueError, match=r"features \['vision/mean'\] are not defined"):
        extract_features(loaded.model, loaded.tokenizer, examples, str(tmp_path / "g"),
                         FeatureSettings(features=("vision/mean",)), loaded.inputs)
