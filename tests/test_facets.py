"""Facets (tempo, energy, tags), steering by them, the song path and the
listeners whose relevance is not genre."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.audio.features import logmels
from core.catalog.index import CatalogIndex
from core.config import FeatureConfig
from core.facets import derived, facet_columns
from core.facets.measure import auc, click_tempo, click_track
from core.facets.signal import signal_facets
from core.models.msd import MSD_FEATURES
from core.recommend.path import song_path
from core.recommend.relevance import mood_listeners, relevance_eval
from core.recommend.request import RecommendError
from core.recommend.steer import Steer, parse_tempo, steered


@pytest.mark.parametrize("cfg", [MSD_FEATURES, FeatureConfig()], ids=["16k", "12k"])
@pytest.mark.parametrize("bpm", [72.0, 100.0, 128.0, 150.0])
def test_tempo_of_a_click_track_at_known_bpm(cfg, bpm):
    lm = logmels(click_track(bpm, cfg)[: cfg.window_samples], cfg)[0, 0].numpy()
    f = signal_facets(lm, cfg)
    assert abs(f["tempo_bpm"] - bpm) / bpm < 0.02
    assert f["tempo_conf"] > 0.7
    assert 40.0 <= signal_facets(lm[:, :200], cfg)["tempo_bpm"] <= 240.0 or \
        signal_facets(lm[:, :200], cfg)["tempo_bpm"] == 0.0
    # The loudness is only read where the front-end keeps the file's level.
    assert np.isfinite(f["loudness_db"]) == (cfg.target_rms_db is None)


def test_noise_has_no_confident_tempo():
    cfg = MSD_FEATURES
    noise = np.random.default_rng(0).normal(0, 0.1, cfg.window_samples).astype(np.float32)
    f = signal_facets(logmels(noise, cfg)[0, 0].numpy(), cfg)
    assert f["tempo_conf"] < 0.3
    silence = signal_facets(logmels(np.zeros(cfg.window_samples, np.float32), cfg)[0, 0].numpy(), cfg)
    assert silence["tempo_bpm"] == 0.0 and silence["tempo_conf"] == 0.0


def test_click_tempo_report_and_auc():
    rows = click_tempo(FeatureConfig(), bpms=(90.0,))
    assert rows[0]["error_pct"] < 2
    assert auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5


def test_derived_scores_follow_their_tags():
    calm = derived({"chill": 0.8, "Mellow": 0.7, "party": 0.05, "instrumental": 0.9, "male vocalists": 0.05})
    loud = derived({"chill": 0.05, "party": 0.8, "metal": 0.6, "male vocalists": 0.9, "instrumental": 0.05})
    assert calm["arousal"] < 0.5 < loud["arousal"]
    assert calm["vocal"] < 0.5 < loud["vocal"]
    assert np.isnan(derived({})["vocal"])


def test_indexing_stores_facets_and_reads_them_back(tmp_path, tiny_artifacts):
    from conftest import write_audio

    from core.datasets import Track
    from core.models.artifacts import load_models

    models = load_models(tiny_artifacts)
    cfg = next(iter(models.values())).cfg
    bpm = 120.0
    wav = write_audio(tmp_path / "clicks.wav", click_track(bpm, cfg, seconds=8.0), sr=cfg.sample_rate)
    idx = CatalogIndex.open(tmp_path / "idx")
    idx.update([Track("c1", wav, "Clicks")], models)
    f = CatalogIndex.open(tmp_path / "idx").snapshot().facets()
    assert list(f.columns) == ["track_id"] + facet_columns()
    assert abs(f.loc[0, "tempo_bpm"] - bpm) / bpm < 0.03 and f.loc[0, "tempo_conf"] > 0.5
    # No MSD trunk among these models: its tags are NaN, not made up.
    assert f["msd_rock"].isna().all()


# --------------------------------------------------------------------------- steering and paths


def _line_index(n: int = 9, arousal=None, tempo=None) -> CatalogIndex:
    """Tracks on a quarter circle (angle i·10°), so cosine distances are known."""
    ang = np.radians(np.arange(n) * 10.0)
    emb = np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)
    rows = pd.DataFrame({"track_id": [f"t{i}" for i in range(n)], "title": [f"song {i}" for i in range(n)],
                         "artist": [f"a{i}" for i in range(n)], "genre": ["G"] * n,
                         "arousal": arousal if arousal is not None else np.linspace(0, 1, n),
                         "valence": np.full(n, 0.5),
                         "tempo_bpm": tempo if tempo is not None else np.linspace(60, 180, n)})
    probs = np.full((n, 2), 0.5, np.float32)
    return CatalogIndex.from_arrays(rows, {"m": emb}, {"m": probs}, ["G", "H"])


def test_steering_reranks_a_known_geometry():
    idx = _line_index(arousal=np.array([0.5, 0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4]))
    plain = [r.track_id for r in steered(idx, ["t0"], Steer(), k=3, method="cosine", model="m")]
    assert plain == ["t1", "t2", "t3"]                     # nearest angles first
    calm = [r.track_id for r in steered(idx, ["t0"], Steer(mood="calmer", weight=1.0), k=3,
                                        method="cosine", model="m")]
    energetic = [r.track_id for r in steered(idx, ["t0"], Steer(mood="energetic", weight=1.0), k=3,
                                             method="cosine", model="m")]
    assert calm[0] == "t2" and energetic[0] == "t1"        # arousal 0.1 vs 0.9 beside the seed's 0.5
    arousal = dict(zip(idx.column("track_id"), idx.snapshot().facets()["arousal"]))
    assert np.mean([arousal[t] for t in calm]) < 0.5 < np.mean([arousal[t] for t in energetic])
    ranged = steered(idx, ["t0"], Steer(tempo=(130, 170)), k=5, method="genre", model="m")
    bpm = dict(zip(idx.column("track_id"), idx.snapshot().facets()["tempo_bpm"]))
    assert ranged and all(130 <= bpm[r.track_id] <= 170 for r in ranged)
    assert [r.rank for r in ranged] == list(range(1, len(ranged) + 1))
    with pytest.raises(RecommendError, match="MIN:MAX"):
        parse_tempo("fast")
    with pytest.raises(RecommendError, match="mood"):
        Steer(mood="angry")


def _steered_by_definition(idx, seeds, steer, k, **kw):
    """Reference: the whole unsteered list (copies removed), re-scored, filtered, re-sorted."""
    from dataclasses import replace

    from core.recommend.methods import recommend
    from core.recommend.steer import mood_terms

    snap = idx.snapshot()
    base = recommend(snap, seeds, k=len(snap), **{**kw, "diversity": 0.0})
    rows = snap.rows_of([r.track_id for r in base])
    f = snap.facets()
    score = np.array([r.score for r in base], float)
    keep = np.ones(len(base), bool)
    if steer.tempo is not None:
        bpm = f["tempo_bpm"].to_numpy(float)[rows]
        keep &= (bpm >= steer.tempo[0]) & (bpm <= steer.tempo[1])
    if steer.mood is not None:
        terms = mood_terms(f["arousal"].to_numpy(float), f["valence"].to_numpy(float), snap.rows_of(seeds),
                           steer.mood)
        score = score + steer.weight * terms[rows]
    order = [i for i in np.argsort(-score, kind="stable") if keep[i]][:k]
    return [replace(base[i], rank=r + 1, score=float(score[i])) for r, i in enumerate(order)]


def test_steering_answers_exactly_as_re_ranking_the_whole_unsteered_list():
    """Steering scores the catalog once and removes copies only as deep as it
    needs: the same tracks, order, scores and reasons as the definition, with
    copies of one song (the first copy in the unsteered order stays) and ties."""
    rng = np.random.default_rng(3)
    n = 400
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb[10:20] = emb[9]                                     # tied scores
    titles = [f"song {i}" for i in range(n)]
    artists = [f"a{i % 50}" for i in range(n)]
    for i in range(30, n, 7):                               # copies of the song one row up
        titles[i], artists[i] = titles[i - 1], artists[i - 1]
    arousal = rng.uniform(0, 1, n)
    arousal[::11] = np.nan
    rows = pd.DataFrame({"track_id": [f"t{i}" for i in range(n)], "title": titles, "artist": artists,
                         "genre": np.where(np.arange(n) % 2, "G", "H"), "arousal": arousal,
                         "valence": rng.uniform(0, 1, n), "tempo_bpm": rng.uniform(60, 180, n)})
    probs = rng.dirichlet(np.ones(2), n).astype(np.float32)
    idx = CatalogIndex.from_arrays(rows, {"m": emb}, {"m": probs}, ["G", "H"])
    steers = [Steer(mood="like", weight=2.0), Steer(mood="calmer"), Steer(mood="energetic", weight=-0.3),
              Steer(tempo=(90, 120)), Steer(mood="like", tempo=(100, 180)), Steer(tempo=(300, 400))]
    n_copies_moved = 0
    for steer in steers:
        for seeds, kw in ((["t9"], dict(method="cosine")), (["t0", "t31"], dict(method="genre", genre_weight=0.5)),
                          (["t5"], dict(method="cosine", aggregate="max", exclude_artists=["a7"]))):
            got = steered(idx, seeds, steer, k=12, model="m", **kw)
            want = _steered_by_definition(idx, seeds, steer, 12, model="m", **kw)
            assert [(r.track_id, r.rank, r.score) for r in got] == [(r.track_id, r.rank, r.score) for r in want]
            assert [r.reason.split("; steered: ")[0] for r in got] == [r.reason for r in want]
            assert all("; steered: " in r.reason for r in got)
            n_copies_moved += sum(int(r.track_id[1:]) >= 29 and int(r.track_id[1:]) % 7 in (1, 2)
                                  for r in got)
    assert n_copies_moved > 0       # songs with a copy were among the answers


def test_song_path_is_monotone_towards_b_without_repeats():
    idx = _line_index(n=10)
    path = song_path(idx, "t0", "t9", steps=5, model="m")
    ids = [s.track_id for s in path]
    assert ids[0] == "t0" and ids[-1] == "t9" and len(ids) == 5
    assert len(set(ids)) == len(ids)
    d = [s.to_end for s in path]
    assert all(a > b for a, b in zip(d, d[1:]))
    # Evenly spaced waypoints on the arc: 0°, 22.5°, 45°, 67.5°, 90° → the nearest tracks.
    assert ids == ["t0", "t2", "t4", "t7", "t9"] or ids == ["t0", "t2", "t5", "t7", "t9"]
    # More steps than tracks between: shorter, still monotone and distinct.
    long = song_path(idx, "t0", "t3", steps=8, model="m")
    assert [s.track_id for s in long] == ["t0", "t1", "t2", "t3"]
    # Distances to the waypoints: step j of n is the point t = j/(n−1) of the chord from A (0°) to B,
    # seen from the origin at angle atan2(t·sin B, 1 − t + t·cos B).
    for p, end_deg in ((path, 90.0), (long, 30.0)):
        at = {f"t{i}": i * 10.0 for i in range(10)}
        t = np.arange(len(p)) / (len(p) - 1)
        way = np.degrees(np.arctan2(t * np.sin(np.radians(end_deg)), 1 - t + t * np.cos(np.radians(end_deg))))
        want = [1 - np.cos(np.radians(at[s.track_id] - w)) for s, w in zip(p, way)]
        assert [s.to_waypoint for s in p] == pytest.approx(want, abs=1e-6)
    with pytest.raises(RecommendError):
        song_path(idx, "t0", "t0", steps=3, model="m")


# --------------------------------------------------------------------------- relevance that is not genre


def _quadrant_index() -> tuple[CatalogIndex, np.ndarray]:
    """Four quadrants in four embedding directions, with genre labels that cut across them."""
    rng = np.random.default_rng(0)
    quads = np.repeat(["Q1", "Q2", "Q3", "Q4"], 8)
    centres = {q: rng.normal(size=6) for q in ("Q1", "Q2", "Q3", "Q4")}
    emb = np.stack([centres[q] + 0.1 * rng.normal(size=6) for q in quads]).astype(np.float32)
    genres = np.tile(["A", "B"], 16)
    probs = np.where(genres[:, None] == np.array(["A", "B"]), 0.9, 0.1).astype(np.float32)
    rows = [{"track_id": f"t{i}", "genre": g, "artist": f"artist{i}"} for i, g in enumerate(genres)]
    return CatalogIndex.from_arrays(rows, {"m": emb}, {"m": probs}, ["A", "B"]), quads


def test_mood_listeners_on_a_fixture_with_quadrants():
    idx, quads = _quadrant_index()
    listeners = mood_listeners(quads, 8, 5, np.random.default_rng(0))
    assert sorted({q for _, q in listeners}) == ["Q1", "Q2", "Q3", "Q4"]
    assert all(len(s) == 5 and set(quads[s]) == {q} for s, q in listeners)
    rep = relevance_eval(idx, "mood", quads, model="m", genre_weight=0.9)
    m = rep["methods"]
    # Sound alone finds the quadrant (3 of 8 same-quadrant tracks remain after 5 seeds: ≤ 0.6);
    # ranking by a genre that cuts across quadrants never helps; random is 3/27.
    assert m["cosine"]["precision"] == pytest.approx(0.6)
    assert m["genre_soft"]["precision"] <= m["cosine"]["precision"]
    assert m["random"]["precision"] == pytest.approx(3 / 27)
    lo, hi = rep["differences"]["genre_soft_minus_cosine"]["ci95"]
    assert lo <= rep["differences"]["genre_soft_minus_cosine"]["diff"] <= hi
    assert "loses" in rep["verdict"] or "ties" in rep["verdict"]


def test_cli_path_and_steered_recommend(tmp_path, tiny_artifacts, capsys):
    import json

    from conftest import make_dataset

    from core.cli.main import main
    from core.datasets import read_dataset
    from core.models.artifacts import load_models

    data = make_dataset(tmp_path / "data", per_genre=2)
    CatalogIndex.open(tmp_path / "idx").update(read_dataset(data), load_models(tiny_artifacts))
    ids = list(CatalogIndex.open(tmp_path / "idx").column("track_id"))
    assert main(["path", "--index", str(tmp_path / "idx"), "--from", ids[0], "--to", ids[-1], "--steps", "4"]) == 0
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert steps[0]["track_id"] == ids[0] and steps[-1]["track_id"] == ids[-1]
    assert all(a["to_end"] > b["to_end"] for a, b in zip(steps, steps[1:]))
    assert main(["recommend", "--index", str(tmp_path / "idx"), "--seeds", ids[0], "--tempo", "0:240",
                 "--k", "3"]) == 0
    recs = json.loads(capsys.readouterr().out)["recommendations"]
    assert len(recs) == 3 and all("tempo 0–240 BPM" in r["reason"] for r in recs)
    assert main(["recommend", "--index", str(tmp_path / "idx"), "--seeds", ids[0], "--tempo", "fast"]) == 2
    assert "MIN:MAX" in capsys.readouterr().err


def test_a_family_bank_trunks_tags_plug_in_as_columns():
    """A model served on the trunk family's bank gets its trunks' tags as facet
    columns (read off the bank's vectors, no extra pass); others stay NaN."""
    import torch

    from core.facets import batch_facets
    from core.facets.tags import TAGGERS, tag_column
    from core.models.trunks import TrunkOutput

    mtt = TAGGERS["mtt_vgg"]

    class Bank:
        names = ["mtt_vgg"]

        def split(self, vec):
            return {"mtt_vgg": TrunkOutput(vec[:, :2], vec[:, 2:])}

    class OnBank:
        cfg = MSD_FEATURES

        def bank(self):
            return Bank()

        def trunk_key(self):
            return "trunks:mtt_vgg"

    tags = np.linspace(0.01, 0.99, len(mtt.tags), dtype=np.float32)
    vec = torch.from_numpy(np.concatenate([[0.0, 0.0], tags])[None].astype(np.float32))
    lm = logmels(click_track(100.0, MSD_FEATURES)[: MSD_FEATURES.window_samples], MSD_FEATURES)[:, 0].numpy()
    out = batch_facets({MSD_FEATURES.key(): lm}, [MSD_FEATURES], {"trunks:mtt_vgg": vec}, {"m": OnBank()})[0]
    assert [out[tag_column("mtt_vgg", t)] for t in mtt.tags] == pytest.approx(tags.tolist())
    assert np.isnan(out["msd_rock"]) and abs(out["tempo_bpm"] - 100) < 2


def test_a_tag_two_taggers_share_is_shown_once_with_their_mean():
    """ui.facets.top_tags: MSD_vgg and MSD_musicnn share the 50 MSD tags; the
    page showed "Hip-Hop 27 % · … · Hip-Hop 20 %". Each tag now shows once (the
    mean of the taggers that gave it), and the label names both checkpoints."""
    from core.facets.tags import tag_column
    from ui.facets import top_tags

    facets = {tag_column("msd", "Hip-Hop"): 0.27, tag_column("msd_musicnn", "Hip-Hop"): 0.21,
              tag_column("msd", "soul"): 0.22, tag_column("msd_musicnn", "rnb"): 0.30,
              tag_column("msd", "rock"): float("nan")}
    tags, taggers = top_tags(facets, n=6)
    assert [t for t, _ in tags] == ["rnb", "Hip-Hop", "soul"]
    assert dict(tags)["Hip-Hop"] == pytest.approx(0.24)
    assert taggers == ["MSD_musicnn", "MSD_vgg"]
    assert top_tags({tag_column("msd", "soul"): 0.5})[1] == ["MSD_vgg"]


def test_the_map_names_the_tagger_of_a_shared_tag():
    """ui.facets.facet_choices: the Embedding map's "Colour by" listed
    "tag: Hip-Hop" twice (MSD_vgg's and MSD_musicnn's columns); every label is
    now distinct, and a tag only one tagger has keeps its short label."""
    from core.facets.tags import tag_column
    from ui.facets import facet_choices

    table = pd.DataFrame({tag_column("msd", "Hip-Hop"): [0.2], tag_column("msd_musicnn", "Hip-Hop"): [0.3],
                          tag_column("msd", "soul"): [0.1], tag_column("msd_musicnn", "soul"): [np.nan]})
    labels = facet_choices(table)
    assert labels[tag_column("msd", "Hip-Hop")] == "tag: Hip-Hop (MSD_vgg)"
    assert labels[tag_column("msd_musicnn", "Hip-Hop")] == "tag: Hip-Hop (MSD_musicnn)"
    assert labels[tag_column("msd", "soul")] == "tag: soul"
    assert len(set(labels.values())) == len(labels)


def test_the_relevance_verdict_calls_equal_lists_a_tie_and_shows_tiny_differences():
    """core.recommend.relevance.verdict: a difference of float rounding
    (the shipped artist verdict read "loses: -0.000 [-0.000, -0.000]") is a tie
    of identical hits; a real but tiny one gets a fourth decimal, not ±0.000."""
    from core.recommend.relevance import verdict

    def diffs(d, lo, hi):
        return {"genre_soft_minus_cosine": {"diff": d, "ci95": [lo, hi]}}

    same = verdict({}, diffs(-5.55e-17, -5.55e-17, -5.55e-17))
    assert same == "method 2 (soft) ties (the same hits as method 1 for every listener)"
    tiny = verdict({}, diffs(-0.0002, -0.0004, -0.0001))
    assert tiny == "method 2 (soft) loses: -0.0002 [-0.0004, -0.0001]"
    assert verdict({}, diffs(0.01, 0.002, 0.02)) == "method 2 (soft) wins: +0.010 [+0.002, +0.020]"
