"""Fields shared by the training recipes (each recipe overrides what it reproduces)."""

import ml_collections
from ml_collections.config_dict import placeholder


def train_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.job = "train"
    c.seed = 0
    c.mesh_shape = (-1, 1, 1)                 # (data, fsdp, tensor); one -1 takes the remaining devices
    c.activation_sharding = False             # pin activations by the rules (see sharding.activation_sharding)
    # revision: a hub branch, tag or commit to pin (WORKDIR/provenance.json records the commit it resolved to)
    # remat: recompute decoder blocks in the backward pass
    c.model = ml_collections.ConfigDict(dict(checkpoint="", revision=placeholder(str), dtype="bfloat16",
                                             param_dtype="float32", remat=False))
    c.tokenizer = ""                          # default: the model checkpoint's tokenizer
    c.lora = ml_collections.ConfigDict(dict(rank=0, alpha=256.0, dropout=0.05, targets=""))
    # Trainable groups: {preset or regex over parameter paths: learning rate}; presets are
    # projector, lora, llm, vision, text, head, all (vlmcls_jax.train.optimizer.TRAINABLE_PRESETS).
    c.learning_rates = {"projector": 2e-5}
    c.objective = ml_collections.ConfigDict(dict(name="text_generation", label_smoothing=0.0))
    # Training data (vlmcls_jax.train.trainer.training_records; formats in vlmcls_jax.data.finetune_data).
    # train_json, classification_manifest and caption_json may be combined (concatenated); mix_with is mixed in.
    c.data = ml_collections.ConfigDict(dict(
        train_json="",                # LLaVA-format JSON/JSONL (e.g. built by python -m vlmcls_jax.data.finetune_data)
        classification_manifest="",   # JSONL {"image", "label", "split"} -> the study's classification records
        split="train",                # the manifest rows to train on
        # The study's fine-tuning question (prepare_data.ipynb: "the photo", not the zero-shot "this photo")
        question="What type of object is in the photo?",
        answer_template="{}",         # the answer; {} is the class name (the study: the bare name)
        caption_json="",              # JSONL {"image", "caption"} -> caption records (Table 4)
        caption_question="Describe the image concisely.",   # LLaVA's brief-caption instruction (study's not released)
        mix_with="",                  # LLaVA JSON mixed with the above, e.g. llava_v1_5_mix665k.json (Table 5)
        mix_seed=1234,                # the mixture's shuffle seed (the study: random.seed(1234))
        image_root="",                # image paths in the records are relative to this folder
        template="llava_v1", max_length=2048, buckets=(768, 1024, 2048), batch_size=64, worker_count=0,
        use_checkpoint_preprocessor=True,
        on_bad_image="error"))        # or "skip": leave out records whose image is unreadable, listed and counted
    c.optim = ml_collections.ConfigDict(dict(warmup_ratio=0.03, weight_decay=0.0, max_grad_norm=1.0,
                                             accumulate_steps=1))
    c.num_epochs = 1
    c.num_steps = 0                           # > 0 overrides num_epochs
    c.stop_at_step = 0                        # > 0: checkpoint and stop there (preemption drills, tests)
    # Step guard (vlmcls_jax/train/guard.py): non-finite steps are always skipped; spike_zscore > 0 also skips
    # loss / grad-norm spikes; the run stops after max_consecutive_bad skipped steps in a row (0: never).
    c.guard = ml_collections.ConfigDict(dict(spike_zscore=0.0, spike_warmup=20, ema_decay=0.99,
                                             max_consecutive_bad=10))
    c.checkpoint_every = 500                  # steps; 0: no training checkpoints, only the final export
    c.keep_checkpoints = 3
    c.log_every = 10
    c.peak_tflops = 0.0                       # per-device peak (e.g. 197 for TPU v5e bf16) for the MFU estimate
    c.export_hf = True                        # write WORKDIR/hf_export (LoRA merged) at the end
    return c
