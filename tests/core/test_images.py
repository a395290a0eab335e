"""read_rgb: RGB from any image file or array, and a clear error naming a file it cannot read."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from reface_utils.core.images import UnreadableImageError, read_rgb


def _png(path, rgb: np.ndarray):
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def test_files_are_read_as_rgb_and_arrays_are_normalised(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red only: BGR on disk must come back as R
    got = read_rgb(_png(tmp_path / "red.png", rgb))
    assert got.shape == (4, 5, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, rgb)
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(read_rgb(grey), np.repeat(grey[:, :, None], 3, axis=2))
    rgba = np.dstack([rgb, np.full((4, 5), 7, np.uint8)])
    np.testing.assert_array_equal(read_rgb(rgba), rgb)  # alpha dropped
    floats = np.full((2, 2, 3), 300.0)
    assert read_rgb(floats).dtype == np.uint8 and read_rgb(floats).max() == 255  # clipped, not wrapped
    with pytest.raises(UnreadableImageError, match=r"expected an HxWx3 RGB image, got an array of shape \(2, 2, 5\)"):
        read_rgb(np.zeros((2, 2, 5), np.uint8))


# ---------------------------------------------------------------- faults (issue 12)
def test_missing_image_is_named(tmp_path):
    with pytest.raises(UnreadableImageError, match=rf"cannot read image {tmp_path}/nope\.png: No such file"):
        read_rgb(tmp_path / "nope.png")


def test_empty_image_is_named(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(UnreadableImageError, match=r"empty\.jpg: the file is empty"):
        read_rgb(tmp_path / "empty.jpg")


def test_truncated_image_is_named(tmp_path):
    picture = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    data = _png(tmp_path / "whole.png", picture).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:40])
    with pytest.raises(UnreadableImageError, match=r"cannot decode image .*cut\.png"):
        read_rgb(tmp_path / "cut.png")


def test_folder_given_as_image_is_named(tmp_path):
    with pytest.raises(UnreadableImageError, match=rf"cannot read image {tmp_path}: Is a directory"):
        read_rgb(tmp_path)
