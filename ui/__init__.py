"""Shared helpers of the Streamlit page scripts in ``pages/``; pages stay thin.

``settings`` (folders, the Music folders field) · ``models`` (model loading,
artifacts, model picker, figure memo) · ``catalog`` (catalog, index, waiting
for the background indexing) · ``sidebar`` · ``uploads`` · ``analysis`` (one
track's analysis for Spectrograms / Classify) · ``seeds`` · ``projections``
(the Embedding map) · ``charts`` (plotly figures).
"""
