"""pages/_charts: colours that keep genres and models apart, generic model names."""

from __future__ import annotations

import itertools

import numpy as np

from ui import charts


def _lab(hex_colour: str) -> np.ndarray:
    """sRGB hex → CIELAB (D65)."""
    h = hex_colour.lstrip("#")
    rgb = np.array([int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)])
    rgb = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = m @ rgb / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_genre_palette_keeps_twenty_genres_clearly_apart():
    pal = charts.GENRE_PALETTE
    assert len(pal) >= 20 and len(set(pal)) == len(pal)
    closest = min(np.linalg.norm(_lab(a) - _lab(b)) for a, b in itertools.combinations(pal, 2))
    assert closest > 40                                   # ΔE76 ≈ 2.3 is "just noticeable"
    assert min(np.linalg.norm(_lab(c) - _lab("#ffffff")) for c in pal) > 50   # visible on white


def test_genre_colours_are_stable_and_distinct():
    genres = ["Rock", "Hip-Hop", "Jazz", "Pop", "Folk", "Country", "Blues", "Electronic",
              "Classical", "Metal", "Reggae"]
    a = charts.genre_colours(genres)
    b = charts.genre_colours(list(reversed(genres)) + ["(upload)"])
    assert all(a[g] == b[g] for g in genres)              # order-independent
    assert len({a[g] for g in genres}) == len(genres)     # 11 genres, 11 colours
    assert b["(upload)"] == charts.OTHER_COLOUR


def test_model_names_and_colours_are_generic():
    assert charts.model_name("cnn") == "CNN" and charts.model_name("crnn_msd") == "CRNN (MSD)"
    assert charts.model_name("baseline_mfcc") == "MFCC baseline"
    names = ["cnn", "crnn", "cnn_msd", "crnn_msd", "baseline_mfcc"]
    colours = [charts.model_colour(n) for n in names]
    assert len(set(colours)) == len(names)
    assert charts.model_colour("something_new") == charts.model_colour("something_new")


def test_embedding_scatter_uses_the_palette():
    import pandas as pd

    genres = [f"G{i:02d}" for i in range(12)]
    df = pd.DataFrame({"x": range(12), "y": range(12), "track_id": [f"t{i}" for i in range(12)],
                       "genre": genres})
    fig = charts.embedding_scatter(df, "genre", ["genre"], "map")
    colours = {t.name: t.marker.color for t in fig.data}
    assert len(set(colours.values())) == 12 and colours == charts.genre_colours(genres)


def test_no_colour_is_one_of_streamlits_plotly_placeholders():
    """Streamlit's plotly theme swaps the hex strings #000001–#000040 for its
    own colours in the browser: Electronic's dark navy (#000033) was drawn
    salmon beside Classical's red. Every genre colour and the log-mel scale
    reach plotly as strings that pass through unchanged."""
    import re

    placeholder = re.compile(r"^#0000[0-4][0-9]$", re.I)
    genres = [f"G{i:02d}" for i in range(len(charts.GENRE_PALETTE))]
    sent = list(charts.genre_colours(genres).values()) + list(charts.MAGMA)
    assert not [c for c in sent if placeholder.match(c)]
    assert charts.genre_colours(genres)["G03"] == "rgb(0, 0, 51)"    # the navy, as rgb()
