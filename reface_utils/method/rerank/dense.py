"""The classic k-reciprocal re-ranking on given distance matrices: :func:`k_reciprocal_rerank`
forms the (Q+G) x (Q+G) matrix (steps 1-2 and 7 here, 3-6 in ``encoding.py``), for sets
that fit in memory."""
from __future__ import annotations

import numpy as np

from ..retrieval import top_k
from .encoding import _encode, _jaccard_into
from .params import K1, K2, LAMBDA, _params

__all__ = ["k_reciprocal_rerank"]


def k_reciprocal_rerank(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int = K1, k2: int = K2,
                        lambda_value: float = LAMBDA) -> np.ndarray:
    """The classic re-ranking of (Q, G) distances given the (Q, Q) and (G, G) ones: a
    (Q, G) float32 array. Forms the (Q+G) x (Q+G) matrix: for sets that fit in memory
    (for features at any scale see :func:`rerank_blocks`)."""
    k1, k2, lam = _params(k1, k2, lambda_value)
    q_g, q_q, g_g = (np.asarray(m) for m in (q_g, q_q, g_g))
    if q_g.ndim != 2:
        raise ValueError(f"q_g must be a 2-D (queries x gallery) array, got shape {q_g.shape}")
    n_q, n_g = q_g.shape
    for name, m, want in (("q_q", q_q, (n_q, n_q)), ("g_g", g_g, (n_g, n_g))):
        if m.shape != want:
            raise ValueError(f"{name} must have shape {want} to match q_g's {n_q} queries x {n_g} gallery "
                             f"images, got {m.shape}")
    for name, m in (("q_g", q_g), ("q_q", q_q), ("g_g", g_g)):
        if not np.issubdtype(m.dtype, np.number) or not np.isfinite(m).all():
            raise ValueError(f"{name} must hold finite numbers")
    n = n_q + n_g
    if n_q == 0 or n_g == 0:
        return np.zeros((n_q, n_g), np.float32)
    full = np.block([[q_q, q_g], [q_g.T, g_g]])
    sq = np.power(full, 2).astype(np.float32)
    del full
    col_max = sq.max(axis=0)
    col_max[col_max == 0] = 1.0  # an all-zero column: the classic divides 0 by 0 (NaN)
    orig = np.ascontiguousarray((sq / col_max).T)
    del sq
    ranks = top_k(orig, min(max(k1 + 1, k2), n))  # ties to the lower index
    enc = _encode(ranks, lambda i, j: orig[i, j], n_q, k1, k2)
    out = np.empty((n_q, n_g), np.float32)
    _jaccard_into(enc, 0, n_q, out)
    return _combine(out, orig[:n_q, n_q:], lam)


def _combine(jaccard: np.ndarray, orig: np.ndarray, lam: float) -> np.ndarray:
    """jaccard * (1 - lambda) + orig * lambda in float32, into ``jaccard``."""
    np.multiply(jaccard, np.float32(1.0 - lam), out=jaccard)
    jaccard += orig * np.float32(lam)
    return jaccard
