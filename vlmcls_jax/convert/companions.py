"""The files a checkpoint needs beside its weights to be used: tokenizer, image processor, generation config.

A Hugging Face folder is weights + config.json + these companions.  Our exports (`save_hf`, `orbax-to-hf`)
and our orbax checkpoints (`checkpoint.save_model`, `hf-to-orbax`) copy them from the checkpoint they came
from, so every converted folder loads in the jobs (and in transformers) like its source.  A folder without a
tokenizer or config.json is refused with one line saying what to do, instead of transformers' misleading
"You need to have sentencepiece or tiktoken installed" / "Should have a `model_type` key".
"""

from __future__ import annotations

import os
import shutil

# Names (files, or the InstructBLIP Q-Former's tokenizer folder) copied from a source checkpoint.
COMPANIONS = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
              "added_tokens.json", "vocab.json", "merges.txt", "spiece.model", "chat_template.jinja",
              "chat_template.json", "preprocessor_config.json", "processor_config.json", "generation_config.json",
              "qformer_tokenizer")
# Any one of these makes a tokenizer transformers can load (sentencepiece, fast, or BPE vocab + merges).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")
# Our orbax model checkpoint (`checkpoint.save_model`): this file + params/.
ORBAX_CONFIG = "model_config.json"


def copy_companions(source: str, target: str) -> list[str]:
    """Copies the companions `source` has into `target` (created); returns their names."""
    os.makedirs(target, exist_ok=True)
    copied = []
    for name in COMPANIONS:
        path = os.path.join(source, name)
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(target, name), dirs_exist_ok=True)
        elif os.path.isfile(path):
            shutil.copy(path, os.path.join(target, name))
        else:
            continue
        copied.append(name)
    return copied


def write_generation_config(hf_cfg, target: str) -> None:
    """generation_config.json from a generating model's config (its token ids), unless `target` already has
    one (`save_hf` calls it for every family but the CLIP kind, which does not generate)."""
    if os.path.exists(os.path.join(target, "generation_config.json")):
        return
    from transformers import GenerationConfig
    GenerationConfig.from_model_config(hf_cfg).save_pretrained(target)


def check_hf_folder(folder: str) -> None:
    """Raises ValueError saying what to run when `folder` is not a Hugging Face checkpoint folder."""
    if os.path.isfile(os.path.join(folder, ORBAX_CONFIG)) and os.path.isdir(os.path.join(folder, "params")):
        raise ValueError(f"{folder} is a vlmcls_jax orbax checkpoint; this reads Hugging Face folders: run "
                         f"`python -m vlmcls_jax.convert orbax-to-hf {folder} OUT_DIR` and pass OUT_DIR")
    if not os.path.isfile(os.path.join(folder, "config.json")) and not os.path.isfile(
            os.path.join(folder, "open_clip_config.json")):     # open_clip's layout (convert/openclip.py)
        raise ValueError(f"{folder} has no config.json: not a Hugging Face checkpoint folder (config.json + "
                         "*.safetensors + tokenizer files)")


def require_tokenizer(folder: str) -> None:
    """Raises ValueError when `folder` has no tokenizer files."""
    if not any(os.path.isfile(os.path.join(folder, name)) for name in TOKENIZER_FILES):
        raise ValueError(f"{folder} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}): copy the tokenizer "
                         "files of the checkpoint it was made from into it (exports by `python -m "
                         "vlmcls_jax.convert` and `save_hf(..., source=...)` carry them)")
