"""Adapting the shipped default model to a library (core.training.library_head,
``python -m core adapt``, ``evaluate --adapt``): the served head's arrays are
what the model computes, the shipped replay belongs to its trunks, and an
indexed library gets every track's genre before and after."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_cli import run
from test_fused_trunks import stub_bank  # noqa: F401  (the fixture)

from core.catalog.index import CatalogIndex
from core.catalog.snapshot import CatalogError
from core.errors import ArtifactError
from core.training.library_head import REPLAY_FILE, LibraryError, load_replay, replay_record, served_head


@pytest.fixture
def shipped(stub_bank):  # noqa: F811
    from core.models.artifacts import load_model
    try:
        return load_model("fused_trunks")
    except ArtifactError:
        pytest.skip("no shipped fused_trunks model")


def _index(model, n: int, seed: int = 0) -> CatalogIndex:
    z = np.random.default_rng(seed).normal(size=(n, model.input_dim)).astype(np.float32)
    rows = [{"track_id": f"t{i}", "title": f"song {i}"} for i in range(n)]
    return CatalogIndex.from_arrays(rows, {model.name: z}, {model.name: np.full((n, len(model.labels)), 0.1)},
                                    model.labels)


def test_the_served_head_is_the_models_own_arithmetic(shipped):
    head = served_head(shipped)
    x = np.random.default_rng(1).normal(size=(5, shipped.input_dim)) * head.scale + head.mean
    with torch.no_grad():
        z, logits = shipped.head_outputs(torch.as_tensor(x, dtype=torch.float32))
        # The tag prior, when the model has one, follows the head (it passes logits through when off).
        served = shipped.prior(torch.from_numpy(head.logits(x)), torch.from_numpy(x)).numpy()
    assert np.allclose(served, logits.double().numpy() / float(shipped.temperature), atol=1e-3)
    assert np.allclose((x - head.mean) / head.scale, z.numpy(), atol=1e-4)


def test_the_shipped_replay_belongs_to_the_shipped_trunks_and_labels(shipped):
    from core.config import Paths
    replay = load_replay(Paths().artifacts / REPLAY_FILE, trunks=list(shipped.trunks))
    assert replay.mean.shape == (len(shipped.labels), len(replay.columns))
    assert (replay.count > 0).all() and replay.columns.max() < shipped.input_dim
    assert (replay.logit_scale > 0).all()
    with pytest.raises(ArtifactError, match="made for trunks"):
        load_replay(Paths().artifacts / REPLAY_FILE, trunks=["msd_vgg"])
    from ui.adapt import _measured  # what the page says is the file's own record
    rec = replay_record(Paths().artifacts / REPLAY_FILE)
    assert f"from {rec['plain']['mean']['accuracy']:.3f} to {rec['adapted']['mean']['accuracy']:.3f}" in _measured()


def test_an_indexed_library_gets_each_tracks_genre_before_and_after(shipped):
    from core.catalog.adapt import adapted_genres
    from core.config import Paths
    index = _index(shipped, 80)
    out = adapted_genres(index, shipped, Paths().artifacts)
    s = out["summary"]
    head = served_head(shipped)
    with torch.no_grad():        # "before" is the served model's own genre of each track
        x = torch.as_tensor(index.embeddings(shipped.name) * head.scale + head.mean, dtype=torch.float32)
        own = shipped.head_outputs(x)[1].argmax(1).numpy()
    assert [r["before"] for r in out["tracks"]] == [shipped.labels[i] for i in own]
    assert s["tracks"] == 80 == len(out["tracks"]) == sum(s["before"].values()) == sum(s["after"].values())
    assert s["changed"] == sum(r["before"] != r["after"] for r in out["tracks"])
    assert all(0 < r["p_before"] <= 1 and 0 < r["p_after"] <= 1 for r in out["tracks"])
    assert {r["after"] for r in out["tracks"]} <= set(shipped.labels)
    with pytest.raises(LibraryError, match="at least 20 tracks"):
        adapted_genres(_index(shipped, 19), shipped, Paths().artifacts)
    empty = CatalogIndex.from_arrays([], {}, {}, shipped.labels)
    with pytest.raises(CatalogError, match="no fused_trunks embeddings"):
        adapted_genres(empty, shipped, Paths().artifacts)


def test_a_missing_or_tampered_replay_file_is_one_clear_line(shipped, tmp_path):
    import shutil

    from core.config import Paths
    from core.models.artifacts import update_manifest
    from core.training.library_head import adapt_served
    with pytest.raises(ArtifactError, match="adapt --ship"):
        adapt_served(shipped, np.zeros((60, shipped.input_dim)), tmp_path)
    shutil.copy(Paths().artifacts / REPLAY_FILE, tmp_path / REPLAY_FILE)
    update_manifest(tmp_path)
    adapt_served(shipped, np.random.default_rng(0).normal(size=(60, shipped.input_dim)), tmp_path)   # verifies
    data = bytearray((tmp_path / REPLAY_FILE).read_bytes())
    data[-1] ^= 1
    (tmp_path / REPLAY_FILE).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        adapt_served(shipped, np.zeros((60, shipped.input_dim)), tmp_path)


@pytest.mark.parametrize("case, says", [("missing", "no fused_trunks embeddings"), ("file", "is not a folder"),
                                         ("damaged", "CURRENT file is damaged")])
def test_the_cli_refuses_a_bad_index_in_one_line(tmp_path, case, says):
    where = tmp_path / "idx"
    if case == "file":
        where.write_text("not an index")
    elif case == "damaged":
        where.mkdir()
        (where / "CURRENT").write_bytes(b"\x00\xff\xfe")
    r = run("adapt", "--index", where)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0]
