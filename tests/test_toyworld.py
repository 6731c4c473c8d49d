"""The toy world's data: enough classes, a real long tail, the project's own formats, deterministic for a
seed.  (The whole pipeline runs in tests/test_notebooks.py through colabs/quickstart.ipynb.)"""

import hashlib
import json

import numpy as np

from vlmcls_jax.analysis.frequency import FrequencyCounter
from vlmcls_jax.data.pipeline import read_records
from vlmcls_jax.data.sources import ClassList, read_manifest
from vlmcls_jax.toyworld import world

SMALL = world.WorldSizes(clip_pairs=60, captions=300, instructions=300, classification=55, test_per_class=1,
                         probe_train_per_class=1)


def digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_world_formats_tail_and_determinism(tmp_path):
    paths = world.build(str(tmp_path / "a"), 3, SMALL)
    names = json.load(open(paths["classes"]))
    assert len(names) == len(set(names)) >= 50
    classes = ClassList(tuple(names))
    test = read_manifest(paths["manifest"], paths["root"], classes, split="test")
    assert sorted(e.label_name for e in test) == sorted(names)                  # balanced test split
    for key in ("captions", "instructions", "classification"):
        assert read_records(paths[key])                                          # LLaVA conversation JSON
    weights = np.array(list(json.load(open(paths["class_weights"])).values()))
    assert weights.max() / weights.min() > 50                                    # a long tail
    counter = FrequencyCounter(names, count_edges=True)
    counter.add(paths["instructions"])
    counts = counter.result().counts
    head = np.argsort(-weights)[:5]
    tail = np.argsort(weights)[:20]
    assert counts[head].mean() > 5 * max(counts[tail].mean(), 0.5)              # the text follows the tail
    world.build(str(tmp_path / "b"), 3, SMALL)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")                      # same seed, same bytes
    world.build(str(tmp_path / "c"), 4, SMALL)
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_render_draws_each_shape_differently():
    images = {s: np.asarray(world.render(world.Sample(f"red {s}", "solid", "grey"), 32,
                                         np.random.default_rng(1))) for s in world.SHAPES}
    red = {s: (img[..., 0] > 180) & (img[..., 1] < 90) for s, img in images.items()}
    assert len({m.tobytes() for m in red.values()}) == len(world.SHAPES)
    assert all(m.sum() > 60 for m in red.values())
