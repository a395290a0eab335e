"""Face geometry the face backends share: fitting an image into the detector's input size,
and the 5-point similarity alignment of a detected face to the ArcFace template (the
recogniser's input)."""
from __future__ import annotations

import warnings

import numpy as np

__all__ = ["align_face", "fit_scale"]


def align_face(bgr: np.ndarray, kps: np.ndarray, size: int) -> np.ndarray:
    """InsightFace's 5-point similarity alignment to the ArcFace template."""
    from insightface.utils.face_align import norm_crop
    with warnings.catch_warnings():
        # scikit-image >= 0.26 deprecates SimilarityTransform.estimate, which
        # insightface calls; the result is unchanged.
        warnings.simplefilter("ignore", FutureWarning)
        return norm_crop(bgr, landmark=np.asarray(kps, dtype=np.float32), image_size=size)


def fit_scale(width: int, height: int, det_size: tuple[int, int] | None) -> tuple[float, int, int]:
    """Scale and new size that fit an image into ``det_size`` (w, h), aspect kept.

    Same rounding as InsightFace's SCRFD (the longer relative side fills the box).
    """
    if det_size is None:
        return 1.0, width, height
    dw, dh = det_size
    if height / width > dh / dw:
        new_h = dh
        new_w = max(1, int(new_h / (height / width)))
    else:
        new_w = dw
        new_h = max(1, int(new_w * (height / width)))
    return new_h / height, new_w, new_h
