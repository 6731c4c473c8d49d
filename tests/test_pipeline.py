"""The grain training pipeline: deterministic for a seed, the same with worker processes, resumable from
its saved state, split across processes."""

import pytest
from transformers import AutoTokenizer

import train_fixtures
from configs import train_tiny
from vlmcls_jax.data.pipeline import EncodeRecord, make_train_iterator
from vlmcls_jax.data.preprocess import ClipPreprocessConfig
from vlmcls_jax.train.trainer import training_records


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    ckpt = train_fixtures.tiny_checkpoint(root / "ckpt")
    config = train_tiny.get_config()
    config.data.classification_manifest = str(train_fixtures.shapes_dataset(root / "data", 24))
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    encode = EncodeRecord(tokenizer, 4, ClipPreprocessConfig(size=28, crop_size=(28, 28)), str(root / "data"),
                          "llava_hf", 128)
    return training_records(config), encode, tokenizer.pad_token_id


def make(setup, **kw):
    records, encode, pad = setup
    return make_train_iterator(records, encode, batch_size=4, seed=kw.pop("seed", 0), buckets=(64, 128), pad_id=pad,
                               **kw)


def take(it, n):
    return [next(it) for _ in range(n)]


def same(a, b):
    return all((x[k] == y[k]).all() for x, y in zip(a, b) for k in x)


def test_deterministic_and_seed_dependent(setup):
    assert same(take(make(setup), 3), take(make(setup), 3))
    assert not same(take(make(setup), 3), take(make(setup, seed=1), 3))


def test_worker_processes_give_the_same_batches(setup):
    it = make(setup, worker_count=2)
    try:
        assert same(take(make(setup), 3), take(it, 3))
    finally:
        it.close()


def test_saved_state_resumes_the_sequence(setup):
    it = make(setup)
    take(it, 2)
    state = it.get_state()
    expected = take(it, 3)                                  # crosses the 24 / 4 = 6-batch epoch boundary later
    fresh = make(setup)
    fresh.set_state(state)
    assert same(take(fresh, 3), expected)


def test_batches_are_padded_to_a_bucket(setup):
    batch = next(make(setup))
    assert batch["input_ids"].shape[1] in (64, 128)
    assert batch["pixel_values"].shape == (4, 28, 28, 3)
    assert (batch["loss_mask"] <= batch["attention_mask"]).all() and batch["loss_mask"].any(axis=1).all()
