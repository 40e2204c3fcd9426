"""core.models.msd, the MSD-VGG port: weight layout against a direct
TF-convention computation, pooling arithmetic, and (with the musicnn wheel
and the shared data) tags that make sense on real music. (The genre models on
its trunk: tests/test_transfer.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REAL_DATA, real_data

from core.errors import ArtifactError
from core.models.msd import MSD_FEATURES, MSD_TAGS, MSDVGG, PATCH_FRAMES, load_msd_weights, patches, trunk_steps
from core.models.tf_checkpoint import read_checkpoint, write_checkpoint

LABELS = ["A", "B", "C"]


def _fake_msd(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random tensors named and shaped like the MSD_vgg checkpoint."""
    t: dict[str, np.ndarray] = {}
    for i in range(1, 6):
        t[f"{i}CNN/kernel"] = rng.normal(0, 0.1, (3, 3, 1 if i == 1 else 128, 128)).astype(np.float32)
        t[f"{i}CNN/bias"] = rng.normal(0, 0.1, 128).astype(np.float32)
    for j, c in enumerate([1] + [128] * 5):
        name = "batch_normalization" + (f"_{j}" if j else "")
        t[f"{name}/gamma"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        t[f"{name}/beta"] = rng.normal(0, 0.1, c).astype(np.float32)
        t[f"{name}/moving_mean"] = rng.normal(0, 0.1, c).astype(np.float32)
        t[f"{name}/moving_variance"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    t["dense/kernel"] = rng.normal(0, 0.1, (256, 50)).astype(np.float32)
    t["dense/bias"] = rng.normal(0, 0.1, 50).astype(np.float32)
    return t


@pytest.fixture(scope="module")
def fake_vgg(tmp_path_factory):
    t = _fake_msd(np.random.default_rng(0))
    prefix = tmp_path_factory.mktemp("ckpt") / "MSD_vgg"
    write_checkpoint(prefix, t)               # through the file format, as the wheel ships it
    return load_msd_weights(MSDVGG(), read_checkpoint(prefix)), t


def test_first_conv_matches_tf_convention(fake_vgg):
    """TF: x[time, mel], HWIO kernel with H = time; ours: (B, 1, mel, time)."""
    vgg, t = fake_vgg
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 96)).astype(np.float32)          # (time, mel)
    k, b = t["1CNN/kernel"], t["1CNN/bias"]
    pad = np.pad(x, 1)
    ref = np.zeros((20, 96, 128), np.float32)
    for dt in range(3):
        for dm in range(3):
            ref += pad[dt: dt + 20, dm: dm + 96, None] * k[dt, dm, 0][None, None]
    ref += b
    conv = vgg.trunk.blocks[0][0]
    with torch.no_grad():
        got = conv(torch.from_numpy(x.T.copy())[None, None])[0]   # (128, mel, time)
    np.testing.assert_allclose(got.permute(2, 1, 0).numpy(), ref, atol=1e-4)


def test_dense_reads_pool5_time_major(fake_vgg):
    vgg, t = fake_vgg
    x = torch.rand(2, 1, 96, PATCH_FRAMES)
    with torch.no_grad():
        p5 = vgg.pool5(vgg.block5(vgg.trunk(x)))                # (2, 128, 1, 2)
        assert p5.shape == (2, 128, 1, 2)
        flat = torch.cat([p5[:, :, 0, 0], p5[:, :, 0, 1]], 1)  # TF NHWC flatten: t·128 + c
        ref = flat.numpy() @ t["dense/kernel"] + t["dense/bias"]
        np.testing.assert_allclose(vgg(x).numpy(), ref, atol=1e-4)


@pytest.mark.parametrize("frames", [187, 640, 1872, 1000])
def test_trunk_steps_arithmetic(fake_vgg, frames):
    vgg, _ = fake_vgg
    with torch.no_grad():
        out = vgg.trunk(torch.rand(1, 1, 96, frames))
    assert out.shape == (1, 128, 6, trunk_steps(frames))
    assert trunk_steps(187) == 11 and trunk_steps(1872) == 117


def test_missing_tensor_is_an_artifact_error():
    t = _fake_msd(np.random.default_rng(2))
    del t["3CNN/kernel"]
    with pytest.raises(ArtifactError, match="3CNN/kernel"):
        load_msd_weights(MSDVGG(), t)


def test_patches_cut_like_musicnn():
    lm = torch.arange(96 * 400, dtype=torch.float32).reshape(1, 1, 96, 400)
    p = patches(lm)
    assert p.shape == (2, 1, 96, PATCH_FRAMES)                 # 400 // 187, tail dropped
    assert torch.equal(p[1], lm[0, :, :, 187:374])


@real_data
def test_real_msd_tags_on_shared_music():
    """The port hears genre: averaged over a few clips of a genre, the MSD
    tag of that genre is among the top three."""
    from core.audio.features import LogMelFrontEnd
    from core.audio.load import load
    from core.datasets import read_datasets
    from core.models.msd import pretrained_msd_vgg

    try:
        vgg = pretrained_msd_vgg()
    except ArtifactError:
        pytest.skip("musicnn wheel not installed")
    fe = LogMelFrontEnd(MSD_FEATURES)
    tracks = [t for t in read_datasets(REAL_DATA) if t.split == "val"]
    for genre, tag in (("Jazz", "jazz"), ("Rock", "rock"), ("Electronic", "electronic")):
        clips = [t for t in tracks if t.genre == genre][:4]
        with torch.no_grad():
            probs = torch.stack([torch.sigmoid(vgg(patches(fe(torch.from_numpy(load(t.path, MSD_FEATURES))))))
                                 .mean(0) for t in clips]).mean(0)
        top3 = [MSD_TAGS[i] for i in probs.argsort(descending=True)[:3]]
        assert tag in top3, (genre, top3)
