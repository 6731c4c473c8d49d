"""The README's API example runs as written, with the hub checkpoint and the image file swapped for a tiny
local checkpoint and a generated image (nothing is downloaded)."""

import pathlib
import re

import numpy as np
from flax import nnx
from PIL import Image
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from vlmcls_jax import demo
from vlmcls_jax.convert import save_hf

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python example"
    code = blocks[0]
    assert '"llava-hf/llava-1.5-7b-hf"' in code and '"cat.jpg"' in code

    # A tiny LLaVA checkpoint with a tokenizer and an image processor, like a hub folder.
    from ml_collections import config_dict
    config = config_dict.ConfigDict(dict(seed=0, image_size=28, model=dict(
        vocab_size=160, patch_size=14, vision_width=32, vision_layers=2, text_width=32, text_layers=2, heads=4,
        kv_heads=2)))
    names = ["tabby cat", "golden retriever"]
    tokenizer = demo.build_tokenizer([f"USER: <image>\nWhat type of object is in this photo?\nASSISTANT: "
                                      f"The photo features a {n}." for n in names] * 4, 160)
    ckpt = tmp_path / "ckpt"
    save_hf(demo.LlavaForConditionalGeneration(demo.tiny_llava_config(config, tokenizer), rngs=nnx.Rngs(0)), str(ckpt))
    tokenizer.save_pretrained(ckpt)
    CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(ckpt)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(tmp_path / "cat.png")

    code = code.replace('"llava-hf/llava-1.5-7b-hf"', repr(str(ckpt))).replace('"cat.jpg"', repr(str(tmp_path / "cat.png")))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["scores"].shape == (1, 2)
    assert np.isfinite(namespace["scores"]).all()
    assert namespace["logits"].shape[-1] == len(tokenizer)
    assert (tmp_path / "export" / "model.safetensors").exists()
