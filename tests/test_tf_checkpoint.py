"""The TF checkpoint reader: a round trip through a table the test writes,
the format's failure modes, and (when the musicnn wheel is installed) the
real MSD_vgg files."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ArtifactError
from core.models import tf_checkpoint as ck


def _tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    # Enough names (> 16) that the writer restarts prefix compression.
    t = {f"{i}CNN/kernel": rng.normal(size=(3, 3, 2, 4)).astype(np.float32) for i in range(1, 10)}
    t.update({f"{i}CNN/bias": rng.normal(size=(4,)).astype(np.float32) for i in range(1, 10)})
    t["dense/kernel/Adam"] = np.ones((2, 2), np.float32)
    t["global_step"] = np.array(7, np.int64)
    t["half"] = np.arange(5, dtype=np.float16)
    return t


def test_round_trip(tmp_path):
    src = _tensors(np.random.default_rng(0))
    ck.write_checkpoint(tmp_path / "model", src)
    got = ck.read_checkpoint(tmp_path / "model")
    assert "dense/kernel/Adam" not in got            # optimiser state skipped
    assert set(got) == set(src) - {"dense/kernel/Adam"}
    for k, v in got.items():
        assert v.dtype == src[k].dtype and v.shape == src[k].shape
        np.testing.assert_array_equal(v, src[k])
    index = ck.read_index(str(tmp_path / "model") + ".index")
    assert index["1CNN/kernel"].shape == (3, 3, 2, 4)
    assert index["global_step"].shape == ()


def test_prefix_compression_keys_are_rebuilt(tmp_path):
    names = {f"layer_{i:02d}/weights": np.full((1,), i, np.float32) for i in range(40)}
    ck.write_checkpoint(tmp_path / "c", names)
    got = ck.read_checkpoint(tmp_path / "c")
    assert sorted(got) == sorted(names)
    assert all(float(got[k][0]) == float(names[k][0]) for k in names)


def test_bad_magic_and_missing_files(tmp_path):
    ck.write_checkpoint(tmp_path / "m", {"a": np.zeros(2, np.float32)})
    idx = tmp_path / "m.index"
    data = bytearray(idx.read_bytes())
    data[-1] ^= 0xFF
    idx.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="bad magic"):
        ck.read_checkpoint(tmp_path / "m")
    with pytest.raises(ArtifactError, match="missing"):
        ck.read_checkpoint(tmp_path / "nothing")


def test_truncated_data_file(tmp_path):
    ck.write_checkpoint(tmp_path / "m", {"a": np.zeros(100, np.float32)})
    (tmp_path / ("m" + ck.DATA_SUFFIX)).write_bytes(b"\0" * 10)
    with pytest.raises(ArtifactError, match="does not fit"):
        ck.read_checkpoint(tmp_path / "m")


def test_real_msd_vgg_checkpoint():
    from core.models.msd import msd_checkpoint_prefix

    try:
        prefix = msd_checkpoint_prefix()
    except ArtifactError:
        pytest.skip("musicnn wheel not installed")
    t = ck.read_checkpoint(prefix)
    assert t["1CNN/kernel"].shape == (3, 3, 1, 128)
    assert all(t[f"{i}CNN/kernel"].shape == (3, 3, 128, 128) for i in range(2, 6))
    assert t["dense/kernel"].shape == (256, 50)
    assert t["batch_normalization/gamma"].shape == (1,)
    assert all(np.isfinite(v).all() for v in t.values())
    assert not any("Adam" in k for k in t)
