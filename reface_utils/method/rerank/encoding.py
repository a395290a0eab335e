"""Steps 3-6 of k-reciprocal re-ranking, shared by the dense and the block-wise paths: the
expanded k-reciprocal sets from rank lists, V (the weights and the local query
expansion) as sparse matrices, and the Jaccard distances of query rows through an
inverted index over V's non-zero entries. Never an N x N array: V has a few dozen
non-zeros per row (a few hundred after the query expansion)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import sparse  # scipy comes with scikit-image, a dependency

from ...core.arrays import concat_ranges
from .params import _CHUNK


def _half(k1: int) -> int:
    """round(k1 / 2) as the classic's ``int(np.around(k1 / 2.))``: halves to even."""
    return int(round(k1 / 2.0))


def _reciprocal(ranks: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each image's k nearest and which of them have it among their k nearest."""
    near = np.ascontiguousarray(ranks[:, :k])
    mutual = np.empty(near.shape, bool)
    step = max(1, _CHUNK // (k * k))
    for a in range(0, len(near), step):
        b = min(a + step, len(near))
        mutual[a:b] = (near[near[a:b]] == np.arange(a, b)[:, None, None]).any(axis=2)
    return near, mutual


def _expansion_sets(ranks: np.ndarray, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, members) of every image's expanded k-reciprocal set (step 3), members
    sorted. Vectorised over rows: candidate c of row i is a (k x h) comparison."""
    n = len(ranks)
    k, h = min(k1 + 1, n), min(_half(k1) + 1, n)
    near, mutual = _reciprocal(ranks, k)
    half, half_mutual = _reciprocal(ranks, h)
    counts = np.empty(n, np.int64)
    members = []
    step = max(1, _CHUNK // (k * h * k))
    for a in range(0, n, step):
        b = min(a + step, n)
        own = np.where(mutual[a:b], near[a:b], -1)                       # R(i), -1 = not in it
        cand, cand_mutual = half[near[a:b]], half_mutual[near[a:b]]     # R_half(c) of each c
        shared = ((cand[..., None] == own[:, None, None, :]).any(axis=3) & cand_mutual).sum(axis=2)
        # the classic's test, float for float: |R_half(c) & R(i)| > 2/3 * |R_half(c)|
        grow = mutual[a:b] & (shared > 2.0 / 3 * cand_mutual.sum(axis=2))
        extra = np.where(grow[..., None] & cand_mutual, cand, -1).reshape(b - a, -1)
        every = np.sort(np.concatenate([own, extra], axis=1), axis=1)
        keep = every >= 0
        keep[:, 1:] &= every[:, 1:] != every[:, :-1]
        counts[a:b] = keep.sum(axis=1)
        members.append(every[keep])
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return indptr, np.concatenate(members) if members else np.empty(0, np.int64)


@dataclass(eq=False)
class _Encoding:
    """V after query expansion: query rows by row, gallery rows by column (the inverted
    index of step 6)."""

    vq: sparse.csr_matrix
    vg: sparse.csc_matrix
    n_gallery: int


def _encode(ranks: np.ndarray, pair_orig: Callable[[np.ndarray, np.ndarray], np.ndarray], n_query: int,
            k1: int, k2: int) -> _Encoding:
    """Steps 3-5 from the rank lists (N, >= max(k1 + 1, k2), nearest first) and the
    original distance of any (row, column) pairs."""
    n = len(ranks)
    indptr, members = _expansion_sets(ranks, k1)
    rows = np.repeat(np.arange(n), np.diff(indptr))
    weight = np.exp(-np.asarray(pair_orig(rows, members), np.float64))
    total = np.bincount(rows, weights=weight, minlength=n)  # a row's set is never empty unless it
    weight /= total[rows]                                   # misses itself (not a metric): then V = 0
    v = sparse.csr_matrix((weight.astype(np.float32), members, indptr), shape=(n, n))
    if k2 != 1:
        m = min(k2, n)
        mean = sparse.csr_matrix((np.full(n * m, 1.0 / m, np.float32), ranks[:, :m].ravel(),
                                  np.arange(0, n * m + 1, m)), shape=(n, n))
        v = mean @ v
    v.sort_indices()
    return _Encoding(v[:n_query].tocsr(), v[n_query:].tocsc(), n - n_query)


def _jaccard_into(enc: _Encoding, a: int, b: int, out: np.ndarray) -> np.ndarray:
    """Jaccard distances of query rows a..b-1 to every gallery image, into out (b - a, G):
    for each non-zero V[q, k], every gallery image with V[g, k] != 0 receives
    min(V[q, k], V[g, k]) -- all at once, as (row, gallery, value) triples summed by
    bincount (float64)."""
    n_g, vq, vg = enc.n_gallery, enc.vq, enc.vg
    step = max(1, min(64, _CHUNK // max(n_g, 1)))  # rows whose float64 sums take about 32 MiB
    for s in range(a, b, step):
        e = min(s + step, b)
        lo, hi = vq.indptr[s], vq.indptr[e]
        feat, v_q = vq.indices[lo:hi], vq.data[lo:hi]
        row = np.repeat(np.arange(e - s, dtype=np.int64), np.diff(vq.indptr[s:e + 1]))
        start = vg.indptr[feat].astype(np.int64)
        count = vg.indptr[feat + 1] - start
        pick = concat_ranges(start, count)
        key = np.repeat(row * n_g, count) + vg.indices[pick]
        shared = np.minimum(np.repeat(v_q, count), vg.data[pick]).astype(np.float64)
        total = np.bincount(key, weights=shared, minlength=(e - s) * n_g).reshape(e - s, n_g)
        out[s - a:e - a] = 1.0 - total / (2.0 - total)
    return out
