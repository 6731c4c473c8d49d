"""The toy world: the whole study in miniature, offline, on a CPU (vlmcls_jax/toyworld/pipeline.py).
A rendered world of 55 classes; a tiny CLIP trained on balanced captions; a tiny LLaVA on that vision tower
trained on long-tailed captions and instructions; the study's evaluations, probes, frequency analysis and
fine-tuning fixes; WORKDIR/report.md says which findings the miniature reproduces.

    python -m vlmcls_jax.main --config configs/toyworld.py --workdir runs/toyworld          # ~15 min on 2 cores
    python -m vlmcls_jax.main --config configs/toyworld.py:quick --workdir runs/toy_quick   # ~3 min (tests)
    python -m vlmcls_jax.main --config configs/toyworld.py --config.seeds=3 --workdir runs/toyworld_seeds
        # `make run-seeds`: three whole runs (seeds 0, 1, 2), mean and 95% interval, verdicts over seeds
"""

import ml_collections


def get_config(setting: str = "full") -> ml_collections.ConfigDict:
    if setting not in ("full", "quick"):
        raise ValueError(f"setting {setting!r} is not 'full' or 'quick'")
    quick = setting == "quick"
    c = ml_collections.ConfigDict()
    c.job = "toyworld"
    c.setting = setting
    c.seed = 0
    c.seeds = 1                        # whole runs with seeds seed, seed + 1, ... (toyworld/seeds.py)
    c.image_size = 32
    c.vocab_size = 400
    c.world = ml_collections.ConfigDict(dict(
        clip_pairs=1000 if quick else 3000, captions=600 if quick else 2000, instructions=800 if quick else 3000,
        qa_instructions=150 if quick else 350, facts_per_class=4 if quick else 24,
        classification=400 if quick else 1800, test_per_class=2 if quick else 10,
        probe_train_per_class=2 if quick else 10, image_size=32, zipf_exponent=1.1))
    c.model = ml_collections.ConfigDict(dict(
        patch_size=8, vision_width=64, vision_layers=3, heads=4, projection_dim=64, clip_text_width=64,
        clip_text_layers=2, text_width=128, text_layers=3))
    if quick:   # compiling dominates the quick setting's time, and it grows with the (unscanned) layers
        c.model.vision_layers = c.model.text_layers = 2
    c.clip = ml_collections.ConfigDict(dict(steps=40 if quick else 500, batch_size=64 if quick else 128,
                                            learning_rate=2e-3, max_length=24))
    # Epochs over each stage's records (global batch 32): alignment and instruction tuning train the
    # projector and the decoder (there is no pretrained LLM here); classification fine-tuning trains the
    # projector only (the study's Table 3 right); the mixture trains both, one pass.
    c.stages = ml_collections.ConfigDict(dict(
        batch_size=32, log_every=20, align_lr=2e-3, align_epochs=1.0 if quick else 2.0, instruct_lr=1e-3,
        instruct_epochs=1.0 if quick else 2.0, finetune_lr=1e-3, finetune_epochs=1.0 if quick else 2.0,
        mixture_epochs=0.5 if quick else 1.0))
    c.label_set_sizes = (2,) if quick else (5, 2)
    c.max_new_tokens = 6
    c.qa_max_new_tokens = 24           # the knowledge answers: "The object is a ..., which lives in the ..."
    c.eval_batch_size = 32
    c.probe_epochs = 20 if quick else 100
    return c
