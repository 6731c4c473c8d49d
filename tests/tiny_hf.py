"""Tiny random transformers (PyTorch) models saved with save_pretrained: the reference implementations."""

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


def nchw(pixels):
    return torch.tensor(pixels.transpose(0, 3, 1, 2))
