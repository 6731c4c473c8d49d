"""Loading a checkpoint for an evaluation job: the model (in `dtype` / `param_dtype`, each parameter placed
directly in its sharding over this process's devices when a mesh is asked for), its tokenizer, its image preprocessing and, for a VLM, how its family takes prompts and images
(`vlm_inputs.VLMInputs`), from a hub id or a local folder."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from transformers import AutoTokenizer

from vlmcls_jax import sharding as shd
from vlmcls_jax.convert import hf_config, openclip
from vlmcls_jax.convert.companions import require_tokenizer
from vlmcls_jax.convert.families import family_of
from vlmcls_jax.convert.hf import checkpoint_provenance, load_weights, resolve_checkpoint, safetensors_files
from vlmcls_jax.data.preprocess import ClipPreprocessConfig
from vlmcls_jax.eval.vlm_inputs import VLMInputs, auto_prompt_format


def eval_mesh(mesh_shape: Sequence[int]):
    """A mesh over this process's own devices (each process evaluates its own share), or None for ()."""
    return shd.make_mesh(tuple(mesh_shape), devices=jax.local_devices()) if mesh_shape else None


def preprocess_for(folder: str, image_size: int) -> ClipPreprocessConfig:
    """The checkpoint's preprocessor_config.json when it has one (an open_clip folder: its open_clip_config.json's
    preprocess_cfg), else CLIP's at the model's image size."""
    if openclip.is_open_clip_dir(folder):
        return openclip.preprocess_config(folder, image_size)
    if os.path.exists(os.path.join(folder, "preprocessor_config.json")):
        return ClipPreprocessConfig.from_pretrained_dir(folder)
    return ClipPreprocessConfig(size=image_size, crop_size=(image_size, image_size))


@dataclasses.dataclass
class Loaded:
    model: Any
    tokenizer: Any
    preprocess: ClipPreprocessConfig
    source: str          # the local folder the checkpoint was read from
    provenance: dict     # `checkpoint_provenance`: what was asked for and the hub commit it resolved to
    inputs: VLMInputs | None = None   # a VLM's prompt format and input encoding (None for CLIP)


def eval_model_config(source: str, dtype="float32", param_dtype=None, scan_layers: bool = False):
    """The model config an evaluation job builds from a checkpoint folder's config.json (the abstract half of
    `load_for_eval`, which `vlmcls_jax.plan` also uses).  dtype: computation; param_dtype: storage (None: dtype)."""
    cfg = hf_config.load_config(source, jnp.dtype(dtype), jnp.dtype(param_dtype or dtype))
    return hf_config.with_decoder_options(cfg, scan_layers=scan_layers)


def load_for_eval(checkpoint: str, mesh=None, revision: str | None = None, prompt_format: str = "auto",
                  scan_layers: bool = False, dtype="float32", param_dtype=None,
                  api: dict | None = None) -> Loaded:
    """A VLM (LLaVA-1.5, LLaVA-NeXT, BLIP-2, InstructBLIP) or CLIP (or open_clip EVA01-CLIP) checkpoint with its
    tokenizer and preprocessing.  With `mesh`, every parameter is read straight into its sharding under the
    training rules (`sharding.LOGICAL_RULES`: split over "fsdp" and "tensor" where the mesh has them, replicated
    over "data"), so no device ever holds more than its share: a 13B model in bfloat16 (26 GB) fits 8 chips of
    16 GB.
    revision: a hub branch, tag or commit to pin (None: the default branch); ignored for local folders.
    prompt_format: a key of `data.prompt_formats.PROMPT_FORMATS`, or "auto": the one the checkpoint's family
    documents (`vlm_inputs.auto_prompt_format`).  scan_layers: see `convert.load_hf`.
    dtype / param_dtype: computation and storage dtypes (the jobs' `config.model.dtype`, bfloat16 as the study's
    scripts load every VLM: `torch_dtype=torch.bfloat16`); the provenance records both.
    An "api:VENDOR/MODEL" checkpoint is a proprietary model behind its vendor's API (`eval.api_model`; `api`:
    `api_model.api_arguments`)."""
    if checkpoint.startswith("api:"):
        from vlmcls_jax.eval.api_model import load_api
        model, inputs = load_api(checkpoint, **(api or {}))
        return Loaded(model, None, None, checkpoint, dict(checkpoint=checkpoint, api=model.settings()), inputs)
    source = resolve_checkpoint(checkpoint, revision)
    require_tokenizer(source)
    cfg = eval_model_config(source, dtype, param_dtype, scan_layers)
    family = family_of(cfg)
    if family.kind == "lm":
        raise ValueError(f"{checkpoint}: a bare {family.title} language model; evaluations take a VLM or a CLIP model")
    model = load_weights(cfg, safetensors_files(source),
                         shardings=None if mesh is None else shd.path_shardings(cfg, mesh))
    preprocess = preprocess_for(source, model.config.vision_config.image_size)
    inputs = None
    if family.kind == "vlm":    # CLIP and EVA-CLIP take no prompt format
        if prompt_format == "auto":
            with open(os.path.join(source, "config.json")) as f:
                prompt_format = auto_prompt_format(json.load(f))
        qformer = os.path.join(source, "qformer_tokenizer")
        inputs = VLMInputs(model, preprocess, prompt_format,
                           AutoTokenizer.from_pretrained(qformer) if os.path.isdir(qformer) else None)
    return Loaded(model, AutoTokenizer.from_pretrained(source), preprocess, source,
                  dict(checkpoint_provenance(checkpoint, revision, source), dtype=jnp.dtype(dtype).name,
                       param_dtype=jnp.dtype(param_dtype or dtype).name), inputs)


def load_model_section(model_section, mesh=None, api: dict | None = None) -> Loaded:
    """`load_for_eval` on a job's (resolved: `config_check.check_job_config`) `config.model` section: its checkpoint,
    revision, prompt_format, scan_layers, dtype and param_dtype (None: float32, and param_dtype as dtype)."""
    m = model_section
    return load_for_eval(m.checkpoint, mesh, m.revision, m.prompt_format, scan_layers=m.scan_layers,
                         dtype=m.dtype or "float32", param_dtype=m.param_dtype or None, api=api)
