"""Benchmark harness behind ``python -m core bench`` and the render-time script
(not part of the product package).
"""

