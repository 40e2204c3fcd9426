"""The Embedding map's 2-D projections of the index (PCA, t-SNE, UMAP)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.recommend.search import normalise

PROJECTIONS = ("PCA", "t-SNE", "UMAP")


@st.cache_data(show_spinner="Drawing the map…", max_entries=16)
def projection(index_dir: str, version: int, n: int, model: str, method: str, _idx) -> np.ndarray:
    """(n, 2) coordinates of every indexed track (PCA, t-SNE or UMAP of the
    embeddings), cached per index version, model and method."""
    x = normalise(_idx.embeddings(model))
    if len(x) < 3:
        return np.c_[np.arange(len(x), dtype=float), np.zeros(len(x))]
    if method == "t-SNE":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(x)
    if method == "UMAP" and len(x) >= 5:
        import umap  # imported on first use: it compiles numba code (~2 s warm, once per process)

        reducer = umap.UMAP(n_components=2, n_neighbors=int(min(15, len(x) - 1)), metric="euclidean",
                            init="spectral" if len(x) > 16 else "random", random_state=0, n_jobs=1)
        return np.asarray(reducer.fit_transform(x), dtype=float)
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=0).fit_transform(x)
