"""Tiny random transformers (PyTorch) models saved with save_pretrained: the reference implementations."""

import os

import numpy as np
import torch
import transformers

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=28,
              patch_size=14, projection_dim=16)
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def llama_config(**changes):
    return transformers.LlamaConfig(**{**TEXT, **changes})


def llava(folder, *, vision=None, text=None, **changes):
    torch.manual_seed(0)
    cfg = transformers.LlavaConfig(vision_config=transformers.CLIPVisionConfig(**{**VISION, **(vision or {})}),
                                   text_config=llama_config(**(text or {})), image_token_index=99, **changes)
    model = transformers.LlavaForConditionalGeneration(cfg).eval()
    model.save_pretrained(folder)
    return model


# LLaVA-NeXT: 28 px tiles of 4 x 4 patches (patch 7), grid resolutions the default ones scaled from 336 to 28.
NEXT_VISION = dict(VISION, patch_size=7)
NEXT_PINPOINTS = [[28, 56], [56, 28], [56, 56], [84, 28], [28, 84]]


def llava_next(folder, *, vision=None, text=None, mistral=False, **changes):
    """A tiny LlavaNextForConditionalGeneration; text tower Llama, or Mistral (no sliding window) if `mistral`."""
    torch.manual_seed(0)
    text_cfg = transformers.MistralConfig(**{**TEXT, "sliding_window": None, **(text or {})}) if mistral \
        else llama_config(**(text or {}))
    cfg = transformers.LlavaNextConfig(vision_config=transformers.CLIPVisionConfig(**{**NEXT_VISION, **(vision or {})}),
                                       text_config=text_cfg, image_token_index=99,
                                       image_grid_pinpoints=NEXT_PINPOINTS, **changes)
    model = transformers.LlavaNextForConditionalGeneration(cfg).eval()
    model.save_pretrained(folder)
    return model


def llama(folder, **changes):
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(llama_config(**changes)).eval()
    model.save_pretrained(folder)
    return model


def clip(folder, *, text=None, vision=None):
    torch.manual_seed(0)
    text_cfg = {**dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=100,
                       max_position_embeddings=16, eos_token_id=2, bos_token_id=1, pad_token_id=0), **(text or {})}
    cfg = transformers.CLIPConfig(text_config=text_cfg, vision_config={**VISION, **(vision or {})}, projection_dim=16)
    model = transformers.CLIPModel(cfg).eval()
    model.save_pretrained(folder)
    return model


# initializer_range: transformers' BLIP-2 vision default (1e-10) would make every vision weight ~0.
BLIP2_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=28,
                    patch_size=14, initializer_range=0.02)
QFORMER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, vocab_size=50,
               max_position_embeddings=16, cross_attention_frequency=2)          # cross-attention in layers 0 and 2
OPT = dict(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=100,
           max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def opt_config(**changes):
    return transformers.OPTConfig(**{**OPT, **changes})


def opt(folder, **changes):
    torch.manual_seed(0)
    model = transformers.OPTForCausalLM(opt_config(**changes)).eval()
    model.save_pretrained(folder)
    return model


def blip2(folder, *, instruct=False, text="opt", vision=None, qformer=None, text_changes=None, **changes):
    """A tiny `Blip2ForConditionalGeneration` (instruct=False) or `InstructBlipForConditionalGeneration`, with an
    OPT (text="opt") or Llama (text="llama") decoder; 3 query tokens, image_token_index 99.  query_tokens are
    zeros at init in transformers; they are randomised here so that the queries differ."""
    torch.manual_seed(0)
    text_cfg = opt_config(**(text_changes or {})) if text == "opt" else llama_config(**(text_changes or {}))
    cls, model_cls = (transformers.InstructBlipConfig, transformers.InstructBlipForConditionalGeneration) if instruct \
        else (transformers.Blip2Config, transformers.Blip2ForConditionalGeneration)
    cfg = cls(vision_config={**BLIP2_VISION, **(vision or {})}, qformer_config={**QFORMER, **(qformer or {})},
              text_config=text_cfg, num_query_tokens=3, image_token_index=99, **changes)
    model = model_cls(cfg).eval()
    with torch.no_grad():
        model.query_tokens.normal_()
    model.save_pretrained(folder)
    return model


def nchw(pixels):
    return torch.tensor(pixels.transpose(0, 3, 1, 2))


# ------------------------------------------------------------------------------- shared inputs and checks

def rand_pixels(n, size=28, seed=0):
    """Normalised-looking NHWC pixels float32[n, size, size, 3]."""
    return np.random.RandomState(seed).randn(n, size, size, 3).astype(np.float32)


def left_padded(rows, pad=0):
    """Right-aligned int64[B, T] ids and their attention mask from ragged `rows` (lists of ids)."""
    T = max(map(len, rows))
    ids = np.array([[pad] * (T - len(r)) + list(r) for r in rows], np.int64)
    mask = np.array([[0] * (T - len(r)) + [1] * len(r) for r in rows], np.int64)
    return ids, mask


def hf_positions(mask):
    """The positions our models use by default (real tokens counted, left padding at 0), to pass to HF."""
    return np.maximum(mask.cumsum(1) - 1, 0)


def max_diff(got, want, where=None):
    """max |got - want| (over `where`, a boolean mask of leading dims, if given)."""
    got, want = np.asarray(got, np.float64), np.asarray(want.detach().numpy() if hasattr(want, "detach") else want,
                                                        np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    if where is not None:
        got, want = got[where], want[where]
    return float(np.abs(got - want).max())


def assert_close(got, want, tol, what="", where=None):
    """Asserts max abs diff <= tol; prints the measured value when VLMCLS_PRINT_DIFFS is set (pytest -s)."""
    diff = max_diff(got, want, where)
    if os.environ.get("VLMCLS_PRINT_DIFFS"):
        print(f"\n[max abs diff] {what}: {diff:.3g} (tol {tol:g})")
    assert diff <= tol, f"{what}: max abs diff {diff:.3g} > {tol:g}"
    return diff
