"""The catalog: configured sources, the upload library, the on-disk index and
the batch embedding that fills it.
"""

