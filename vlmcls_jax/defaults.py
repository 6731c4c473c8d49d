"""Every job's fields with their defaults and meanings: the schema `config_check.check_config` holds a
job's config to, and the base the recipes in configs/ start from (each recipe changes what it reproduces).

    train_config()            job "train"        (configs/common.py, finetune_*.py, train_tiny.py)
    eval_config(dataset)      job "eval"         (configs/table1.py, table2.py, figure2.py)
    probe_config(dataset)     job "probe"        (configs/table3_probe.py)
    imagewikiqa_config()      job "imagewikiqa"  (configs/table5_imagewikiqa.py)

Datasets: the study's four (`DATASETS`); manifests, class lists and the ImageWikiQA questions default to the
study's files shipped in the package (vlmcls_jax.data.study), so a run needs only `data.image_root`.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from vlmcls_jax.data import study
from vlmcls_jax.data.finetune_data import CAPTION_QUESTION, FINETUNE_QUESTION, MIX_SEED


def train_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.job = "train"
    c.overwrite = False    # True: a workdir with another setting's outputs -> WORKDIR/fresh-N (fingerprint.py)
    c.seed = 0
    c.mesh_shape = (-1, 1, 1)                 # (data, fsdp, tensor); one -1 takes the remaining devices
    c.activation_sharding = False             # pin activations by the rules (see sharding.activation_sharding)
    # revision: a hub branch, tag or commit to pin (WORKDIR/provenance.json records the commit it resolved to)
    # remat: recompute decoder blocks in the backward pass; scan_layers: stacked decoder layers run by
    # jax.lax.scan (compile time nearly flat in depth; Llama decoders; LoRA included);
    # frozen_in_compute_dtype: parameters that do not train are stored in `dtype` (f32 masters, `param_dtype`,
    # only for what trains; the export then holds the frozen weights in `dtype` too)
    c.model = ml_collections.ConfigDict(dict(checkpoint="", revision=placeholder(str), dtype="bfloat16",
                                             param_dtype="float32", remat=False, scan_layers=False,
                                             frozen_in_compute_dtype=True))
    c.tokenizer = ""                          # default: the model checkpoint's tokenizer
    # dropout_prng: the PRNG behind LoRA dropout: "rbg" (XLA's RngBitGenerator: a LLaVA-1.5-7B LoRA step compiles
    # for v5e-8 in 66 s instead of 235 s with threefry; masks identical across shardings but not across
    # CPU / GPU / TPU) or "threefry2x32" (JAX's default: identical everywhere)
    c.lora = ml_collections.ConfigDict(dict(rank=0, alpha=256.0, dropout=0.05, targets="", dropout_prng="rbg"))
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
        question=FINETUNE_QUESTION,
        answer_template="{}",         # the answer; {} is the class name (the study: the bare name)
        caption_json="",              # JSONL {"image", "caption"} -> caption records (Table 4)
        caption_question=CAPTION_QUESTION,   # the paper's caption template (finetune_data)
        mix_with="",                  # LLaVA JSON mixed with the above, e.g. llava_v1_5_mix665k.json (Table 5)
        mix_seed=MIX_SEED,            # the mixture's shuffle seed (the study: random.seed(1234))
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


def api_config() -> ml_collections.ConfigDict:
    """config.model.api: how an "api:VENDOR/MODEL" checkpoint is called (eval.api_model.ApiOptions; ignored
    for local checkpoints).  temperature None / max_tokens 0: the study's settings (eval.api_vendors)."""
    return ml_collections.ConfigDict(dict(
        temperature=placeholder(float), max_tokens=0, max_image_side=0, requests_per_minute=0,
        tokens_per_minute=0, tokens_per_request=1500, concurrency=16, max_retries=6, backoff_seconds=2.0,
        max_backoff_seconds=120.0, timeout_seconds=120.0, base_url="", key_env="",
        price_input=placeholder(float), price_output=placeholder(float)))


def study_data(dataset: str) -> dict:
    """The data fields every study-dataset job starts from (`STUDY_DATA_FIELDS` and image_root): the shipped
    manifest and class list (absolute paths), images under image_root (the folder holding data/, as
    `python -m vlmcls_jax.data.prepare` lays it out). ImageNet's manifest is the one `prepare imagenet --out
    DIR` writes to DIR/data/imagenet.jsonl: relative, so run from DIR or set data.manifest."""
    manifest = study.IMAGENET_MANIFEST if dataset == "imagenet" else study.manifest_path(dataset)
    return dict(name=dataset, manifest=manifest, classes=study.class_list_path(dataset), image_root=".")


def eval_config(dataset: str = "flowers") -> ml_collections.ConfigDict:
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r} is not one of {DATASETS}")
    c = ml_collections.ConfigDict()
    c.job = "eval"
    c.overwrite = False    # True: a workdir with another setting's outputs -> WORKDIR/fresh-N (fingerprint.py)
    c.seed = 1234                          # the study's --seed (main_results/main.py:320)
    c.experiments = ("clip", "open", "closed", "scoring")
    c.label_set_sizes = ()
    # sampling: "study" (the study's example order and candidate lists: Python random seeded once, shuffle,
    # per example random.sample + random.shuffle; eval.candidates) or "hashed" (per example, by seed and id)
    c.sampling = "study"
    c.max_examples = 0                     # > 0: evaluate only the first N (of the study's order) (smoke tests)
    c.mesh_shape = ()                      # e.g. (-1, 1, 1): split VLM batches over all devices (batch_size
                                           # must divide over data x fsdp); (1, 1, 8): parameters split over
                                           # 8 devices (tensor parallel); () = one device per process
    # The VLM: any family (LLaVA-1.5, LLaVA-NeXT, BLIP-2, InstructBLIP; README "Supported checkpoints").
    # label: the name in tables; revision: a hub branch, tag or commit to pin (results.json records the commit);
    # prompt_format: "auto" (the checkpoint's documented format) or a key of data.prompt_formats.PROMPT_FORMATS;
    # scan_layers: a Llama decoder's layers stacked and run by jax.lax.scan (compiles once per program, not
    # once per layer: benchmarks/compile_time.py); same results, but on CPU a decode step took 1.8x as long
    # (every step slices the stacked weights anew: benchmarks/generation.py --scan-layers), so keep it off
    # for generation-heavy jobs there; dtype / param_dtype: computation and storage dtypes (bfloat16, as the
    # study's scripts load every VLM: main_results/main.py `torch_dtype=torch.bfloat16`; results.json records
    # them).  With mesh_shape, parameters are split over "fsdp" / "tensor" by the training rules
    # (sharding.LOGICAL_RULES), e.g. (1, 1, 8): tensor parallel over 8 chips; `python -m vlmcls_jax.plan` says
    # whether a mesh fits
    c.model = ml_collections.ConfigDict(dict(checkpoint="llava-hf/llava-1.5-7b-hf", label="",
                                             revision=placeholder(str), prompt_format="auto", scan_layers=False,
                                             dtype="bfloat16", param_dtype="bfloat16",
                                             api=api_config()))   # api: "api:VENDOR/MODEL" checkpoints
    # templates: "study" (the study's one template "A photo of a {}"), "single" or "imagenet80" (CLIP's ensemble)
    c.clip = ml_collections.ConfigDict(dict(checkpoint="openai/clip-vit-large-patch14-336", templates="study",
                                            label="", revision=placeholder(str)))
    # on_bad_image: "error" (stop at the first unreadable image, naming it) or "skip" (leave such images out,
    # listed in WORKDIR/skipped_images.jsonl and counted in results.json; accuracies are over the rest)
    c.data = ml_collections.ConfigDict(dict(**study_data(dataset), split=TEST_SPLIT.get(dataset, "test"), on_bad_image="error"))
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
    # study's calibration alpha (eval.vlm_scoring; 1 = sum); subset: "study" (the first subset_size examples
    # of the seed's shuffle, inference_analysis/main.py:141-144) or "all"; name_tokens: "context" (names
    # tokenised as they follow the prompt) or "study" (the study's ids: the name alone; for BLIP-2 read at the
    # in-context positions, its bug; eval.vlm_scoring.StudyReadout)
    c.scoring = ml_collections.ConfigDict(dict(batch_size=1, chunk_size=1024, cfg_alpha=2.0, subset="study",
                                               subset_size=1000, name_tokens="context"))
    c.paper_numbers = True                 # tables show `ours (paper)`: vlmcls_jax/eval/study_published.json
    # a class -> WordNet synonyms file (python -m vlmcls_jax.eval.synonyms): the open-world answers are also
    # counted right when they name any synonym (Table 8's row "VLM open world, ImageNet synonyms")
    c.synonyms = ""
    return c


def probe_config(dataset: str = "flowers") -> ml_collections.ConfigDict:
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r} is not one of {DATASETS}")
    c = ml_collections.ConfigDict()
    c.job = "probe"
    c.overwrite = False    # True: a workdir with another setting's outputs -> WORKDIR/fresh-N (fingerprint.py)
    c.seed = 0
    c.max_examples = 0                       # > 0: the first N of each split (smoke tests)
    c.mesh_shape = ()                        # e.g. (-1, 1, 1): split extraction batches over this process's devices
    c.model = ml_collections.ConfigDict(dict(checkpoint="llava-hf/llava-1.5-7b-hf", label="",
                                             revision=placeholder(str), prompt_format="auto",
                                             scan_layers=False, dtype="bfloat16",
                                             param_dtype="bfloat16"))   # as in eval_config
    c.data = ml_collections.ConfigDict(dict(**study_data(dataset), train_split="train",
                                            test_split=TEST_SPLIT.get(dataset, "test")))
    c.features = ("llm:-1/last", "llm:-1/mean")
    c.wording = "default"
    c.batch_size = 8
    c.pad_to_square = False                  # the study extracted through llava-hf's processor
    # The study's column trains on the whole train split; val_fraction is held out only for the
    # validation-selected column.  order: "study" (the train rows in the order random.seed(order_seed);
    # random.shuffle gives the whole manifest, feature_analysis/probe.py:39-41) or "file"; shuffle: reshuffle
    # every epoch (the study's CLIP probe); normalize: L2-normalise features (the study's CLIP probe)
    c.probe = ml_collections.ConfigDict(dict(epochs=100 if dataset == "imagenet" else 500, batch_size=512,
                                             learning_rate=1e-3, val_fraction=0.1, shuffle=False, order="study",
                                             order_seed=1234, normalize=False))
    c.paper_numbers = True                 # tables show `ours (paper)`: vlmcls_jax/eval/study_published.json
    return c


def imagewikiqa_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.job = "imagewikiqa"
    c.overwrite = False    # True: a workdir with another setting's outputs -> WORKDIR/fresh-N (fingerprint.py)
    c.seed = 1234                          # the study's random.seed for the parser's fallback
    c.max_examples = 0                     # > 0: the first N questions (smoke tests)
    c.mesh_shape = ()                      # e.g. (-1, 1, 1): split batches over this process's devices
    c.model = ml_collections.ConfigDict(dict(checkpoint="llava-hf/llava-1.5-7b-hf", label="",
                                             revision=placeholder(str), prompt_format="auto",
                                             scan_layers=False, dtype="bfloat16", param_dtype="bfloat16",
                                             api=api_config()))  # as in eval_config
    c.data = ml_collections.ConfigDict(dict(questions=study.imagewikiqa_path(), image_root=".",
                                            require_images=False))   # True: a missing image is an error
    # protocol: "main" (imagewikiqa/main.py, the released models) or "model_vqa" (the study's fine-tuned LLaVA row:
    # LLaVA's model_vqa.py with its ImageWikiQA lines; needs prompt_format "llava_v1"; eval.imagewikiqa_eval)
    c.generation = ml_collections.ConfigDict(dict(chain_of_thought=True, max_new_tokens=1024, batch_size=8,
                                                  protocol="main"))
    c.pad_to_square = False                # the study used llava-hf's processor (no padding; model_vqa pads)
    c.baseline = ""                        # another run's workdir: report the gain over it
    c.paper_numbers = True                 # tables show `ours (paper)`: vlmcls_jax/eval/study_published.json
    return c


def general_config() -> ml_collections.ConfigDict:
    """The general-capability job (eval.general_job, the study's Table 13; configs/table13_general.py)."""
    c = ml_collections.ConfigDict()
    c.job = "general"
    c.max_examples = 0                     # > 0: the first N questions of each benchmark (POPE: of each split)
    c.mesh_shape = ()                      # e.g. (-1, 1, 1): split batches over this process's devices
    c.models = ("llava-hf/llava-1.5-7b-hf",)   # checkpoints, each evaluated on every benchmark
    c.labels = ()                          # their names in the table (default: the checkpoint's last component)
    c.prompt_format = "auto"
    # how every entry of `models` is loaded and run (as eval_config's model section: bfloat16, the dtype the
    # study loads every VLM in; LLaVA-1.5's own evaluation scripts load float16, which TPUs do not compute in)
    c.model = ml_collections.ConfigDict(dict(dtype="bfloat16", param_dtype="bfloat16", scan_layers=False))
    c.api = api_config()                   # for "api:VENDOR/MODEL" entries of models
    c.batch_size = 8
    c.pad_to_square = True                 # LLaVA-1.5's own evaluation (image_aspect_ratio="pad")
    c.benchmarks = ("textvqa", "pope", "mmvet")
    c.textvqa = ml_collections.ConfigDict(dict(annotations="data/textvqa/TextVQA_0.5.1_val.json",
                                               image_root="data/textvqa/train_images",
                                               questions=""))   # LLaVA's llava_textvqa_val_v051_ocr.jsonl
    c.pope = ml_collections.ConfigDict(dict(folder="data/pope/coco", image_root="data/coco/val2014",
                                            splits=("popular", "adversarial")))
    # grader: MM-Vet's (gpt-4-0613); its key from OPENAI_API_KEY; grader_api: limits, retries, base_url
    c.mmvet = ml_collections.ConfigDict(dict(data="data/mm-vet/mm-vet.json", image_root="data/mm-vet/images",
                                             grader="api:openai/gpt-4-0613", grader_api=api_config()))
    c.reference = ""                       # e.g. /work/shared/paper_data/study_published.json: paper numbers
    return c


# The data fields whose defaults are a study dataset's own (`study_data`): a config on another dataset gives them
# (config_check.defaults_dataset).
STUDY_DATA_FIELDS = ("name", "manifest", "classes")

# job -> (its fields, the sections whose keys are the user's: learning-rate groups, an objective's parameters)
JOB_FIELDS = {
    "train": (train_config, ("learning_rates", "objective")),
    "eval": (eval_config, ()),
    "probe": (probe_config, ()),
    "imagewikiqa": (imagewikiqa_config, ()),
    "general": (general_config, ()),
}
PER_DATASET = ("eval", "probe")   # jobs whose defaults depend on the study dataset (their argument)


def job_fields(job: str, dataset: str | None = None) -> ml_collections.ConfigDict:
    """`job`'s fields with their defaults; for the eval and probe jobs those of the study dataset `dataset`
    (None: the declared default dataset)."""
    fields = JOB_FIELDS[job][0]
    return fields(dataset) if job in PER_DATASET and dataset is not None else fields()
