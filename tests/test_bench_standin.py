"""benchmarks.standin: ``bench --with-trunks`` adds an untrained head on the
trunks no shipped model serves on, on the one inference path; the naive
baseline runs the plain ports and the pipeline the served fast copies."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import benchmarks.standin as standin
import core.models.trunk_model as tm
from core.models import CNN
from core.models.inference import predict_all
from core.models.msd import PATCH_FRAMES
from core.models.optimise import optimise_for_inference
from core.models.trunks import TRUNKS, TrunkBank


class _Stub(nn.Module):
    """A tagger whose penultimate layer is the patch mean repeated, logits 0."""

    def __init__(self, name: str):
        super().__init__()
        self.d = TRUNKS[name].embed_dim

    def embed(self, patch):
        v = patch.mean((1, 2, 3))
        return v[:, None].repeat(1, self.d), torch.zeros(len(v), 50)


@pytest.fixture
def banks(monkeypatch):
    """Served (fast) and plain banks as distinct stubs, counting their runs."""
    made = {}

    def bank(kind):
        b = TrunkBank(models={"msd_musicnn": _Stub("msd_musicnn")})
        b.runs = 0
        real = b.run
        b.run = lambda x, *a: (setattr(b, "runs", b.runs + x.shape[0]), real(x, *a))[1]
        made[kind] = b
        return b

    fast, plain = bank("fast"), bank("plain")
    monkeypatch.setattr(tm, "shared_bank", lambda trunks, patches=None, cfg=None: fast)
    monkeypatch.setattr(standin, "plain_bank", lambda trunks, cfg=None: plain)
    return made


def test_standin_joins_the_models_and_runs_on_the_inference_path(banks):
    models = {"cnn": CNN(["A", "B", "C"]).eval()}
    out = standin.add_standins(models, ["MSD_musicnn"])
    assert list(out) == ["cnn", "standin_msd_musicnn"] and list(models) == ["cnn"]
    s = out["standin_msd_musicnn"]
    assert s.labels == ["A", "B", "C"] and s.embedding_dim == 450 == s.input_dim   # 2·200 features + 50 tags
    mel = torch.rand(2, 1, 96, 2 * PATCH_FRAMES)
    pred = predict_all({s.cfg.key(): mel}, {"s": s})["s"]
    assert pred.probs.shape == (2, 3) and pred.embedding.shape == (2, 450)
    assert banks["plain"].runs == 2 and banks["fast"].runs == 0      # naive baseline: the plain ports
    fast = optimise_for_inference(s)
    predict_all({s.cfg.key(): mel}, {"s": fast})
    assert banks["fast"].runs == 2 and banks["plain"].runs == 2      # the pipeline: the served copies


def test_no_standin_when_a_model_already_serves_on_the_trunks(banks):
    s = standin.TrunkStandIn(["A", "B"], ["msd_musicnn"])
    assert standin.add_standins({"head": s}, ["msd_musicnn"]) == {"head": s}
    assert standin.add_standins({"head": s}, []) == {"head": s}


def test_bench_cli_refuses_an_unknown_trunk(tmp_path):
    from core.cli.main import main
    with pytest.raises(SystemExit, match="--with-trunks"):
        main(["bench", "--json", str(tmp_path / "b.json"), "--with-trunks", "nope", "--no-first-run",
              "--load", "0", "--library-files", "0"])
