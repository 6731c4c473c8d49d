"""Tiny random EVA01-CLIP checkpoints built by open_clip itself (offline), in the hub's open_clip layout:
open_clip_config.json + open_clip_model.safetensors (+ a tokenizer for the jobs)."""

from __future__ import annotations

import json
import os
import pathlib
import sys

TINY_TIMM_NAME = "vlmcls_test_eva01_tiny_patch14"
# The tiny trunk: timm's `eva_giant_patch14_224` with its settings (qkv bias as q_bias/v_bias, GELU MLP,
# LayerNorm 1e-6, CLS + absolute positions, no rope / SwiGLU / layer-scale) at test sizes.
TINY_TRUNK = dict(img_size=28, patch_size=14, embed_dim=32, depth=2, num_heads=4, mlp_ratio=48 / 32)


# Where `make test` installs the reference stack (open_clip, timm, torchvision, ftfy), apart from the venv's
# site-packages: see `import_open_clip`.
REFERENCE_DIR = os.path.join(sys.prefix, "openclip-ref")


def import_open_clip():
    """`open_clip` (with timm), importable beside the tests' CPU torch 2.13, from REFERENCE_DIR.

    Why apart: open_clip and timm import torchvision, and the registry's torchvision 0.28 (the release for torch
    2.13) is a CUDA build whose C extension cannot load beside a CPU torch.  Installed in site-packages, every
    `import transformers.image_utils` (which imports torchvision when it is installed) would fail, library and
    `make run` included: torchvision tolerates a missing extension except in `_meta_registrations.py`, which
    registers fake kernels for its `nms` / `qnms` ops unchecked ("operator torchvision::nms does not exist").
    So the reference stack lives in REFERENCE_DIR, put on sys.path by this function only, after declaring those
    two op schemas (open_clip and timm never call them: they are detection box ops)."""
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"]
    if not os.path.isdir(REFERENCE_DIR):
        raise ImportError(f"{REFERENCE_DIR} is missing: the EVA-CLIP reference is installed there by `make test` "
                          "(Makefile, .installed-test)")
    import torch
    if REFERENCE_DIR not in sys.path:
        sys.path.append(REFERENCE_DIR)
    try:
        import torchvision  # noqa: F401
    except RuntimeError as e:
        if "torchvision::nms does not exist" not in str(e):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import_open_clip.library = lib    # a Library unregisters its ops when collected
        import torchvision  # noqa: F401
    import open_clip
    return open_clip


def register_tiny_trunk() -> str:
    """Registers TINY_TIMM_NAME with timm (once per process) and returns it."""
    import_open_clip()      # timm imports torchvision
    import timm
    from timm.models import eva, register_model

    if not timm.is_model(TINY_TIMM_NAME):
        def tiny(pretrained: bool = False, **kwargs):      # timm's own constructor, sizes overridden
            return eva.eva_giant_patch14_224(pretrained=False, **dict(kwargs, **TINY_TRUNK))
        tiny.__name__ = TINY_TIMM_NAME
        tiny.__module__ = "timm.models.eva"
        register_model(tiny)
    return TINY_TIMM_NAME


def model_cfg(text_width: int = 32, text_layers: int = 2, vocab_size: int = 64, context_length: int = 16,
              embed_dim: int = 16) -> dict:
    """An open_clip model config of EVA01-g-14-plus's form (same keys and options) at tiny sizes."""
    return {"embed_dim": embed_dim,
            "vision_cfg": {"image_size": TINY_TRUNK["img_size"], "timm_model_name": register_tiny_trunk(),
                           "timm_model_pretrained": False, "timm_pool": "token", "timm_proj": None},
            "text_cfg": {"context_length": context_length, "vocab_size": vocab_size, "width": text_width,
                         "heads": 4, "layers": text_layers},
            "custom_text": True}


def build(cfg: dict, seed: int = 0):
    """open_clip's CustomTextCLIP for `cfg`, every parameter random (LayerNorm scales near 1), in eval mode."""
    import torch

    open_clip = import_open_clip()
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in cfg.items() if k != "custom_text"}
    model = open_clip.CustomTextCLIP(**kwargs).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(2.3)
            elif name.endswith("norm1.weight") or name.endswith("norm2.weight") or ".ln_" in name \
                    or name.endswith("norm.weight") or name.endswith("ln_final.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return model


def save(model, cfg: dict, folder: pathlib.Path, tokenizer=None) -> pathlib.Path:
    """Writes the hub layout: open_clip_config.json ({"model_cfg", "preprocess_cfg"}) and the state dict as
    open_clip_model.safetensors (and `tokenizer` when given)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": cfg,
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


def tokenizer(texts: list[str], vocab_size: int = 160):
    """The demo BPE tokenizer ending every text with "<|endoftext|>", the highest id (as open_clip's end of
    text, 49407, is): open_clip pools at the highest id."""
    from tokenizers import processors

    from vlmcls_jax import demo

    tok = demo.build_tokenizer(texts, vocab_size)
    tok.add_tokens(["<|endoftext|>"], special_tokens=True)
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    assert eot == len(tok) - 1
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A <|endoftext|>", special_tokens=[("<s>", tok.bos_token_id), ("<|endoftext|>", eot)])
    return tok
