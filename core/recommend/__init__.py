"""Recommendation: nearest-neighbour search, the paper's two methods, their
offline evaluation and the listening study.
"""

