"""The pretrained trunk family: the musicnn / MTT_vgg ports (shapes, pooling
arithmetic, weight layout, the layout read from each checkpoint's own graph),
their fast copies, the bank's pooling over patches, one decode per clip for
every trunk, the feature cache CLI, and tags on real music."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import REAL_DATA, real_data, synth, write_audio
from torch import nn

from core.audio.features import logmels
from core.errors import ArtifactError
from core.models.msd import MSD_FEATURES, PATCH_FRAMES
from core.models.musicnn import (
    BACK_CHANNELS,
    FRONT_CHANNELS,
    MTT_VGG_POOLS,
    MTTVGG,
    TIMBRAL_MEL,
    Musicnn,
    load_musicnn_weights,
)
from core.models.tf_checkpoint import read_checkpoint, write_checkpoint
from core.models.trunk_model import TrunkGenreModel
from core.models.trunks import TRUNKS, TrunkBank, trunk_outputs
from core.models.trunks_fast import FastMusicnn, quantise_patches


def _wheel():
    from core.models.msd import msd_checkpoint_prefix
    try:
        return msd_checkpoint_prefix()
    except ArtifactError:
        pytest.skip("musicnn wheel not installed")


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial batch norms, some with negative scale (the fast copy's
    sign trick must hold for both signs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 2 - 0.6)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def musicnn():
    torch.manual_seed(0)
    return _randomise_bn(Musicnn())


@pytest.mark.parametrize("frames", [PATCH_FRAMES, 200])
def test_musicnn_shapes(musicnn, frames):
    x = torch.randn(2, 1, 96, frames)
    with torch.no_grad():
        front = musicnn.front(x)
        pen, logits = musicnn.embed(x)
    assert front.shape == (2, FRONT_CHANNELS, frames)       # 'same' in time on every branch
    assert FRONT_CHANNELS == 2 * 204 + 3 * 51 == 561
    assert pen.shape == (2, 200) and logits.shape == (2, 50)


def test_musicnn_pooling_interleaves_max_and_mean(musicnn):
    """TF concatenates max and mean on a last axis of 2 and flattens: the
    pooled vector is [max₀, mean₀, max₁, mean₁, …] over 753 channels."""
    front = torch.randn(2, FRONT_CHANNELS, 50)
    with torch.no_grad():
        pooled = musicnn.pooled(front)
        m1 = musicnn.mid[0](front)
        m2 = musicnn.mid[1](m1) + m1
        m3 = musicnn.mid[2](m2) + m2
    h = torch.cat([front, m1, m2, m3], 1)
    assert h.shape[1] == BACK_CHANNELS == 753 and pooled.shape == (2, 1506)
    assert torch.equal(pooled[:, 0::2], h.amax(2))
    assert torch.allclose(pooled[:, 1::2], h.mean(2))
    # The residual stream: changing the last time step moves the max only where it was the max.
    assert torch.equal(pooled[:, 0:2 * FRONT_CHANNELS:2], front.amax(2))


def _fake_musicnn(rng) -> dict[str, np.ndarray]:
    """Random tensors named and shaped like the MSD_musicnn checkpoint."""
    shapes = {"conv2d": (7, 38, 1, 204), "conv2d_1": (7, 67, 1, 204), "conv2d_2": (128, 1, 1, 51),
              "conv2d_3": (64, 1, 1, 51), "conv2d_4": (32, 1, 1, 51), "conv2d_5": (7, 561, 1, 64),
              "conv2d_6": (7, 64, 1, 64), "conv2d_7": (7, 64, 1, 64), "dense": (1506, 200), "dense_1": (200, 50)}
    t = {}
    for name, shape in shapes.items():
        t[f"{name}/kernel"] = rng.normal(0, 0.1, shape).astype(np.float32)
        t[f"{name}/bias"] = rng.normal(0, 0.1, shape[-1]).astype(np.float32)
    for j, c in enumerate([1, 204, 204, 51, 51, 51, 64, 64, 64, 1506, 200]):
        name = "batch_normalization" + (f"_{j}" if j else "")
        for key, lo in (("gamma", 0.5), ("beta", -0.1), ("moving_mean", -0.1), ("moving_variance", 0.5)):
            t[f"{name}/{key}"] = rng.uniform(lo, lo + 1.0, c).astype(np.float32)
    return t


def test_musicnn_weight_layout(tmp_path):
    """TF HWIO with H = time, W = mel → torch (C, 1, mel, time); the mid end's
    (time, C_in, 1, C_out) → Conv1d (C_out, C_in, time); dense kernels transposed."""
    t = _fake_musicnn(np.random.default_rng(0))
    write_checkpoint(tmp_path / "MSD_musicnn", t)
    m = load_musicnn_weights(Musicnn(), tensors=read_checkpoint(tmp_path / "MSD_musicnn"))
    k = t["conv2d_1/kernel"]
    assert m.timbral[1].conv.weight.shape == (204, 1, TIMBRAL_MEL[1], 7)
    assert m.timbral[1].conv.weight[5, 0, 10, 2].item() == pytest.approx(k[2, 10, 0, 5])
    assert m.temporal[0].conv.weight[3, 0, 0, 100].item() == pytest.approx(t["conv2d_2/kernel"][100, 0, 0, 3])
    assert m.mid[0].conv.weight[7, 300, 4].item() == pytest.approx(t["conv2d_5/kernel"][4, 300, 0, 7])
    assert m.out.weight[9, 17].item() == pytest.approx(t["dense_1/kernel"][17, 9])
    assert m.pool_bn.running_var[1000].item() == pytest.approx(t["batch_normalization_9/moving_variance"][1000])
    del t["conv2d_6/bias"]
    with pytest.raises(ArtifactError, match="conv2d_6/bias"):
        load_musicnn_weights(Musicnn(), tensors=t)


def test_mtt_vgg_pools_and_shapes():
    """MTT_vgg's first pool overlaps in time (4 wide, stride 2) and skips mel
    rows: a 187-frame patch leaves 1 × 2 after pool 5, 256 dense inputs."""
    m = _randomise_bn(MTTVGG())
    x = torch.randn(2, 1, 96, PATCH_FRAMES)
    with torch.no_grad():
        y = m.trunk(x)
        pen, logits = m.embed(x)
    assert y.shape == (2, 128, 6, 11)
    assert pen.shape == (2, 256) and logits.shape == (2, 50)


def test_mtt_vgg_inference_copy_runs_the_fast_trunk_with_its_overlapping_pool():
    """MTT_vgg's inference copy takes FastMSDTrunk (pool 1: kernel 1 × 4, stride
    2 × 2, so conv 1 runs on the kept mel rows only, and the max covers
    overlapping phases): float32 equals the port, and an odd patch length
    (the pool's remainder) too; bfloat16 stays close."""
    from core.models.msd_fast import FastMSDTrunk, max_pool
    from core.models.trunks_fast import fast_tagger
    m = _randomise_bn(MTTVGG())
    x = torch.randn(3, 1, 96, PATCH_FRAMES) * 2
    with torch.no_grad():
        ref = m.embed(x)
        f32 = fast_tagger(m, bfloat16=False, int8=False)
        assert isinstance(f32.trunk, FastMSDTrunk) and f32.trunk.fuse_first
        assert f32.trunk.strides[0] == (2, 2) and f32.trunk.kernels[0] == (1, 4)
        out = f32.embed(x)
        assert torch.allclose(out[0], ref[0], rtol=1e-4, atol=1e-4)
        assert torch.allclose(out[1], ref[1], rtol=1e-4, atol=1e-4)
        y = torch.randn(2, 1, 96, 190)
        assert torch.allclose(f32.trunk(y), m.trunk(y), rtol=1e-4, atol=1e-4)
        z = torch.randn(2, 3, 9, 13)
        assert torch.equal(max_pool(z, (3, 4), (2, 3)), torch.nn.functional.max_pool2d(z, (3, 4), (2, 3)))
        bf = fast_tagger(m, bfloat16=True, int8=False).embed(x)[0]
    assert (bf - ref[0]).norm() / ref[0].norm() < 0.02


def test_ports_follow_each_checkpoints_graph():
    """The constants of the ports equal what each .meta graph says."""
    import core.models.msd as msd
    from core.models.tf_graph import read_graph
    prefix = _wheel()
    wheel = prefix.rstrip("/").rsplit("/", 1)[0]

    def pools(name):
        nodes = read_graph(f"{wheel}/{name}/.meta")
        # NHWC, H = time, W = mel → (mel, time)
        return [((n.attrs["ksize"][2], n.attrs["ksize"][1]), (n.attrs["strides"][2], n.attrs["strides"][1]))
                for n in nodes if n.op == "MaxPool" and n.name.startswith("model/")], nodes

    mtt, _ = pools("MTT_vgg")
    assert mtt == [tuple(p) for p in MTT_VGG_POOLS]
    msd_pools, _ = pools("MSD_vgg")
    assert msd_pools == [(k, k) for k in msd.POOLS]
    for name in ("MSD_musicnn", "MTT_musicnn"):
        p, nodes = pools(name)
        assert [k for k, _ in p] == [(96 - TIMBRAL_MEL[0] + 1, 1), (96 - TIMBRAL_MEL[1] + 1, 1)] + [(96, 1)] * 3
        eps = {round(n.attrs["epsilon"], 6) for n in nodes if n.op.startswith("FusedBatchNorm")}
        assert eps == {0.001}
        pads = [n.attrs["value"] for n in nodes if n.name.startswith("model/Pad") and n.name.endswith("paddings")]
        assert pads and all(p == [[0, 0], [3, 3], [0, 0], [0, 0]] for p in pads)


def test_fast_musicnn_equals_plain(musicnn):
    x = torch.randn(3, 1, 96, PATCH_FRAMES) + 1.0
    fast = FastMusicnn(musicnn, bfloat16=False)
    with torch.no_grad():
        p0, l0 = musicnn.embed(x)
        p1, l1 = fast.embed(x)
    assert torch.allclose(p0, p1, atol=1e-4, rtol=1e-4)
    assert torch.allclose(l0, l1, atol=1e-4, rtol=1e-4)


def _branches_close(musicnn, fast: FastMusicnn, x: torch.Tensor, rel: float) -> None:
    """Each front-end branch of ``fast`` (in its mode) within ``rel`` of the
    float32 copy's largest value, same shapes, float32 out."""
    f32 = FastMusicnn(musicnn)
    assert f32.mode == "float32"
    with torch.no_grad():
        xx = x[:, 0] * f32.in_s + f32.in_t
        for a, b in zip((*f32.timbral, *f32.temporal), (*fast.timbral, *fast.temporal)):
            ya, yb = a(xx, "float32"), b(xx, fast.mode)
            assert ya.shape == yb.shape == (len(x), a.w.shape[0], PATCH_FRAMES) and yb.dtype == torch.float32
            assert (ya - yb).abs().max() <= rel * ya.abs().max()


def test_fast_musicnn_bfloat16_branches_close_to_float32(musicnn):
    """The bfloat16 products (banded timbral, Toeplitz temporal) compute each
    front-end branch within bfloat16 rounding of float32 (same shapes), and
    the whole tagger's tag probabilities stay within 0.03 of the plain port
    (real weights on real clips: ≤ 0.0033, benchmarks.trunks)."""
    torch.manual_seed(1)
    x = torch.randn(2, 1, 96, PATCH_FRAMES) + 1.0
    bf = FastMusicnn(musicnn, bfloat16=True)
    _branches_close(musicnn, bf, x, 0.02)
    with torch.no_grad():
        _, l0 = musicnn.embed(x)
        _, l1 = bf.embed(x)
    assert l1.shape == (2, 50)
    assert (torch.sigmoid(l0) - torch.sigmoid(l1)).abs().max() < 0.03


def test_quantise_patches_round_trips_within_half_a_step():
    """Each patch gets its own affine int8 grid: every value comes back within
    half a step, 0 (the products' zero padding) too, and a silent patch is 0."""
    v = torch.randn(4, 7, 9) * torch.tensor([0.1, 1.0, 10.0, 0.0])[:, None, None] + 3.0
    q, scale, zero = quantise_patches(v)
    assert q.dtype == torch.int8 and q.shape == v.shape and int(q.abs().max()) <= 127
    assert scale.shape == zero.shape == (4,) and len(set(scale.tolist())) == 4
    step = scale[:, None, None]
    assert ((q.float() * step + zero[:, None, None] - v).abs() <= step / 2 + 1e-6).all()
    assert ((torch.round(-zero / scale) * scale + zero).abs() <= scale / 2 + 1e-6).all()
    assert (quantise_patches(torch.zeros(2, 5))[0] == 0).all()


def test_fast_musicnn_int8_close_to_float32_and_each_patch_on_its_own(musicnn):
    """The int8 products compute each front-end branch within int8 rounding of
    float32 and the tags within 0.05 of the plain port (real weights on real
    clips: ≤ 0.030 against bfloat16, core.models.optimise.use_int8); a patch's
    outputs do not depend on the patches batched with it."""
    torch.manual_seed(2)
    x = torch.randn(3, 1, 96, PATCH_FRAMES) + 1.0
    x[2] *= 4.0                                  # a louder batch mate
    q8 = FastMusicnn(musicnn, bfloat16=True, int8=True)
    assert q8.mode == "int8"
    _branches_close(musicnn, q8, x, 0.03)
    with torch.no_grad():
        _, l0 = musicnn.embed(x)
        p1, l1 = q8.embed(x)
        p2, l2 = q8.embed(x[:1])
    assert (torch.sigmoid(l0) - torch.sigmoid(l1)).abs().max() < 0.05
    assert torch.allclose(p1[:1], p2, atol=1e-5) and torch.allclose(l1[:1], l2, atol=1e-5)


def test_the_bank_key_names_the_int8_front_end(musicnn):
    """Caches key on the precision: an int8 musicnn bank and a bfloat16 one
    never share features."""
    banks = [TrunkBank(models={"msd_musicnn": FastMusicnn(musicnn, bfloat16=True, int8=i8)}) for i8 in (False, True)]
    assert [b.int8 for b in banks] == [False, True]
    assert ":bf16:" in banks[0].key() and ":bf16+int8:" in banks[1].key()


class _Stub(nn.Module):
    """A tagger whose outputs are plain functions of the patch: penultimate =
    (m, −m, 0, …) of the trunk's width, m the patch's mean value; logit 0 = m."""

    def __init__(self, name: str):
        super().__init__()
        self.d = TRUNKS[name].embed_dim

    def embed(self, patch):
        v = patch.mean((1, 2, 3))
        zeros = [torch.zeros_like(v)]
        return torch.stack([v, -v] + zeros * (self.d - 2), 1), torch.stack([v] + zeros * 49, 1)


def _stub_bank(names=("msd_vgg", "mtt_musicnn"), patches=None, level_db=None) -> TrunkBank:
    """The stubs' arithmetic reads the log-mel as given: no level normalisation unless asked."""
    return TrunkBank(models={n: _Stub(n) for n in names}, patches=patches,
                     cfg=replace(MSD_FEATURES, level_db=level_db))


def test_bank_normalises_each_clips_level_before_its_patches():
    """A clip and the same clip 20 dB quieter give the same outputs; the
    level is part of the key; a bank refuses another front-end's log-mels."""
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(MSD_FEATURES.window_samples)).astype(np.float32)
    mel = logmels(np.stack([wave, 0.1 * wave]), MSD_FEATURES)            # (2, 1, 96, 1872)
    bank = _stub_bank(level_db=-3.0)
    loud, quiet = bank.run(mel)["msd_vgg"][0]                        # features (2, 512): one row per clip
    assert torch.allclose(loud, quiet, atol=2e-3)
    assert not torch.allclose(*_stub_bank().run(mel)["msd_vgg"][0], atol=2e-3)
    assert bank.key() != _stub_bank().key() and ":L-3" in bank.key()
    with pytest.raises(ArtifactError, match="MSD_FEATURES"):
        TrunkBank(models={"msd_vgg": _Stub("msd_vgg")}, cfg=replace(MSD_FEATURES, n_mels=64))


def test_bank_pools_over_each_clips_patches():
    """Clip c, patch p has the constant value 10·c + p: features are the
    mean then the max over that clip's 3 patches, tags the mean probability."""
    n_patches = 3
    mel = torch.zeros(2, 1, 96, n_patches * PATCH_FRAMES + 2)     # the 2-frame tail is dropped
    for c in range(2):
        for p in range(n_patches):
            mel[c, ..., p * PATCH_FRAMES:(p + 1) * PATCH_FRAMES] = 10 * c + p
    mel[..., -2:] = 1000.0
    out = _stub_bank().run(mel)
    feats, tags = out["msd_vgg"]                      # D = 256: mean at 0, 1; max at 256, 257
    assert feats.shape == (2, 512)
    assert feats[:, [0, 1, 256, 257]].tolist() == [[1.0, -1.0, 2.0, 0.0], [11.0, -11.0, 12.0, -10.0]]
    expect = [np.mean([1 / (1 + np.exp(-(10 * c + p))) for p in range(3)]) for c in range(2)]
    assert tags[:, 0].numpy() == pytest.approx(expect, rel=1e-5)
    assert tags[:, 1].numpy() == pytest.approx([0.5, 0.5])


def test_patch_choice_spreads_patches_and_a_bank_on_fewer_patches_pools_only_those():
    from core.models.trunks import patch_choice, pool_patches
    assert patch_choice(10, None) == patch_choice(10, 12) == list(range(10))
    assert patch_choice(10, 5) == [1, 3, 5, 7, 9]
    assert patch_choice(10, 3) == [1, 5, 8]
    assert patch_choice(10, 1) == [5]
    with pytest.raises(ArtifactError, match="at least one patch"):
        patch_choice(10, 0)
    mel = torch.zeros(2, 1, 96, 10 * PATCH_FRAMES)
    for p in range(10):
        mel[..., p * PATCH_FRAMES:(p + 1) * PATCH_FRAMES] = p + torch.arange(2.0)[:, None, None, None]
    full = _stub_bank().patch_outputs(mel)
    pen, tags = full["msd_vgg"]
    assert pen.shape == (10, 2, 256) and tags.shape == (10, 2, 50)
    three = _stub_bank(patches=3)
    feats, _ = three.run(mel)["msd_vgg"]
    # Patches 1, 5, 8 of clip c hold 1 + c, 5 + c, 8 + c: mean 14/3 + c, max 8 + c.
    assert feats[:, 0].numpy() == pytest.approx([14 / 3, 17 / 3]) and feats[:, 256].tolist() == [8.0, 9.0]
    again = pool_patches(pen[[1, 5, 8]].numpy(), tags[[1, 5, 8]].numpy())
    assert np.allclose(again[0], feats.numpy()) and np.allclose(again[1], three.run(mel)["msd_vgg"][1].numpy())
    assert three.key() != _stub_bank().key() and three.key().endswith(":p3")


def test_bank_vector_and_split_round_trip():
    bank = _stub_bank()
    mel = torch.rand(3, 1, 96, 2 * PATCH_FRAMES)
    vec = bank.vector(mel)
    assert vec.shape == (3, bank.dim) == (3, (512 + 50) + (400 + 50))
    split = bank.split(vec)
    run = bank.run(mel)
    for name in bank.names:
        assert np.array_equal(split[name].features, run[name][0].numpy())
        assert np.array_equal(split[name].tags, run[name][1].numpy())
    with pytest.raises(ArtifactError, match="trunks need log-mels"):
        bank.run(torch.rand(1, 1, 64, 400))
    with pytest.raises(ArtifactError, match="unknown trunk"):
        TrunkBank(["msd_vgg", "nope"])


def test_one_decode_and_one_logmel_feed_every_trunk(tmp_path, monkeypatch):
    import core.audio.features as features
    import core.audio.load as load
    paths = [write_audio(tmp_path / f"{i}.wav", synth("tone", seconds=4.0, seed=i)) for i in range(2)]
    opened, mels = [], []
    real_open, real_logmels = load._open, features.logmels
    monkeypatch.setattr(load, "_open", lambda src: (opened.append(src), real_open(src))[1])
    monkeypatch.setattr(features, "logmels", lambda w, c: (mels.append(c.key()), real_logmels(w, c))[1])
    out = trunk_outputs(paths, bank=_stub_bank(tuple(TRUNKS)))
    assert len(opened) == 2 and len(mels) == 2          # one per clip, for four trunks
    assert set(out) == set(TRUNKS)
    assert all(o.features.shape == (2, TRUNKS[n].feature_dim) for n, o in out.items())


@pytest.fixture(scope="module")
def real_bank():
    _wheel()
    return TrunkBank(bfloat16=False, int8=False)


@pytest.fixture(scope="module")
def served_bank():
    """The bank as served (the project's precision switch; bfloat16 where native)."""
    _wheel()
    return TrunkBank()


def test_bfloat16_bank_close_to_float32(real_bank, served_bank):
    """The served copies in bfloat16 (and int8 musicnn front ends where the
    CPU prefers them) stay within 0.03 of float32 in every tag probability
    (measured on real music: ≤ 0.0033, see README; on these inputs int8
    ≤ 0.005)."""
    bf = served_bank
    if not bf.bfloat16:
        pytest.skip("bfloat16 off here (no native bfloat16, or GENRE_BFLOAT16=off)")
    assert bf.key() != real_bank.key() and ":bf16" in bf.key() and not real_bank.int8
    rng = np.random.default_rng(0)
    mel = torch.from_numpy(rng.uniform(0, 2.5, (2, 1, 96, 2 * PATCH_FRAMES)).astype(np.float32))
    a, b = real_bank.run(mel), bf.run(mel)
    for name in real_bank.names:
        assert (a[name][1] - b[name][1]).abs().max() < 0.03, name
        cos = torch.nn.functional.cosine_similarity(a[name][0], b[name][0])
        assert cos.min() > 0.99, name


@real_data
def test_real_tags_name_the_genre(served_bank):
    """Averaged over three val clips of a genre, the trunks' own tag for it is
    among their top five (measured: first in each of these cases)."""
    from core.datasets import read_datasets
    tracks = [t for t in read_datasets(REAL_DATA) if t.split == "val"]
    cases = {"Classical": {"mtt_musicnn": "classical", "mtt_vgg": "classical"},
             "Hip-Hop": {"msd_musicnn": "Hip-Hop", "msd_vgg": "Hip-Hop"},
             "Rock": {"msd_musicnn": "rock", "msd_vgg": "rock"}}
    for genre, want in cases.items():
        clips = [t.path for t in tracks if t.genre == genre][:3]
        out = trunk_outputs(clips, bank=TrunkBank(models={n: served_bank.models[n] for n in want}))
        for name, tag in want.items():
            probs = out[name].tags.mean(0)
            top5 = [TRUNKS[name].tags[i] for i in np.argsort(-probs)[:5]]
            assert tag in top5, (genre, name, top5)


def test_trunk_features_cli(tiny_dataset, tmp_path):
    _wheel()
    from core.cli.main import main
    assert main(["trunk-features", "--data", str(tiny_dataset), "--out", str(tmp_path), "--trunks",
                 "msd_musicnn"]) == 0
    z = np.load(tmp_path / "msd_musicnn.npz")
    n = len(z["track_id"])
    assert n > 0 and z["features"].shape == (n, 400) and z["tags"].shape == (n, 50)
    assert set(z["split"]) <= {"train", "val", "test"} and len(z["genre"]) == n
    assert ((z["tags"] > 0) & (z["tags"] < 1)).all()


class _LinearOnTrunks(TrunkGenreModel):
    name = "linear_on_trunks"

    def __init__(self, labels, trunks):
        super().__init__(labels, trunks=trunks)
        self.head = nn.Linear(self.input_dim, len(labels))

    def head_outputs(self, vectors):
        return vectors, self.head(vectors)


def test_trunk_model_runs_once_per_clip_on_the_inference_path(monkeypatch):
    """Two heads on the same bank share one trunk pass per batch through
    predict_all, and match their own predict_logmel."""
    import core.models.trunk_model as tm
    from core.models.inference import predict_all
    bank = _stub_bank(("msd_musicnn",))
    runs = []
    real_run = bank.run
    monkeypatch.setattr(bank, "run", lambda x, *a: (runs.append(x.shape[0]), real_run(x, *a))[1])
    monkeypatch.setattr(tm, "shared_bank", lambda trunks, patches=None, cfg=None: bank)
    torch.manual_seed(0)
    models = {n: _LinearOnTrunks(["A", "B", "C"], ["msd_musicnn"]).eval() for n in ("h1", "h2")}
    mel = torch.rand(3, 1, 96, 2 * PATCH_FRAMES)
    preds = predict_all({models["h1"].cfg.key(): mel}, models)
    assert sum(runs) == 3                       # each clip through the bank once, for both heads
    for n, m in models.items():
        assert preds[n].probs.shape == (3, 3) and preds[n].embedding.shape == (3, m.input_dim)
        assert np.allclose(preds[n].probs, m.predict_logmel(mel).probs, atol=1e-6)
    fp = models["h1"].fingerprint()
    other = _LinearOnTrunks(["A", "B", "C"], ["msd_musicnn"])
    other.load_state_dict(models["h1"].state_dict())
    assert other.fingerprint() == fp
    bank.digests = {"msd_musicnn": "another checkpoint"}
    assert other.fingerprint() != fp                # the trunks' weights are part of the identity
    with pytest.raises(ValueError, match="MSD_FEATURES"):
        from core.config import FeatureConfig
        TrunkGenreModel(["A"], FeatureConfig())


def test_trunk_features_cli_refuses_a_missing_folder(tmp_path):
    from core.cli.main import main
    with pytest.raises(SystemExit, match="is not a folder"):
        main(["trunk-features", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def _noise_tracks(tmp_path, seed: int, n: int = 3) -> list:
    """``n`` 8 s noise WAVs at 16 kHz, louder each, as training tracks of one source."""
    import soundfile as sf

    from core.datasets.track import Track
    rng, tracks = np.random.default_rng(seed), []
    for i in range(n):
        path = tmp_path / f"t{i}.wav"
        sf.write(path, rng.normal(size=16_000 * 8).astype(np.float32) * (0.1 + 0.2 * i), 16_000)
        tracks.append(Track(track_id=f"t{i}", path=str(path), genre="A", split="train", source="s"))
    return tracks


def test_feature_files_keep_every_patch_and_repool_as_a_bank_on_fewer_patches(tmp_path, monkeypatch):
    """trunk-features writes pooled and per-patch outputs, caches each clip once, and
    SourceData.with_patches(k) gives what a bank with patches=k computes; a file
    written without the served level step is refused."""
    import core.models.trunk_cache as tc
    from core.models.trunk_cache import write_trunk_features
    from core.training.loso_data import FeatureSetError, SourceData, read_feature_file, read_patch_file
    tracks = _noise_tracks(tmp_path, seed=0)
    level = MSD_FEATURES.level_db
    bank = _stub_bank(level_db=level)
    paths = write_trunk_features(tracks, tmp_path / "out", bank)
    unlevelled = write_trunk_features(tracks, tmp_path / "as_recorded", _stub_bank())
    with pytest.raises(FeatureSetError, match="another level step"):
        read_feature_file(unlevelled["msd_vgg"], [t.track_id for t in tracks])
    ids = [t.track_id for t in tracks]
    pen, tags = read_patch_file(paths["msd_vgg"], ids)
    assert pen.shape == (3, 10, 256) and tags.shape == (3, 10, 50)
    pooled = read_feature_file(paths["msd_vgg"], ids)
    assert np.allclose(pooled, bank.vector(torch.cat([_mel(t.path) for t in tracks]))[:, :562])
    # A second run reads every clip from the cache: no trunk runs.
    monkeypatch.setattr(tc, "clip_logmel", lambda p: (_ for _ in ()).throw(AssertionError("recomputed")))
    write_trunk_features(tracks, tmp_path / "out", bank)
    data = SourceData(tracks=tracks, labels=["A"], y=np.zeros(3, np.int64),
                      features={"msd_vgg": pooled}, patches={"msd_vgg": (pen, tags)})
    three = _stub_bank(patches=3, level_db=level).vector(torch.cat([_mel(t.path) for t in tracks]))
    assert np.allclose(data.with_patches(3).features["msd_vgg"], three[:, :562].numpy(), atol=1e-6)
    assert np.allclose(data.with_patches(None).features["msd_vgg"], pooled, atol=1e-6)
    assert data.subset(np.array([2])).patches["msd_vgg"][0].shape == (1, 10, 256)


def test_augmented_copies_are_seeded_cached_and_pool_like_the_clean_features(tmp_path, monkeypatch):
    """write_augmented_features: per-patch outputs of K copies, each the bank on
    augmented_copy of the track (seeded by copy_rng), kept per clip so a rerun
    decodes nothing; SourceData reads them as NaN for tracks without copies and
    pools its rows over the same patches as its features."""
    import core.models.trunk_cache as tc
    from core.audio.augment import AUGMENT_RATE, AugmentConfig, augmented_copy, copy_rng
    from core.audio.cache import content_hash
    from core.audio.load import load_full
    from core.models.trunks import patch_choice, pool_patches
    from core.training.loso_data import SourceData, read_augmented_file
    tracks = _noise_tracks(tmp_path, seed=1)
    bank = _stub_bank(level_db=MSD_FEATURES.level_db)
    paths = tc.write_augmented_features(tracks[:2], tmp_path / "out", bank, copies=2, seed=3)
    assert paths["msd_vgg"] == tmp_path / "out" / "augmented" / "msd_vgg.npz"
    pen, tags = read_augmented_file(paths["msd_vgg"], [t.track_id for t in tracks])
    assert pen.shape == (3, 2, 10, 256) and tags.shape == (3, 2, 10, 50)
    assert np.isnan(pen[2]).all() and not np.isnan(pen[:2]).any()
    # Copy 1 of track 0 is the bank on that track's seeded augmented log-mel, and differs from copy 0.
    mel = augmented_copy(load_full(tracks[0].path, AUGMENT_RATE), bank.cfg, AugmentConfig(),
                         copy_rng(3, 1, content_hash(tracks[0].path)))
    want = bank.patch_outputs(torch.from_numpy(mel)[None, None])["msd_vgg"][0][:, 0].numpy()
    assert np.allclose(pen[0, 1], want, atol=1e-6) and not np.allclose(pen[0, 0], pen[0, 1])
    # A rerun reads every copy from its cache: nothing is decoded.
    import core.audio.load as audio_load
    monkeypatch.setattr(audio_load, "load_full", lambda *a: (_ for _ in ()).throw(AssertionError("decoded")))
    tc.write_augmented_features(tracks[:2], tmp_path / "out", bank, copies=2, seed=3)
    feats = np.zeros((3, 562), np.float32)
    data = SourceData(tracks=tracks, labels=["A"], y=np.array([0, 0, 0]), features={"msd_vgg": feats},
                      patches={"msd_vgg": (np.zeros((3, 10, 256), np.float32), np.zeros((3, 10, 50), np.float32))},
                      augmented={"msd_vgg": (pen, tags)})
    assert data.augmented_copies(["msd_vgg"]) == 2 and data.augmented_copies(["msd_vgg", "mtt_vgg"]) == 0
    x, y = data.with_patches(3).augmented_rows(["msd_vgg"], np.array([0, 2]), copies=2)
    sel = patch_choice(10, 3)
    f, t = pool_patches(pen[0][:, sel].transpose(1, 0, 2), tags[0][:, sel].transpose(1, 0, 2))
    assert x.shape == (2, 562) and y.tolist() == [0, 0]          # track 2 has no copies
    assert np.allclose(x, np.concatenate([f, t], 1), atol=1e-6)
    assert data.subset(np.array([1])).augmented["msd_vgg"][0].shape == (1, 2, 10, 256)


def _mel(path):
    from core.models.trunks import clip_logmel
    return clip_logmel(path)[None]


def test_served_msd_vgg_takes_the_msd_models_trunk_pass(served_bank, monkeypatch):
    """A served bank computes MSD_vgg from blocks 1–4 over the whole clip
    (ClipVGG): close to the checkpoint's own per-patch pass, and in
    predict_all it takes cnn_msd's trunk pass instead of making its own,
    with the same outputs as alone."""
    from core.models.fused_trunks import FusedTrunks
    from core.models.inference import predict_all
    from core.models.optimise import optimise_for_inference
    from core.models.transfer import CNNMSD
    from core.models.trunks_fast import ClipVGG
    clip = served_bank.models["msd_vgg"]
    assert isinstance(clip, ClipVGG) and served_bank.key().endswith(":clip")
    per_patch = TrunkBank(["msd_vgg"], models={"msd_vgg": clip.tagger})
    rng = np.random.default_rng(1)
    mel = torch.from_numpy(rng.uniform(0, 2.5, (2, 1, 96, 4 * PATCH_FRAMES)).astype(np.float32))
    a, b = per_patch.run(mel)["msd_vgg"], TrunkBank(["msd_vgg"], models={"msd_vgg": clip}).run(mel)["msd_vgg"]
    assert (a[1] - b[1]).abs().max() < 0.05
    assert torch.nn.functional.cosine_similarity(a[0], b[0]).min() > 0.97
    labels = ["A", "B", "C"]
    cnn = optimise_for_inference(CNNMSD(labels).eval())
    head = FusedTrunks(labels, trunks=["msd_vgg"])
    d = head.input_dim
    head.set_head(rng.normal(size=d), np.ones(d), rng.normal(size=(3, d)) * 0.01, np.zeros(3))
    head = optimise_for_inference(head.eval())
    assert head.shared_trunk_key() == cnn.trunk_key()
    alone = head.predict_logmel(mel)
    calls = []
    real = ClipVGG.trunk
    monkeypatch.setattr(ClipVGG, "trunk", lambda self, x: (calls.append(x.shape[0]), real(self, x))[1])
    preds = predict_all({cnn.cfg.key(): mel}, {"head": head, "cnn_msd": cnn})
    assert calls == []                                   # no second pass of blocks 1–4
    assert np.allclose(preds["head"].probs, alone.probs, atol=1e-5)
    assert np.allclose(preds["head"].embedding, alone.embedding, atol=1e-4)
