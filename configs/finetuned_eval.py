"""Evaluating a LLaVA-1.5 fine-tuned on classification data (the study's Table 3 right, Table 4, Table 5's
classification side) exactly as the study evaluates its fine-tuned models: LLaVA's own `model_vqa` path.

The study (yuhui-zh15/VLMClassifier at d069792, training_analysis/llava/):

  eval_classification.sh   python -m llava.eval.model_vqa ... --temperature 0 --conv-mode vicuna_v1
  model_vqa.py             conv_vicuna_v1: `{system} USER: <image>\\n{question} ASSISTANT:` with "a curious user",
                           LLaVA's tokenizer_image_token, images padded to a square (the checkpoint's
                           image_aspect_ratio "pad", finetune.sh:15), greedy, max_new_tokens=1024, the output
                           `.strip()`ped
  prepare_data.ipynb       the question: "What type of object is in the photo?" (the fine-tuning one, "the photo")
  eval_classification.ipynb  exact match, `label.lower() == pred.lower()`: prints `50000 85.668` for ImageNet

Here: prompt format "llava_v1" (data.prompt_formats), wording "finetuned", 1024 new tokens, pad_to_square, and
the headline "exact" (the substring rule of the zero-shot tables is reported beside it in results.json).
The study's val files hold split "valid" (prepare_data.ipynb cell 1 as stored, for ImageNet); the other datasets'
manifests call their evaluation split "test" (`defaults.TEST_SPLIT`).

    python -m vlmcls_jax.main --config configs/finetuned_eval.py:imagenet --workdir runs/proj_imagenet_eval \\
        --config.model.checkpoint=runs/proj_imagenet/hf_export \\
        --config.data.manifest=VLMClassifier/data/imagenet.jsonl \\
        --config.data.classes=VLMClassifier/data/imagenet_classes.json --config.data.image_root=VLMClassifier

`:DATASET,blip2` evaluates a BLIP-2 fine-tuned by configs/finetune_blip2_qformer.py as the study did with LAVIS
(training_analysis/blip/): LAVIS's caption generate (prompt `a photo of`, greedy `num_beams: 1`, `max_len: 50`,
stopping at "\n"; config.yaml:47-49) and blip/eval.ipynb's rule, the label with "(" and ")" removed, lower-cased,
in the lower-cased caption (headline "unparenthesized").  The study reports the best of its epochs
(`max(final_accs)` over val_epoch0..9, printing 87.958 for ImageNet): evaluate each epoch's export and take the
maximum (this job evaluates one checkpoint).  Its val file takes the manifest's split "test"
(blip/prepare_data.py:22), which ImageNet's manifest does not have: "valid" here.
"""

import ml_collections

from vlmcls_jax import defaults


def get_config(arg: str = "imagenet") -> ml_collections.ConfigDict:
    dataset, _, family = arg.partition(",")
    if family not in ("", "llava", "blip2"):
        raise ValueError(f"model family {family!r} (in {arg!r}) is not 'llava' or 'blip2'")
    c = defaults.eval_config(dataset)
    c.experiments = ("open",)
    c.model.checkpoint = f"runs/proj_{dataset}/hf_export"     # a fine-tuning run's export (configs/finetune_*.py)
    c.model.label = "LLaVA-1.5-7B fine-tuned"
    c.model.prompt_format = "llava_v1"
    c.generation.wording = "finetuned"
    c.generation.max_new_tokens = 1024
    c.generation.headline = "exact"
    c.pad_to_square = True
    if family == "blip2":
        c.model.checkpoint = f"runs/blip2_{dataset}/hf_export"
        c.model.label = "BLIP-2 OPT-2.7B fine-tuned"
        c.model.prompt_format = "blip2_lavis_caption"
        c.generation.wording = "default"           # not asked: the prompt is `a photo of`
        c.generation.max_new_tokens = 50           # config.yaml:47 max_len: 50
        c.generation.headline = "unparenthesized"
        c.pad_to_square = False                    # LAVIS's blip_image_eval resizes to a square
    return c
