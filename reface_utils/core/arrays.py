"""Small vectorised index helpers shared by the method modules."""
from __future__ import annotations

import numpy as np

__all__ = ["concat_ranges"]


def concat_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The ranges ``starts[i] .. starts[i] + counts[i] - 1`` one after another, as one
    int64 array, without a Python loop (e.g. the columns of several gallery groups).

    >>> concat_ranges(np.array([10, 3]), np.array([2, 3]))
    array([10, 11,  3,  4,  5])
    """
    starts = np.asarray(starts, dtype=np.int64).ravel()
    counts = np.asarray(counts, dtype=np.int64).ravel()
    if starts.shape != counts.shape:
        raise ValueError(f"starts ({starts.shape}) and counts ({counts.shape}) must have the same length")
    total = int(counts.sum())
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + offsets

