"""io readers / writers: round trips with NumPy's own files, errors as OSError."""
import numpy as np
import pytest

import mmrag


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_npy_round_trip(rng, tmp_path, dtype):
    x = (rng.standard_normal((7, 3)) * 100).astype(dtype)
    path = tmp_path / "x.npy"
    mmrag.write_npy(path, x)
    np.testing.assert_array_equal(np.load(path), x)
    got = mmrag.read_npy(path, dtype=dtype)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, x)
    np.save(tmp_path / "y.npy", x)  # NumPy's writer, our reader
    np.testing.assert_array_equal(mmrag.read_npy(tmp_path / "y.npy", dtype=dtype), x)


def test_npy_dtype_mismatch_and_convert(rng, tmp_path):
    x = rng.standard_normal((4, 2))
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(OSError, match="x.npy"):
        mmrag.read_npy(tmp_path / "x.npy", dtype="float32")
    got = mmrag.read_npy(tmp_path / "x.npy", dtype="float32", convert=True)
    np.testing.assert_array_equal(got, x.astype(np.float32))
    with pytest.raises(OSError, match="nope.npy"):
        mmrag.read_npy(tmp_path / "nope.npy")


def test_vecs_round_trip(rng, tmp_path):
    x = rng.standard_normal((5, 8)).astype(np.float32)
    mmrag.write_fvecs(tmp_path / "x.fvecs", x)
    np.testing.assert_array_equal(mmrag.read_fvecs(tmp_path / "x.fvecs"), x)
    raw = np.fromfile(tmp_path / "x.fvecs", dtype=np.int32).reshape(5, 9)
    assert np.all(raw[:, 0] == 8)
    ids = rng.integers(0, 1000, (5, 3))
    mmrag.write_ivecs(tmp_path / "x.ivecs", ids)
    got = mmrag.read_ivecs(tmp_path / "x.ivecs")
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ids)
    (tmp_path / "bad.fvecs").write_bytes(b"\x08\x00\x00\x00\x01")
    with pytest.raises(OSError, match="bad.fvecs"):
        mmrag.read_fvecs(tmp_path / "bad.fvecs")
