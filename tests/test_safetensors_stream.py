"""The streaming safetensors writer against safetensors' own reader."""

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file

from vlmcls_jax.convert import safetensors_stream as st


def test_written_files_read_back_with_safetensors(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"a.weight": rng.standard_normal((3, 5)).astype(np.float32),
              "b.bias": rng.standard_normal(7).astype(ml_dtypes.bfloat16),
              "c.scalar": np.array(2.5, np.float16), "d.ids": np.arange(6, dtype=np.int64).reshape(2, 3),
              "e.transposed": rng.standard_normal((4, 2)).astype(np.float32).T}    # not C-contiguous
    specs = [st.TensorSpec(k, v.shape, v.dtype) for k, v in arrays.items()]
    st.write(str(tmp_path / "x.safetensors"), specs, iter(arrays.values()), metadata={"format": "pt"})
    back = load_file(str(tmp_path / "x.safetensors"))
    assert set(back) == set(arrays)
    for key, value in arrays.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape
        np.testing.assert_array_equal(back[key], value)


def test_mismatches_name_the_tensor(tmp_path):
    specs = [st.TensorSpec("w", (2, 2), np.float32)]
    with pytest.raises(ValueError, match=r"w: got float32\[2, 3\], the header says float32\[2, 2\]"):
        st.write(str(tmp_path / "x.safetensors"), specs, [np.zeros((2, 3), np.float32)])
    with pytest.raises(ValueError, match="complex64 has no safetensors name"):
        st.TensorSpec("z", (1,), np.complex64)


def test_shards_split_at_the_limit_and_a_large_tensor_stands_alone():
    specs = [st.TensorSpec(str(i), (n,), np.uint8) for i, n in enumerate([4, 4, 10, 1, 3])]
    assert [[s.key for s in shard] for shard in st.plan_shards(specs, 8)] == [["0", "1"], ["2"], ["3", "4"]]
    assert st.plan_shards([], 8) == [[]]
