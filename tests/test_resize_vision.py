"""BLIP-2 at LAVIS's 364 px: the position-embedding interpolation equals torch's bicubic (what LAVIS's
`interpolate_pos_embed` calls), and the resized checkpoint loads (ours and transformers') with every other
tensor unchanged."""

import json

import numpy as np
import pytest
import torch

import train_fixtures
from vlmcls_jax.convert.resize_vision import bicubic_matrix, interpolate_position_embedding, resize_checkpoint


@pytest.mark.parametrize("grid_in,grid_out", [(16, 26), (2, 3), (5, 3), (4, 4)])
def test_interpolation_is_torch_bicubic(grid_in, grid_out):
    """LAVIS eva_vit.interpolate_pos_embed: `pos_tokens.reshape(-1, orig_size, orig_size, embedding_size)
    .permute(0, 3, 1, 2)`, `torch.nn.functional.interpolate(pos_tokens, size=(new_size, new_size),
    mode='bicubic', align_corners=False)`, then `.permute(0, 2, 3, 1).flatten(1, 2)` after the CLS token."""
    rng = np.random.default_rng(0)
    embedding = rng.standard_normal((1, 1 + grid_in * grid_in, 8)).astype(np.float32)
    pos = torch.from_numpy(embedding[:, 1:]).reshape(-1, grid_in, grid_in, 8).permute(0, 3, 1, 2)
    pos = torch.nn.functional.interpolate(pos, size=(grid_out, grid_out), mode="bicubic", align_corners=False)
    expected = torch.cat([torch.from_numpy(embedding[:, :1]), pos.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)
    ours = interpolate_position_embedding(embedding, grid_out)          # float64 inside; torch: float32
    np.testing.assert_allclose(ours, expected.numpy(), atol=1e-5)
    assert np.allclose(bicubic_matrix(grid_in, grid_out).sum(1), 1.0)


def test_resized_checkpoint_loads_in_ours_and_transformers(tmp_path):
    from safetensors.numpy import load_file
    from transformers import Blip2ForConditionalGeneration as TorchBlip2

    from vlmcls_jax.convert import load_hf
    src = train_fixtures.tiny_family_checkpoint(tmp_path / "blip2", "blip2")          # 28 px, patch 14
    resize_checkpoint(str(src), str(tmp_path / "out"), 42)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["vision_config"]["image_size"] == 42
    processor = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 42, "width": 42}
    before, after = load_file(str(src / "model.safetensors")), load_file(str(tmp_path / "out" / "model.safetensors"))
    key = "vision_model.embeddings.position_embedding"
    assert after[key].shape == (1, 1 + 9, before[key].shape[2])
    np.testing.assert_allclose(after[key], interpolate_position_embedding(before[key], 3))
    assert all(np.array_equal(before[k], after[k]) for k in before if k != key) and set(before) == set(after)
    assert load_hf(str(tmp_path / "out")).config.vision_config.image_size == 42
    torch_model = TorchBlip2.from_pretrained(str(tmp_path / "out"))
    assert tuple(torch_model.vision_model.embeddings.position_embedding.shape) == (1, 10, before[key].shape[2])
    with pytest.raises(ValueError, match="multiple of the patch size"):
        resize_checkpoint(str(src), str(tmp_path / "bad"), 40)
