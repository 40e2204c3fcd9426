"""Shared helpers of the Streamlit page scripts in ``pages/`` (widgets,
sidebar, charts); pages stay thin.
"""

