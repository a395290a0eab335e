"""Small vectorised index helpers shared by the method modules."""
from __future__ import annotations

import numpy as np

__all__ = ["concat_ranges", "joint_codes"]


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


def joint_codes(*arrays: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The distinct values of several label arrays together (sorted) and, for each array, its
    values as int64 codes into them: equal labels get equal codes across the arrays, whatever
    their dtype (ints, names), so the method modules compare labels as small integers.

    >>> joint_codes(np.array(["b", "a"]), np.array(["a", "c"]))
    (array(['a', 'b', 'c'], dtype='<U1'), [array([1, 0]), array([0, 2])])
    """
    flat = [np.asarray(a).ravel() for a in arrays]
    values, inverse = np.unique(np.concatenate(flat), return_inverse=True)
    codes = np.split(inverse.ravel().astype(np.int64, copy=False), np.cumsum([len(a) for a in flat])[:-1])
    return values, codes

