"""core.arrays: the vectorised index helpers the method modules share."""
from __future__ import annotations

import numpy as np
import pytest

from reface_utils.core.arrays import concat_ranges, joint_codes


def test_concat_ranges_is_the_loop_it_replaces():
    rng = np.random.default_rng(0)
    starts, counts = rng.integers(0, 100, 50), rng.integers(0, 6, 50)
    expected = np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts)])
    got = concat_ranges(starts, counts)
    assert got.dtype == np.int64 and np.array_equal(got, expected)
    assert concat_ranges([], []).shape == (0,)
    with pytest.raises(ValueError, match="same length"):
        concat_ranges([1, 2], [1])


@pytest.mark.parametrize("a, b", [
    (np.array([7, 3, 7]), np.array([3, 9])),                    # ints
    (np.array(["cam2", "cam1"]), np.array(["cam1", "cam3"])),   # names
    (np.array([[1, 2], [2, 5]]), np.array([5])),                # any shape: flattened
])
def test_joint_codes_equal_labels_equal_codes_across_arrays(a, b):
    values, (qa, qb) = joint_codes(a, b)
    assert qa.dtype == qb.dtype == np.int64 and qa.shape == (a.size,) and qb.shape == (b.size,)
    assert np.array_equal(values[qa], a.ravel()) and np.array_equal(values[qb], b.ravel())
    assert list(values) == sorted(set(a.ravel().tolist()) | set(b.ravel().tolist()))


def test_joint_codes_of_one_and_of_empty_arrays():
    values, (codes,) = joint_codes(np.array([5, 1, 5]))
    assert list(values) == [1, 5] and codes.tolist() == [1, 0, 1]
    values, (a, b) = joint_codes(np.array([2]), np.empty(0, int))
    assert list(values) == [2] and a.tolist() == [0] and b.shape == (0,)
