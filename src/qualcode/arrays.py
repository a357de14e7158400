"""Array helpers shared by the rule gates and the classifier's evidence."""

from __future__ import annotations

import numpy as np


def concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``arange(start, start + length)`` for each pair, one after another, without a loop in Python.

    The positions of several stretches of a flat array at once: the entries of some rows of a
    CSR matrix, say.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    first_of_each = np.cumsum(lengths) - lengths
    return (
        np.arange(lengths.sum())
        - np.repeat(first_of_each, lengths)
        + np.repeat(np.asarray(starts), lengths)
    )
