"""Fields shared by the training recipes (each recipe overrides what it reproduces)."""

import ml_collections


def train_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.job = "train"
    c.seed = 0
    c.mesh_shape = (-1, 1, 1)                 # (data, fsdp, tensor); one -1 takes the remaining devices
    c.activation_sharding = False             # pin activations by the rules (see sharding.activation_sharding)
    c.model = ml_collections.ConfigDict(dict(checkpoint="", revision=None, dtype="bfloat16", param_dtype="float32",
                                                     remat=False))   # remat: recompute decoder blocks in backward
    c.tokenizer = ""                          # default: the model checkpoint's tokenizer
    c.lora = ml_collections.ConfigDict(dict(rank=0, alpha=256.0, dropout=0.05, targets=""))
    # Trainable groups: {preset or regex over parameter paths: learning rate}; presets are
    # projector, lora, llm, vision, text, head, all (vlmcls_jax.train.optimizer.TRAINABLE_PRESETS).
    c.learning_rates = {"projector": 2e-5}
    c.objective = ml_collections.ConfigDict(dict(name="text_generation", label_smoothing=0.0))
    c.data = ml_collections.ConfigDict(dict(
        train_json="", classification_manifest="", split="train", answer_template="{}", image_root="",
        template="llava_v1", max_length=2048, buckets=(768, 1024, 2048), batch_size=64, worker_count=0,
        use_checkpoint_preprocessor=True))
    c.optim = ml_collections.ConfigDict(dict(warmup_ratio=0.03, weight_decay=0.0, max_grad_norm=1.0,
                                             accumulate_steps=1))
    c.num_epochs = 1
    c.num_steps = 0                           # > 0 overrides num_epochs
    c.stop_at_step = 0                        # > 0: checkpoint and stop there (preemption drills, tests)
    c.checkpoint_every = 500
    c.keep_checkpoints = 3
    c.log_every = 10
    c.peak_tflops = 0.0                       # per-device peak (e.g. 197 for TPU v5e bf16) for the MFU estimate
    c.export_hf = True                        # write WORKDIR/hf_export (LoRA merged) at the end
    return c
