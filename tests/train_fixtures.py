"""A tiny LLaVA checkpoint (HF format, with tokenizer and image processor) and a rendered classification
dataset, for training tests.  Everything is generated offline from a seed."""

import json
import pathlib

import numpy as np
from flax import nnx
from ml_collections import config_dict
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from vlmcls_jax import demo
from vlmcls_jax.convert import save_hf
from vlmcls_jax.data.prompts import llava_prompt


def _tiny_llava(image_size: int):
    """(the demo tokenizer, a tiny LLaVA config over it): the parts every tiny checkpoint here starts from."""
    config = config_dict.ConfigDict(dict(seed=0, image_size=image_size, model=dict(
        vocab_size=160, patch_size=14, vision_width=32, vision_layers=2, text_width=32, text_layers=2, heads=4,
        kv_heads=2)))
    names = demo.class_names()
    corpus = [llava_prompt(demo.closed_question(names), f"The photo features a {n}.") for n in names] * 4
    tokenizer = demo.build_tokenizer(corpus, 160)
    return tokenizer, demo.tiny_llava_config(config, tokenizer)


def tiny_checkpoint(folder: pathlib.Path, image_size: int = 28) -> pathlib.Path:
    tokenizer, cfg = _tiny_llava(image_size)
    save_hf(demo.LlavaForConditionalGeneration(cfg, rngs=nnx.Rngs(0)), str(folder))
    tokenizer.save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": image_size},
                          crop_size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


def shapes_dataset(folder: pathlib.Path, n: int, seed: int = 0, size: int = 28) -> pathlib.Path:
    """n rendered shape images + a manifest JSONL of {"image", "label", "split"}."""
    rng = np.random.default_rng(seed)
    names = demo.class_names()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = names[i % len(names)]
        demo.render(label, size, rng).save(folder / f"{i}.png")
        rows.append({"image": f"{i}.png", "label": label, "split": "train"})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def eval_world(root: pathlib.Path, n: int):
    """(model, tokenizer, examples, class names): the tiny checkpoint loaded, and n rendered images as
    `data.sources.Example`s."""
    from transformers import AutoTokenizer

    from vlmcls_jax.convert import load_hf
    from vlmcls_jax.data.sources import Example

    ckpt = tiny_checkpoint(root / "ckpt")
    manifest = shapes_dataset(root / "data", n)
    names = demo.class_names()
    examples = [Example(r["image"], str(root / "data" / r["image"]), names.index(r["label"]), r["label"])
                for r in map(json.loads, manifest.read_text().splitlines())]
    return load_hf(str(ckpt)), AutoTokenizer.from_pretrained(ckpt), examples, names


def tiny_clip_checkpoint(folder: pathlib.Path, image_size: int = 28) -> pathlib.Path:
    """A tiny random CLIP in the Hugging Face format with a tokenizer that ends texts with EOS."""
    from tokenizers import processors

    from vlmcls_jax.models import CLIPModel, CLIPVisionConfig
    from vlmcls_jax.models.clip import CLIPConfig, CLIPTextConfig

    tokenizer = demo.build_tokenizer([f"a photo of a {n}." for n in demo.class_names()] * 4, 160)
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=image_size, patch_size=14, projection_dim=16)
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=32, projection_dim=16, eos_token_id=2,
                          bos_token_id=1, pad_token_id=tokenizer.pad_token_id)
    save_hf(CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16), rngs=nnx.Rngs(0)),
            str(folder))
    tokenizer.save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": image_size},
                          crop_size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


def tiny_eval_config(llava, clip, manifest, classes, image_root):
    """configs/table1.py on the tiny checkpoints and a rendered dataset: every experiment, label sets of 2,
    VLM and CLIP batches split over this process's devices (8 in tests, 4 per process in two-process ones)."""
    from configs import table1

    c = table1.get_config("flowers")
    c.model.checkpoint, c.clip.checkpoint, c.clip.templates = str(llava), str(clip), "single"
    c.data.manifest, c.data.classes, c.data.image_root, c.data.split = (
        str(manifest), str(classes), str(image_root), "train")
    c.label_set_sizes = (2,)
    c.generation.max_new_tokens, c.generation.batch_size = 3, 8
    c.scoring.batch_size = 8
    c.mesh_shape = (-1, 1, 1)
    return c


def tiny_family_checkpoint(folder: pathlib.Path, family: str, image_size: int = 28) -> pathlib.Path:
    """A random tiny checkpoint of another VLM family in HF format (weights through `save_hf`, the demo
    tokenizer, the family's image processor): "llava_next" (AnyRes pinpoints 28x56, 56x28, 56x56), "blip2"
    (OPT decoder) or "instructblip" (Llama decoder; the demo tokenizer doubles as its Q-Former tokenizer)."""
    import dataclasses

    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    from vlmcls_jax.models.blip2 import Blip2Config, Blip2ForConditionalGeneration
    from vlmcls_jax.models.blip2_vision import Blip2VisionConfig
    from vlmcls_jax.models.llava_next import LlavaNextConfig, LlavaNextForConditionalGeneration
    from vlmcls_jax.models.opt import OPTConfig
    from vlmcls_jax.models.qformer import QFormerConfig

    tokenizer, base = _tiny_llava(image_size)
    s, t = image_size, base.text_config
    if family == "llava_next":
        pinpoints = ((s, 2 * s), (2 * s, s), (2 * s, 2 * s))
        cfg = LlavaNextConfig(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)},
                              image_grid_pinpoints=pinpoints)
        save_hf(LlavaNextForConditionalGeneration(cfg, rngs=nnx.Rngs(0)), str(folder))
        LlavaNextImageProcessorPil(size={"shortest_edge": s}, crop_size={"height": s, "width": s},
                                   image_grid_pinpoints=[list(p) for p in pinpoints]).save_pretrained(folder)
    elif family in ("blip2", "instructblip"):
        instruct = family == "instructblip"
        text = t if instruct else OPTConfig(vocab_size=t.vocab_size, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                                            num_attention_heads=4, max_position_embeddings=512,
                                            bos_token_id=t.bos_token_id, eos_token_id=t.eos_token_id,
                                            pad_token_id=t.pad_token_id)
        cfg = Blip2Config(
            vision_config=Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, image_size=s, patch_size=14),
            qformer_config=QFormerConfig(vocab_size=t.vocab_size, hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                                         encoder_hidden_size=32, instruction_input=instruct),
            text_config=text, num_query_tokens=8, image_token_index=base.image_token_index)
        save_hf(Blip2ForConditionalGeneration(cfg, rngs=nnx.Rngs(0)), str(folder))
        BlipImageProcessorPil(size={"height": s, "width": s}).save_pretrained(folder)
        if instruct:
            tokenizer.save_pretrained(folder / "qformer_tokenizer")
    else:
        raise ValueError(f"unknown family {family!r}")
    tokenizer.save_pretrained(folder)
    return folder
