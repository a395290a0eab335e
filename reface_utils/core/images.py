"""Reading images: one place that turns a path or an array into an RGB uint8 array.

Both extractors (face, ReID) read through here so that unreadable files are handled the
same way everywhere: :class:`UnreadableImageError` names the file, and the extractors
catch it, skip the image with a warning and count it (a few broken files in a dataset of
100k must not crash a run).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence, Union

import cv2
import numpy as np

ImageLike = Union[str, os.PathLike, np.ndarray]

__all__ = ["ImageLike", "UnreadableImageError", "UnreadableImagesWarning", "read_rgb",
           "warn_unreadable", "describe"]


class UnreadableImageError(OSError):
    """An image file that is missing, empty, cannot be opened (e.g. permission denied) or
    is not a decodable image. Every read failure of a path is turned into this one error,
    so that every extractor handles them the same way."""


class UnreadableImagesWarning(UserWarning):
    """Some images could not be read and were skipped."""


def read_rgb(image: ImageLike) -> np.ndarray:
    """Return an HxWx3 RGB uint8 array.

    Paths are decoded with OpenCV (BGR on disk -> RGB here). Arrays are taken as RGB
    already: HxW greyscale is expanded to 3 channels, HxWx4 drops alpha.
    """
    if isinstance(image, np.ndarray):
        arr = image
    else:
        path = Path(image)
        try:  # any failure to open or read (missing, permission denied, a folder, I/O error)
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as err:
            raise UnreadableImageError(f"cannot read image {path}: {err.strerror or err}") from err
        if data.size == 0:
            raise UnreadableImageError(f"cannot read image {path}: the file is empty")
        try:
            bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
        except cv2.error as err:  # some truncated files make a decoder raise, not return None
            raise UnreadableImageError(f"cannot decode image {path}: {str(err).strip()[:200]}") from err
        if bgr is None:
            raise UnreadableImageError(f"cannot decode image {path}: not a supported image file")
        arr = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise UnreadableImageError(f"expected an HxWx3 RGB image, got an array of shape {arr.shape}")
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def describe(image: ImageLike, index: int) -> str:
    """A short name for an image in messages: its path, or ``array #i``."""
    return str(image) if not isinstance(image, np.ndarray) else f"array #{index}"


def warn_unreadable(names: Sequence[str], what: str) -> None:
    """One warning for all the images an extractor skipped, with a count and examples."""
    if not names:
        return
    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    warnings.warn(f"{what}: skipped {len(names)} unreadable image(s): {shown}",
                  UnreadableImagesWarning, stacklevel=3)
