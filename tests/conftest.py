"""Shared pytest fixtures (CPU-only, offline).

Real tokenizers come from tests/data/tokenizers/ (in the repository, with their licenses; see its README).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest
from absl import flags

# Eight fake CPU devices for the sharding tests; set before any test touches the backend.  Unsharded
# computations still run on device 0 only.
jax.config.update("jax_num_cpu_devices", 8)
# grain's worker processes read absl flags; pytest never parses them.
flags.FLAGS.mark_as_parsed()

# Many tests build the same tiny programs again (a trainer per run, one subprocess per host): JAX's persistent
# compilation cache lets them reuse the executable instead of compiling again.  Programs that compile in under
# half a second are not worth a file.  The environment variables carry it into subprocesses; a cache dir the
# caller already set (JAX_COMPILATION_CACHE_DIR) wins.
_CACHE = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                               str(Path(tempfile.gettempdir()) / f"vlmcls-jax-test-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))

TOKENIZERS = Path(__file__).resolve().parent / "data" / "tokenizers"


def tokenizer_file(name: str) -> Path:
    """Path of `tests/data/tokenizers/<name>` (llama2.model, mistral-v1.model); an error when it is absent."""
    path = TOKENIZERS / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the repository's test tokenizers are missing")
    return path


shared_tokenizer_file = tokenizer_file      # the name tests used while the files lived in ../shared


def build_sentencepiece_tokenizer(model_file: Path, folder: Path):
    """A transformers LlamaTokenizer (BOS on, EOS off) from a SentencePiece model, without the hub.

    Follows tests/data/tokenizers/README.md: `LlamaTokenizer(vocab_file=...)` builds a broken tokenizer in
    transformers 5, so go through a folder and `AutoTokenizer.from_pretrained`.
    """
    from transformers import AutoTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, folder / "tokenizer.model")
    config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return AutoTokenizer.from_pretrained(folder)


def add_llava_tokens(tokenizer):
    """Adds llava-hf's tokens to a Llama-2 tokenizer in place: `<image>` = 32000, `<pad>` = 32001 (pad)."""
    from transformers import AddedToken

    tokenizer.add_tokens([AddedToken("<image>", special=True, normalized=False)], special_tokens=True)
    tokenizer.add_special_tokens({"pad_token": AddedToken("<pad>", special=True, normalized=False)})
    assert tokenizer.convert_tokens_to_ids(["<image>", "<pad>"]) == [32000, 32001]
    return tokenizer


@pytest.fixture(scope="session")
def llama2_tokenizer(tmp_path_factory):
    """The plain Llama-2 tokenizer (32000 pieces, no pad token). Session-wide: do not mutate it."""
    model = tokenizer_file("llama2.model")
    return build_sentencepiece_tokenizer(model, tmp_path_factory.mktemp("llama2_tokenizer"))


@pytest.fixture(scope="session")
def llava_tokenizer(tmp_path_factory):
    """Llama-2 + llava-hf's `<image>` (32000) and `<pad>` (32001, the pad token), as in llava-1.5-*-hf.

    Session-wide: do not mutate it.
    """
    model = tokenizer_file("llama2.model")
    return add_llava_tokens(build_sentencepiece_tokenizer(model, tmp_path_factory.mktemp("llava_tokenizer")))


def _slow_tests() -> set[str]:
    """`file.py` and `file.py::test_function` entries of tests/slow_tests.txt (what they are and why: its header)."""
    lines = (Path(__file__).resolve().parent / "slow_tests.txt").read_text().splitlines()
    return {line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()}


def pytest_collection_modifyitems(config, items):
    """Marks the tests listed in tests/slow_tests.txt `slow` (`make test-fast` runs `-m "not slow"`)."""
    slow = _slow_tests()
    for item in items:
        file = item.path.name
        if file in slow or f"{file}::{getattr(item, 'originalname', item.name)}" in slow:
            item.add_marker(pytest.mark.slow)
