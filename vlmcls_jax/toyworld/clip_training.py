"""Stage 1 of the toy world: train a tiny CLIP contrastively on the world's balanced image-caption pairs, with
the same objective (`objectives.clip_contrastive`), optimizer and jitted train step as every other run, and
save it in the Hugging Face format (so the CLIP evaluation and the LLaVA build load it like a hub model)."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from flax import nnx
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from vlmcls_jax import sharding as shd
from vlmcls_jax.convert import save_hf
from vlmcls_jax.data.preprocess import ClipPreprocessConfig, clip_preprocess, load_image
from vlmcls_jax.models import CLIPModel, CLIPVisionConfig
from vlmcls_jax.models.clip import CLIPConfig, CLIPTextConfig
from vlmcls_jax.train.objectives import make_objective
from vlmcls_jax.train.optimizer import ParamGroup, make_optimizer
from vlmcls_jax.train.step import init_train_state, jit_train_step, split_model


def vision_config(m, image_size: int) -> CLIPVisionConfig:
    return CLIPVisionConfig(hidden_size=m.vision_width, intermediate_size=4 * m.vision_width,
                            num_hidden_layers=m.vision_layers, num_attention_heads=m.heads, image_size=image_size,
                            patch_size=m.patch_size, projection_dim=m.projection_dim)


def train_clip(world: dict, tokenizer, config, out_dir: str) -> dict:
    """Trains and saves the tiny CLIP to OUT_DIR; returns {"losses": [...], "steps"}.

    tokenizer: ends every text with EOS (CLIP pools the EOS position)."""
    m, t = config.model, config.clip
    size = config.image_size
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=m.clip_text_width,
                          intermediate_size=4 * m.clip_text_width, num_hidden_layers=m.clip_text_layers,
                          num_attention_heads=m.heads, max_position_embeddings=t.max_length,
                          projection_dim=m.projection_dim, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision_config(m, size),
                                 projection_dim=m.projection_dim), rngs=nnx.Rngs(config.seed))
    pairs = [json.loads(line) for line in open(world["clip_pairs"])]
    preprocess = ClipPreprocessConfig(size=size, crop_size=(size, size))
    pixels = np.stack([clip_preprocess(load_image(os.path.join(world["root"], p["image"])), preprocess)
                       for p in pairs])
    enc = tokenizer([p["caption"] for p in pairs], padding="max_length", truncation=True, max_length=t.max_length,
                    return_tensors="np")

    mesh = shd.make_mesh((-1, 1, 1))
    with jax.set_mesh(mesh):
        shd.shard_model(model, mesh)
        groups = [ParamGroup("all", ("all",), t.learning_rate)]
        _, trainable, _ = split_model(model, groups)
        tx = make_optimizer(trainable, groups, total_steps=t.steps, warmup_ratio=0.05, weight_decay=0.1)
        graphdef, state, frozen = init_train_state(model, groups, tx)
        step = jit_train_step(graphdef, make_objective("clip_contrastive"), tx, state, frozen, mesh,
                              batch_ndims={"input_ids": 2, "attention_mask": 2, "pixel_values": 4})
        rng = np.random.default_rng(config.seed)
        losses = []
        for i in range(t.steps):
            idx = rng.choice(len(pairs), t.batch_size, replace=False)
            batch = {"input_ids": enc["input_ids"][idx].astype(np.int32),
                     "attention_mask": enc["attention_mask"][idx].astype(np.int32), "pixel_values": pixels[idx]}
            state, metrics = step(state, frozen, batch, jax.random.key(i))
            losses.append(float(metrics["loss"]))
        model = nnx.merge(graphdef, state.params, frozen)
    save_hf(model, out_dir)
    tokenizer.save_pretrained(out_dir)
    CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                          do_convert_rgb=True).save_pretrained(out_dir)
    return {"losses": losses, "steps": t.steps}
