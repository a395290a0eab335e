"""Feature containers shared by the models (which fill them) and the method (which reads them).

:class:`FaceFeatures` is what every face backend's ``extract`` returns; ReID features are
plain ``N x D`` float32 arrays whose unreadable-image rows are all zeros
(:func:`unreadable_mask`). Living here, below the models, lets the enrichment and fusion
code read features without importing any backend.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..core.files import atomic_savez

__all__ = ["FaceFeatures", "unreadable_mask", "unit_rows"]


# --------------------------------------------------------------------------- features
@dataclass
class FaceFeatures:
    """Per-image face features: row i describes image i.

    - ``has_face`` (bool N): an accepted face (after :meth:`thresholded`, if applied).
    - ``det_score`` (float32 N): the best detection's score, 0 where nothing was detected.
    - ``bbox`` (float32 N x 4): x1, y1, x2, y2 in image pixels, NaN where nothing was detected.
    - ``kps`` (float32 N x 5 x 2): eyes, nose, mouth corners (image left to right), NaN where none.
    - ``embedding`` (float32 N x D): L2-normalised, all zeros where ``has_face`` is False.

    ``det_score``/``bbox``/``kps`` keep the raw best detection even when a threshold
    rejected it, so one can see what was rejected; ``has_face`` and ``embedding`` say
    what is used.
    """

    has_face: np.ndarray
    det_score: np.ndarray
    bbox: np.ndarray
    kps: np.ndarray
    embedding: np.ndarray

    def __post_init__(self) -> None:
        self.has_face = np.asarray(self.has_face, dtype=bool).reshape(-1)
        n = len(self.has_face)
        self.det_score = np.asarray(self.det_score, dtype=np.float32).reshape(n)
        self.bbox = np.asarray(self.bbox, dtype=np.float32).reshape(n, 4)
        self.kps = np.asarray(self.kps, dtype=np.float32).reshape(n, 5, 2)
        emb = np.asarray(self.embedding, dtype=np.float32)
        if emb.ndim != 2 or len(emb) != n:
            raise ValueError(f"FaceFeatures: embedding must be {n} x D, got shape {emb.shape}")
        self.embedding = emb

    def __len__(self) -> int:
        return len(self.has_face)

    @property
    def dim(self) -> int:
        """Embedding size D."""
        return self.embedding.shape[1]

    @classmethod
    def empty(cls, n: int, dim: int) -> "FaceFeatures":
        """``n`` rows of "no face"."""
        return cls(has_face=np.zeros(n, bool), det_score=np.zeros(n, np.float32),
                   bbox=np.full((n, 4), np.nan, np.float32), kps=np.full((n, 5, 2), np.nan, np.float32),
                   embedding=np.zeros((n, dim), np.float32))

    def thresholded(self, det_threshold: float) -> "FaceFeatures":
        """Keep only faces with ``det_score >= det_threshold`` (docs/METHOD.md section 2).

        Rejected rows get ``has_face=False`` and a zero embedding. One-way: a second
        call with a lower threshold cannot bring them back (threshold the raw features).
        """
        keep = self.has_face & (self.det_score >= np.float32(det_threshold))
        emb = np.where(keep[:, None], self.embedding, np.float32(0))
        return FaceFeatures(keep, self.det_score.copy(), self.bbox.copy(), self.kps.copy(), emb)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "FaceFeatures":
        """Rows ``indices`` (integer positions or a boolean mask), in that order."""
        idx = np.asarray(indices)
        return FaceFeatures(self.has_face[idx], self.det_score[idx], self.bbox[idx],
                            self.kps[idx], self.embedding[idx])

    @staticmethod
    def concat(parts: Sequence["FaceFeatures"]) -> "FaceFeatures":
        """Row-wise concatenation (all parts must have the same embedding size)."""
        if not parts:
            raise ValueError("FaceFeatures.concat needs at least one part")
        dims = {p.dim for p in parts}
        if len(dims) > 1:
            raise ValueError(f"FaceFeatures.concat: embedding sizes differ: {sorted(dims)}")
        return FaceFeatures(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f: getattr(self, f) for f in _FIELDS}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "FaceFeatures":
        missing = [f for f in _FIELDS if f not in arrays]
        if missing:
            raise ValueError(f"FaceFeatures: missing arrays {missing}")
        return cls(**{f: arrays[f] for f in _FIELDS})

    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` file atomically (temporary file + rename)."""
        atomic_savez(path, self.to_arrays())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FaceFeatures":
        with np.load(path, allow_pickle=False) as data:
            return cls.from_arrays({k: data[k] for k in data.files})


_FIELDS = ("has_face", "det_score", "bbox", "kps", "embedding")


def unreadable_mask(features: np.ndarray) -> np.ndarray:
    """Rows of a ReID ``extract`` result that belong to unreadable images (all zeros)."""
    return ~np.any(features != 0, axis=1)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32; all-zero rows stay zero (no division by 0)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, np.float32(1e-12))
