"""The study's proprietary-model rows of Table 1 (open and closed world) on one dataset: GPT-4 Turbo, Claude 3
Opus or Gemini 1.0 Pro Vision through its vendor's API (the versions of the paper's Table 6), as the study's
main_results/main_api.py and main_api.sh ran them: 100 examples of the split after a shuffle seeded 1234, the
bare question, the image file as base64 JPEG, the vendors' default temperature (Claude: max_tokens 1024),
16 requests at a time.

    export OPENAI_API_KEY=...      # or ANTHROPIC_API_KEY / GOOGLE_API_KEY (read from the environment only)
    python -m vlmcls_jax.main --config configs/table1_api.py:openai,flowers --workdir runs/api_gpt4_flowers \\
        --config.data.manifest=VLMClassifier/data/flowers.jsonl \\
        --config.data.classes=VLMClassifier/data/flowers_classes.json --config.data.image_root=VLMClassifier
    # results.json: rows, and api_usage (tokens, cost in USD); every reply is in WORKDIR/api_responses.jsonl, so
    # a rerun (or the closed-world run after the open one) pays only for what is not there yet.

Rate limits: --config.model.api.requests_per_minute=... --config.model.api.tokens_per_minute=... (your tier's).
ImageWikiQA (Table 5): configs/table5_imagewikiqa.py with --config.model.checkpoint=api:openai/gpt-4-turbo-2024-04-09.
Table 8 (synonyms): add --config.synonyms=imagenet_synonyms.json (python -m vlmcls_jax.eval.synonyms).
"""

import ml_collections

from vlmcls_jax import defaults

MODELS = {"openai": "api:openai/gpt-4-turbo-2024-04-09", "anthropic": "api:anthropic/claude-3-opus-20240229",
          "google": "api:google/gemini-1.0-pro-vision-001"}


def get_config(arg: str = "openai,flowers") -> ml_collections.ConfigDict:
    vendor, _, dataset = arg.partition(",")
    if vendor not in MODELS:
        raise ValueError(f"configs/table1_api.py:VENDOR,DATASET: VENDOR {vendor!r} is not one of {sorted(MODELS)}")
    c = defaults.eval_config(dataset or "flowers")   # data.split: the study's main_api.sh's (ImageNet "valid")
    c.experiments = ("open", "closed")
    c.model.checkpoint = MODELS[vendor]
    # main_api.py: random.seed(1234); random.shuffle(data) (lines 19-20), then data[:data_limit], --data_limit
    # default 100 (line 197; main_api.sh does not change it): the first 100 of the study's order (c.sampling)
    c.max_examples = 100
    c.generation.batch_size = 16        # requests per batch; --threads 16
    c.model.api.concurrency = 16
    return c
