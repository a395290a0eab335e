"""Image sizes, and which images are too small to hold a person.

A 1x1 or 5x3 "image" in a ReID split is a broken crop, not a person: the ReID model
resizes it to its input size and returns a feature like any other, which then takes part
in the ranking. ReFace keeps such images in the ranking (the reference protocol ranks
every image of the split, so the numbers stay comparable) but reports them: a warning
when features are computed and a list in ``results.json`` (docs/METHOD.md, "Images too
small to hold a person").

Sizes are read from the file headers (no decoding) and cached like features, so a
second run over a 135k-image dataset reads nothing.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .cache import cached_features

__all__ = ["MIN_PERSON_SIDE", "image_sizes", "too_small"]

#: The smallest width and height (pixels) an image must have to count as a person crop.
#: Person crops of the real datasets are tens of pixels or more on each side; below this
#: nothing a ReID model (input 384x192 or 256x128) or a face detector can use is left.
MIN_PERSON_SIDE = 16


def _read_sizes(paths: Sequence[str], bar) -> dict[str, np.ndarray]:
    from PIL import Image

    sizes = np.zeros((len(paths), 2), np.int32)  # (width, height); 0, 0: unreadable
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as im:  # reads the header only
                sizes[i] = im.size
        except (OSError, ValueError, Image.DecompressionBombError):
            pass
        bar.update(1)
    return {"size": sizes}


def image_sizes(paths: Sequence[str | os.PathLike], *, progress: bool = False) -> np.ndarray:
    """``(N, 2)`` int32 width and height of each image file (0, 0 where unreadable), cached."""
    paths = [os.fspath(p) for p in paths]
    if not paths:
        return np.zeros((0, 2), np.int32)
    return cached_features({"name": "image-size", "version": 1}, paths, _read_sizes, chunk_size=8192,
                           desc="image sizes", progress=progress)["size"]


def too_small(sizes: np.ndarray, min_side: int = MIN_PERSON_SIDE) -> np.ndarray:
    """Readable images (size > 0) whose width or height is under ``min_side`` pixels."""
    sizes = np.asarray(sizes)
    return (sizes.min(axis=1) > 0) & (sizes.min(axis=1) < min_side)
