"""Genre-aware music recommender core: audio I/O, log-mel features, CNN/CRNN
models, training, metrics, catalog index and recommendation.

Plain Python (no Streamlit); the dashboard in ``pages/`` and the CLI
(``python -m core``) are thin layers over this package.
"""

__version__ = "0.1.0"
