"""Hostile images: size limits checked before decoding, EXIF orientation on request, and jobs that either
stop at an unreadable image naming it or skip it and say so (`data.on_bad_image`)."""

import json
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import train_fixtures
from vlmcls_jax import demo
from vlmcls_jax.convert.hf import checkpoint_provenance
from vlmcls_jax.data.image_check import screen_images
from vlmcls_jax.data.preprocess import MAX_IMAGE_PIXELS, load_image
from vlmcls_jax.eval import job


def png_declaring(path, width: int, height: int) -> None:
    """A 1x1 PNG whose header claims width x height (a decompression bomb's header, without the bomb)."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")   # our refusal is the point
def test_oversized_images_are_refused_from_the_header(tmp_path):
    just_over = tmp_path / "just_over.png"          # between PIL's warning and error thresholds
    png_declaring(just_over, 10_000, MAX_IMAGE_PIXELS // 10_000 + 1)
    bomb = tmp_path / "bomb.png"                    # over twice the limit: PIL's own DecompressionBombError
    png_declaring(bomb, 30_000, 30_000)
    for path in (just_over, bomb):
        with pytest.raises(ValueError, match=re.escape(str(path))):
            load_image(path)
    small = tmp_path / "small.png"
    Image.new("RGB", (20, 10)).save(small)
    with pytest.raises(ValueError, match="200 pixels, over the limit of 199"):
        load_image(small, max_pixels=199)
    assert load_image(small, max_pixels=200).size == (20, 10)


def test_exif_orientation_is_applied_only_on_request(tmp_path):
    path = tmp_path / "rotated.jpg"
    pixels = np.zeros((2, 4, 3), np.uint8)
    pixels[:, :2] = 255                                              # left half white
    exif = Image.Exif()
    exif[0x0112] = 6                                                 # orientation: rotate 90 degrees clockwise
    Image.fromarray(pixels).save(path, exif=exif, quality=100)
    assert load_image(path).size == (4, 2)                           # as LLaVA reads it
    upright = load_image(path, exif_transpose=True)
    assert upright.size == (2, 4)
    assert np.asarray(upright)[0].mean() > 200 > np.asarray(upright)[-1].mean()   # white half now on top


def broken_images(folder):
    """Unreadable files of every kind load_image refuses, by name."""
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    Image.new("RGB", (64, 64), (9, 99, 199)).save(folder / "full.png")
    (folder / "truncated.png").write_bytes((folder / "full.png").read_bytes()[:60])
    png_declaring(folder / "bomb.png", 30_000, 30_000)
    return ["empty.png", "text.png", "truncated.png", "bomb.png", "missing.png"]


def test_screen_skips_and_lists_every_kind_of_unreadable_image(tmp_path):
    bad = broken_images(tmp_path)
    items = [{"image": None}, {"image": "full.png"}] + [{"image": name} for name in bad] + [{"image": "full.png"}]
    path = lambda item: None if item["image"] is None else str(tmp_path / item["image"])
    # "error" opens nothing (the job fails lazily, naming the file); "skip" decodes each distinct image once.
    assert screen_images(items, path, "error").kept == items
    screened = screen_images(items, path, "skip")
    assert screened.kept == [items[0], items[1], items[-1]]
    assert [row["image"] for row in screened.skipped] == [str(tmp_path / name) for name in bad]
    assert all(row["image"] in row["error"] for row in screened.skipped)
    assert screened.summary() == {"kept": 3, "skipped_images": 5}
    with pytest.raises(ValueError, match="every one of the 2 images is unreadable"):
        screen_images(items[2:4], path, "skip")
    with pytest.raises(ValueError, match="on_bad_image='ignore'"):
        screen_images(items, path, "ignore")


@pytest.fixture(scope="module")
def clip_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip_world")
    clip = train_fixtures.tiny_clip_checkpoint(root / "clip")
    manifest = train_fixtures.shapes_dataset(root / "data", 4)
    (root / "classes.json").write_text(json.dumps(demo.class_names()))
    (root / "data" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")      # the second image is broken
    return root, clip, manifest


def clip_only_config(root, clip, manifest, on_bad_image):
    c = train_fixtures.tiny_eval_config(clip, clip, manifest, root / "classes.json", root / "data")
    c.experiments, c.label_set_sizes, c.data.on_bad_image = ("clip",), (), on_bad_image
    return c


def test_eval_job_stops_at_an_unreadable_image_naming_it(clip_world, tmp_path):
    root, clip, manifest = clip_world
    with pytest.raises(ValueError, match=re.escape(str(root / "data" / "1.png"))):
        job.run(clip_only_config(root, clip, manifest, "error"), str(tmp_path / "run"))


def test_eval_job_skips_counts_and_lists_unreadable_images(clip_world, tmp_path):
    root, clip, manifest = clip_world
    workdir = tmp_path / "run"
    results = job.run(clip_only_config(root, clip, manifest, "skip"), str(workdir))
    assert results["examples"] == 3 and results["skipped_images"] == 1
    assert all(row["examples"] == 3 for row in results["rows"].values())      # the denominator: kept images
    skipped = [json.loads(line) for line in (workdir / "skipped_images.jsonl").read_text().splitlines()]
    assert [row["image"] for row in skipped] == [str(root / "data" / "1.png")]
    assert "flowers 3 (1 unreadable skipped)" in (workdir / "table.md").read_text()
    # What was loaded is recorded: a local folder has no hub commit.
    assert results["checkpoints"]["clip"] == {"checkpoint": str(clip), "revision": None, "folder": str(clip),
                                              "commit": None, "dtype": "float32", "param_dtype": "float32"}


def test_provenance_reads_the_commit_from_a_hub_cache_snapshot(tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "models--llava-hf--llava-1.5-7b-hf" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    record = checkpoint_provenance("llava-hf/llava-1.5-7b-hf", "main", str(snapshot))
    assert record == {"checkpoint": "llava-hf/llava-1.5-7b-hf", "revision": "main", "folder": str(snapshot),
                      "commit": commit}
    assert checkpoint_provenance(str(tmp_path), None, str(tmp_path))["commit"] is None
