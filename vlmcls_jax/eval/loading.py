"""Loading a checkpoint for an evaluation job: the model (on this process's devices when a mesh is asked
for), its tokenizer, its image preprocessing and, for a VLM, how its family takes prompts and images
(`vlm_inputs.VLMInputs`), from a hub id or a local folder."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import jax
from transformers import AutoTokenizer

from vlmcls_jax import sharding as shd
from vlmcls_jax.convert import load_hf, openclip
from vlmcls_jax.convert.companions import require_tokenizer
from vlmcls_jax.convert.hf import checkpoint_provenance, resolve_checkpoint
from vlmcls_jax.data.preprocess import ClipPreprocessConfig
from vlmcls_jax.eval.vlm_inputs import VLMInputs, auto_prompt_format
from vlmcls_jax.models.clip import CLIPModel


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


def load_for_eval(checkpoint: str, mesh=None, revision: str | None = None, prompt_format: str = "auto",
                  scan_layers: bool = False, api: dict | None = None) -> Loaded:
    """A VLM (LLaVA-1.5, LLaVA-NeXT, BLIP-2, InstructBLIP) or CLIP (or open_clip EVA01-CLIP) checkpoint with its
    tokenizer and preprocessing; replicated over `mesh` when given.
    revision: a hub branch, tag or commit to pin (None: the default branch); ignored for local folders.
    prompt_format: a key of `data.prompt_formats.PROMPT_FORMATS`, or "auto": the one the checkpoint's family
    documents (`vlm_inputs.auto_prompt_format`).  scan_layers: see `convert.load_hf`.
    An "api:VENDOR/MODEL" checkpoint is a proprietary model behind its vendor's API (`eval.api_model`; `api`:
    `api_model.api_arguments`)."""
    if checkpoint.startswith("api:"):
        from vlmcls_jax.eval.api_model import load_api
        model, inputs = load_api(checkpoint, **(api or {}))
        return Loaded(model, None, None, checkpoint, dict(checkpoint=checkpoint, api=model.settings()), inputs)
    source = resolve_checkpoint(checkpoint, revision)
    require_tokenizer(source)
    model = load_hf(source, scan_layers=scan_layers)
    if mesh is not None:   # data parallel: the model replicated over the mesh's batch axes
        shd.shard_model(model, mesh)
    preprocess = preprocess_for(source, model.config.vision_config.image_size)
    inputs = None
    if not isinstance(model, CLIPModel):    # CLIP and EVA-CLIP (a CLIPModel) take no prompt format
        if prompt_format == "auto":
            with open(os.path.join(source, "config.json")) as f:
                prompt_format = auto_prompt_format(json.load(f))
        qformer = os.path.join(source, "qformer_tokenizer")
        inputs = VLMInputs(model, preprocess, prompt_format,
                           AutoTokenizer.from_pretrained(qformer) if os.path.isdir(qformer) else None)
    return Loaded(model, AutoTokenizer.from_pretrained(source), preprocess, source,
                  checkpoint_provenance(checkpoint, revision, source), inputs)
