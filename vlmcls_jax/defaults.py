"""Every job's fields with their defaults and meanings: the schema `config_check.check_config` holds a
job's config to, and the base the recipes in configs/ start from (each recipe changes what it reproduces).

    train_config()            job "train"        (configs/common.py, finetune_*.py, train_tiny.py)
    eval_config(dataset)      job "eval"         (configs/table1.py, table2.py, figure2.py)
    probe_config(dataset)     job "probe"        (configs/table3_probe.py)
    imagewikiqa_config()      job "imagewikiqa"  (configs/table5_imagewikiqa.py)

Datasets: the study's four (`DATASETS`); the manifest and class list paths default to the study's data/
folder layout.
"""

import ml_collections
from ml_collections.config_dict import placeholder


def train_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.job = "train"
    c.seed = 0
    c.mesh_shape = (-1, 1, 1)                 # (data, fsdp, tensor); one -1 takes the remaining devices
    c.activation_sharding = False             # pin activations by the rules (see sharding.activation_sharding)
    # revision: a hub branch, tag or commit to pin (WORKDIR/provenance.json records the commit it resolved to)
    # remat: recompute decoder blocks in the backward pass; scan_layers: stacked decoder layers run by
    # jax.lax.scan (compile time nearly flat in depth; Llama decoders; not with LoRA)
    c.model = ml_collections.ConfigDict(dict(checkpoint="", revision=placeholder(str), dtype="bfloat16",
                                             param_dtype="float32", remat=False, scan_layers=False))
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
        caption_question="Generate a caption for the image.",   # the paper's caption template (finetune_data)
        mix_with="",                  # LLaVA JSON mixed with the above, e.g. llava_v1_5_mix665k.json (Table 5)
        mix_seed=1234,                # the mixture's shuffle seed (the study: random.seed(1234))
        image_root="",                # image paths in the records are relative to this folder
        template="llava_v1",          # conv_vicuna_v1, the study's `--version v1` (data.conversation.TEMPLATES)
        max_length=2048, buckets=(768, 1024, 2048), batch_size=64, worker_count=0,
        use_checkpoint_preprocessor=True,
        on_bad_image="error"))        # or "skip": leave out records whose image is unreadable, listed and counted
    # warmup_steps > 0 replaces warmup_ratio (LAVIS's recipes count warmup in steps)
    c.optim = ml_collections.ConfigDict(dict(warmup_ratio=0.03, warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
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


DATASETS = ("imagenet", "flowers", "cars", "caltech")
# The study's evaluation split in its manifests (data/*.jsonl): ImageNet's is "valid" (main_results/main.py:319
# `--split` default "valid"), the others' "test".
TEST_SPLIT = {"imagenet": "valid"}


def eval_config(dataset: str = "flowers") -> ml_collections.ConfigDict:
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r} is not one of {DATASETS}")
    c = ml_collections.ConfigDict()
    c.job = "eval"
    c.seed = 0
    c.experiments = ("clip", "open", "closed", "scoring")
    c.label_set_sizes = ()
    c.max_examples = 0                     # > 0: evaluate only the first N (smoke tests)
    c.mesh_shape = ()                      # e.g. (-1, 1, 1): split VLM batches over all devices (batch_size
                                           # must divide over them); () = one device per process
    # The VLM: any family (LLaVA-1.5, LLaVA-NeXT, BLIP-2, InstructBLIP; README "Supported checkpoints").
    # label: the name in tables; revision: a hub branch, tag or commit to pin (results.json records the commit);
    # prompt_format: "auto" (the checkpoint's documented format) or a key of data.prompt_formats.PROMPT_FORMATS;
    # scan_layers: a Llama decoder's layers stacked and run by jax.lax.scan (compiles once per program, not
    # once per layer: benchmarks/compile_time.py); same results, but on CPU a decode step took 1.8x as long
    # (every step slices the stacked weights anew: benchmarks/generation.py --scan-layers), so keep it off
    # for generation-heavy jobs there
    c.model = ml_collections.ConfigDict(dict(checkpoint="llava-hf/llava-1.5-7b-hf", label="",
                                             revision=placeholder(str), prompt_format="auto", scan_layers=False))
    # templates: "study" (the study's one template "A photo of a {}"), "single" or "imagenet80" (CLIP's ensemble)
    c.clip = ml_collections.ConfigDict(dict(checkpoint="openai/clip-vit-large-patch14-336", templates="study",
                                            label="", revision=placeholder(str)))
    # on_bad_image: "error" (stop at the first unreadable image, naming it) or "skip" (leave such images out,
    # listed in WORKDIR/skipped_images.jsonl and counted in results.json; accuracies are over the rest)
    c.data = ml_collections.ConfigDict(dict(name=dataset, manifest=f"data/{dataset}.jsonl",
                                            classes=f"data/{dataset}_classes.json", image_root=".",
                                            split=TEST_SPLIT.get(dataset, "test"), on_bad_image="error"))
    # wording: a key of data.prompts.WORDINGS ("finetuned": generation only); choice_order: "shuffled" (per
    # image, by seed) or "dataset" (the class list's order: the study's label-order ablation); max_new_tokens:
    # 0 = the study's, 64 (512 with chain of thought); headline: "substring" (the study's zero-shot rule),
    # "exact" (its rule for fine-tuned LLaVA, label.lower() == pred.lower()) or "unparenthesized" (fine-tuned
    # BLIP-2; configs/finetuned_eval.py)
    c.generation = ml_collections.ConfigDict(dict(max_new_tokens=0, batch_size=8, wording="default",
                                                  chain_of_thought=False, choice_order="shuffled",
                                                  headline="substring"))
    # The study fed images through llava-hf's processor (resize + centre crop, no padding); True pads to a
    # square first as LLaVA-1.5's training code does.
    c.pad_to_square = False
    # batch_size: images per prefill; chunk_size: class-name token positions per compiled call; cfg_alpha: the
    # study's calibration alpha (eval.vlm_scoring; 1 = sum)
    c.scoring = ml_collections.ConfigDict(dict(batch_size=1, chunk_size=1024, cfg_alpha=2.0))
    return c


def probe_config(dataset: str = "flowers") -> ml_collections.ConfigDict:
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r} is not one of {DATASETS}")
    c = ml_collections.ConfigDict()
    c.job = "probe"
    c.seed = 0
    c.max_examples = 0                       # > 0: the first N of each split (smoke tests)
    c.mesh_shape = ()                        # e.g. (-1, 1, 1): split extraction batches over this process's devices
    c.model = ml_collections.ConfigDict(dict(checkpoint="llava-hf/llava-1.5-7b-hf", revision=placeholder(str),
                                             prompt_format="auto", scan_layers=False))   # as in eval_config
    c.data = ml_collections.ConfigDict(dict(name=dataset, manifest=f"data/{dataset}.jsonl",
                                            classes=f"data/{dataset}_classes.json", image_root=".",
                                            train_split="train", test_split=TEST_SPLIT.get(dataset, "test")))
    c.features = ("llm:-1/last", "llm:-1/mean")
    c.wording = "default"
    c.batch_size = 8
    c.pad_to_square = False                  # the study extracted through llava-hf's processor
    c.probe = ml_collections.ConfigDict(dict(epochs=100 if dataset == "imagenet" else 500, batch_size=512,
                                             learning_rate=1e-3, val_fraction=0.1, shuffle=False))
    return c


def imagewikiqa_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.job = "imagewikiqa"
    c.seed = 1234                          # the study's random.seed for the parser's fallback
    c.max_examples = 0                     # > 0: the first N questions (smoke tests)
    c.mesh_shape = ()                      # e.g. (-1, 1, 1): split batches over this process's devices
    c.model = ml_collections.ConfigDict(dict(checkpoint="llava-hf/llava-1.5-7b-hf", label="",
                                             revision=placeholder(str), prompt_format="auto",
                                             scan_layers=False))  # as in eval_config
    c.data = ml_collections.ConfigDict(dict(questions="data/imagewikiqa.jsonl", image_root=".",
                                            require_images=False))   # True: a missing image is an error
    # protocol: "main" (imagewikiqa/main.py, the released models) or "model_vqa" (the study's fine-tuned LLaVA row:
    # LLaVA's model_vqa.py with its ImageWikiQA lines; needs prompt_format "llava_v1"; eval.imagewikiqa_eval)
    c.generation = ml_collections.ConfigDict(dict(chain_of_thought=True, max_new_tokens=1024, batch_size=8,
                                                  protocol="main"))
    c.pad_to_square = False                # the study used llava-hf's processor (no padding; model_vqa pads)
    c.baseline = ""                        # another run's workdir: report the gain over it
    return c


# job -> (its fields, the sections whose keys are the user's: learning-rate groups, an objective's parameters)
JOB_FIELDS = {
    "train": (train_config, ("learning_rates", "objective")),
    "eval": (eval_config, ()),
    "probe": (probe_config, ()),
    "imagewikiqa": (imagewikiqa_config, ()),
}
