"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), exact, and memory-bounded for LaST.

The algorithm, as the classic code (the ``re_ranking`` function torchreid and fast-reid
ship) runs it on the (Q+G) x (Q+G) matrix of all query and gallery images:

1. original distance: the three blocks (query-query, query-gallery, gallery-gallery)
   assembled, squared (the classic's ``np.power(dist, 2)``), each column divided by its
   maximum, then transposed: ``orig[i, j] = dist[j, i]**2 / max_m dist[m, i]**2``;
2. ranks: every image's neighbours by ``orig`` (itself first);
3. k-reciprocal set R(i): the j among i's k1 + 1 nearest that have i among their k1 + 1
   nearest; expanded by R_half(c) (the same with round(k1 / 2) + 1 neighbours) of every
   c in R(i) that shares more than 2/3 of its members with R(i);
4. V[i, j] = exp(-orig[i, j]) over the expanded set, normalised to sum 1;
5. local query expansion: V[i] becomes the mean of V over i's k2 nearest (k2 = 1: none);
6. Jaccard distance 1 - s / (2 - s), s = sum_k min(V[q, k], V[g, k]) (an inverted index
   over the non-zero entries; only query rows x gallery columns are needed);
7. final = jaccard * (1 - lambda) + orig * lambda, the query x gallery part.

:func:`k_reciprocal_rerank` does exactly that on given distance matrices (the classic
signature; dense, vectorised). Steps 3-6 are shared by both implementations here and work
on neighbour lists and sparse matrices, never on N x N arrays: V has a few dozen non-zeros
per row (a few hundred after the expansion of step 5).

:func:`rerank_blocks` runs the same algorithm from L2-normalised features, with the
distance the project ranks by: ``fusion.reid_distance`` gives r = -cos; the re-ranking
uses r + 1 = 1 - cos (torchreid's cosine distance), the same order, and >= 0 so that the
classic's squaring keeps it. Memory stays O(N k1 + block x N):

* one pass of block-wise products keeps, for each of the N = Q + G images, only its
  max(k1 + 1, k2) nearest (distance and index, ties to the lower index) and the largest
  distance in its row, which is the classic's column maximum (the matrix is symmetric);
  the gallery x gallery part is formed once per pair (upper triangle), each block
  updating its rows and its columns;
* steps 3-6 as above; distances of expansion members that are not among a row's stored
  neighbours are recomputed as dot products;
* the output is formed per block of query rows: the products of those rows again (for the
  original-distance term), the Jaccard term from the sparse V.

At LaST (10,176 x 125,353 images, 4,096-d) the classic's matrix alone is 73 GB; the
evaluation below peaks at 0.8 GiB beyond the features (BENCHMARKS.md, "Re-ranking").
:func:`rerank_retrieval` evaluates re-ranked configurations like
:func:`~reface_utils.method.retrieval.run_retrieval` does the others (same tables, CC/SC
filtering after re-ranking); see docs/METHOD.md, "k-reciprocal re-ranking (opt-in)", for
how the fused + enriched configuration is re-ranked.

Numbers: both implementations agree with a loop-by-loop implementation of the algorithm
to 1e-5 (tests/test_rerank.py). Unlike the classic code, V and the Jaccard sums are kept in
float32 / float64, not float16, and ties in the ranks go to the lower index (the classic's
quicksort leaves them unspecified). Output is float32.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from scipy import sparse  # scipy comes with scikit-image, a dependency
from tqdm.auto import tqdm

from ..core import checks
from ..core.arrays import concat_ranges
from .fusion import cache_rows, face_distance_into, fuse, reid_distance
from .retrieval import (BlockScores, EnrichedGallery, FeatureSet, PhaseClock, RetrievalConfig, RetrievalPlan,
                        RetrievalResult, Workspace, merge_blocks, plan_retrieval, resolve_device, top_k)
from .retrieval.blockstep import lowest_per_variant
from .retrieval.numpy_backend import NumpyBackend

__all__ = [
    "K1",
    "K2",
    "LAMBDA",
    "k_reciprocal_rerank",
    "rerank_blocks",
    "k_reciprocal_rerank_features",
    "rerank_configs",
    "rerank_retrieval",
    "combine_results",
]

K1, K2, LAMBDA = 20, 6, 0.3  # the paper's (and torchreid's / fast-reid's) defaults

_BLOCK_BYTES = 96 << 20       # one (block x N) float32 buffer on the CPU
_BLOCK_BYTES_CUDA = 1 << 30
_CHUNK = 1 << 22              # elements per chunk of the elementwise / selection work
_NONE = np.iinfo(np.int64).max  # index of an empty slot in a neighbour list, once decoded


def _params(k1, k2, lambda_value) -> tuple[int, int, float]:
    return (checks.integer("k1", k1, 1), checks.integer("k2", k2, 1),
            checks.number("lambda_value", lambda_value, 0.0, 1.0))


def _half(k1: int) -> int:
    """round(k1 / 2) as the classic's ``int(np.around(k1 / 2.))``: halves to even."""
    return int(round(k1 / 2.0))


# --------------------------------------------------------------------------- dense
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


# --------------------------------------------------------------- steps 3-6, shared
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


# ----------------------------------------------------- neighbour lists, block-wise
_EMPTY = np.uint64(np.iinfo(np.uint64).max)  # an empty slot of a neighbour list
_SAMPLE = 8192  # entries of a list's first block that bound its k-th smallest


def _keys(dist: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(distance, index) pairs as uint64 keys ordered as the pairs are (distance first,
    ties to the lower index): the float32's bits made order-preserving above, the index
    (< 2^32) below. -0.0 is made 0.0 first, so that the two tie."""
    bits = (np.asarray(dist, np.float32) + np.float32(0.0)).view(np.uint32)
    bits = np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31)).astype(np.uint64)
    return (bits << np.uint64(32)) | np.asarray(index).astype(np.uint64)


def _unkey(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of keys; empty slots give (inf, _NONE)."""
    high = (keys >> np.uint64(32)).astype(np.uint32)
    dist = np.where(high >> 31, high & np.uint32(0x7FFFFFFF), ~high).view(np.float32)
    index = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    empty = keys == _EMPTY
    return np.where(empty, np.float32(np.inf), dist), np.where(empty, _NONE, index)


class _Nearest:
    """The k smallest (distance, index) seen so far per row, ties to the lower index,
    kept as sorted uint64 keys (:func:`_keys`). Candidates of a row must come in
    increasing index order (each pass below does): then one equal to the current k-th
    never displaces it, and the strict ``threshold`` filter loses nothing."""

    def __init__(self, n: int, k: int) -> None:
        self.key = np.full((n, k), _EMPTY, np.uint64)

    def threshold(self, rows: slice) -> np.ndarray:
        """The k-th distance of each row's list (inf while it holds fewer than k)."""
        return _unkey(self.key[rows, -1])[0]

    def push(self, rows: np.ndarray, dist: np.ndarray, index: np.ndarray) -> None:
        """Merge candidate triples (row, distance, index), any order and number: each
        touched row's candidates are cut to its k smallest, laid next to its list in one
        padded array, and every row sorted at once."""
        if len(rows) == 0:
            return
        k = self.key.shape[1]
        keys = _keys(dist, index)
        order = np.lexsort((keys, rows))
        rows, keys = rows[order], keys[order]
        touched, first, count = np.unique(rows, return_index=True, return_counts=True)
        rank = np.arange(len(rows)) - np.repeat(first, count)
        keep = rank < k
        width = int(min(count.max(), k))
        pad = np.full((len(touched), k + width), _EMPTY, np.uint64)
        pad[:, :k] = self.key[touched]
        pad[np.repeat(np.arange(len(touched)), count)[keep], k + rank[keep]] = keys[keep]
        pad.sort(axis=1)
        self.key[touched] = pad[:, :k]


def _merge(a: _Nearest, b: _Nearest, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(index, distance) of the k nearest of two lists over disjoint columns."""
    keys = np.sort(np.concatenate([a.key, b.key], axis=1), axis=1)[:, :k]
    dist, index = _unkey(keys)
    return index, dist


def _bound(block, k: int, axis: int) -> np.ndarray:
    """Per list (rows of the block: axis=1; columns: axis=0), a value with at least k of
    the list's entries in this block at or below it: the k-th smallest of its first
    _SAMPLE entries (torch: of all). Entries above it can never be among the list's k
    nearest; inf when the block holds k or fewer."""
    length, n_lists = block.shape[axis], block.shape[1 - axis]
    if length <= k:
        return np.full(n_lists, np.inf, np.float32)
    if not isinstance(block, np.ndarray):
        import torch

        return torch.topk(block, k, dim=axis, largest=False, sorted=False).values.amax(dim=axis).cpu().numpy()
    if axis == 1:
        return np.partition(block[:, :_SAMPLE], k - 1, axis=1)[:, k - 1]
    out = np.empty(n_lists, np.float32)
    part = block[:_SAMPLE]
    step = max(1, _CHUNK // len(part))  # per column: transposed chunks (a partition along
    for s in range(0, n_lists, step):   # axis 0 reads memory with a stride)
        out[s:s + step] = np.partition(np.ascontiguousarray(part[:, s:s + step].T), k - 1, axis=1)[:, k - 1]
    return out


def _candidates(block, thr: np.ndarray, k: int, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries of a (rows, cols) distance block that may enter the running lists of its
    rows (axis=1) or of its columns (axis=0), whose k-th distances are ``thr``: below thr
    where a list is full; at or below :func:`_bound` where it is not yet (the first
    block it sees). Returns (list, other, distance), list/other positions in the block.
    ``block``: numpy array, or torch tensor (the comparison then runs on its device)."""
    full = np.isfinite(thr)
    limit = thr if full.all() else np.where(full, thr, _bound(block, k, axis)).astype(np.float32)
    along = (slice(None), None) if axis == 1 else (None, slice(None))
    if isinstance(block, np.ndarray):
        where = block < limit[along]
        if not full.all():
            where |= (block == limit[along]) & ~full[along]
        r, c = np.divmod(np.flatnonzero(where), block.shape[1])  # 1-D: a few times faster than 2-D
        del where
        dist = block[r, c]
    else:
        import torch

        lim, open_ = (torch.from_numpy(x).to(block.device) for x in (limit, ~full))
        where = block < lim[along]
        if not full.all():
            where |= (block == lim[along]) & open_[along]
        r, c = torch.nonzero(where, as_tuple=True)
        dist = block[r, c].cpu().numpy()
        r, c = r.cpu().numpy(), c.cpu().numpy()
    return (r, c, dist) if axis == 1 else (c, r, dist)


def _push(nearest: _Nearest, row0: int, block, k: int, axis: int, index0: int) -> None:
    """Candidates of a block into the lists of its rows (axis=1: list row0 + block row;
    neighbour index index0 + column) or its columns (axis=0: list row0 + column;
    neighbour index0 + block row)."""
    n_lists = block.shape[0] if axis == 1 else block.shape[1]
    thr = nearest.threshold(slice(row0, row0 + n_lists))
    lists, others, dist = _candidates(block, thr, k, axis)
    nearest.push(row0 + lists, dist, index0 + others)


def _amax(block, axis: int) -> np.ndarray:
    if isinstance(block, np.ndarray):
        return block.max(axis=axis)
    return block.amax(dim=axis).cpu().numpy()


@dataclass(eq=False)
class _Graph:
    """One variant's neighbour lists: ranks (N, K) nearest first, their distances r
    (= -cos, float32), and each row's largest (1 + r)^2 -- the classic's column maximum."""

    ranks: np.ndarray
    dist: np.ndarray
    row_max: np.ndarray


class _Products:
    """r = -cos blocks between the rows of one side ("q", "g", "e") and another side's
    columns, on the backend: numpy (fusion.reid_distance, so PRODUCT_TILE tiles) or torch
    (the features put on the device once). Buffers are reused from block to block."""

    def __init__(self, device: str, sides: dict[str, np.ndarray]) -> None:
        self.device = device
        self.sides = sides
        self._np: dict[str, np.ndarray] = {}
        self._t: dict = {}
        self.synchronize = None  # for PhaseClock: the device's queued work counts in its phase
        if device != "numpy":
            import torch

            self.torch = torch
            self.dev = torch.device(device)
            if self.dev.type == "cuda" and torch.get_float32_matmul_precision() != "highest":
                warnings.warn("torch float32 matmul precision is not 'highest' (TF32 products): re-ranked "
                              "distances will differ from the numpy path", stacklevel=3)
            self.tensors = {k: torch.from_numpy(v).to(self.dev) for k, v in sides.items()}
            if self.dev.type == "cuda":
                self.synchronize = lambda: torch.cuda.synchronize(self.dev)

    def release(self, *names: str) -> None:
        """Let the named buffers go (e.g. the neighbour pass's, before the output pass)."""
        for name in names:
            self._np.pop(name, None)
            self._t.pop(name, None)

    def _np_buffer(self, name: str, rows: int, cols: int) -> np.ndarray:
        buf = self._np.get(name)
        if buf is None or buf.size < rows * cols:
            buf = self._np[name] = np.empty(rows * cols, np.float32)
        return buf[:rows * cols].reshape(rows, cols)

    def _t_buffer(self, name: str, rows: int, cols: int):
        if self.dev.type == "cpu":  # shares the numpy buffer: no copy back
            return self.torch.from_numpy(self._np_buffer(name, rows, cols))
        buf = self._t.get(name)
        if buf is None or buf.numel() < rows * cols:
            self._t.pop(name, None)
            buf = self._t[name] = self.torch.empty(rows * cols, dtype=self.torch.float32, device=self.dev)
        return buf[:rows * cols].view(rows, cols)

    def block(self, rows: str, a: int, b: int, cols: str, c0: int = 0, c1: int | None = None, *,
              name: str = "block", cpu: bool = False, one_call: bool = False):
        """(b - a, c1 - c0) r = -cos: a numpy array, or with torch a device tensor
        (``cpu=True``: always a numpy array). numpy: fusion.reid_distance (PRODUCT_TILE
        row tiles), or with ``one_call`` one BLAS call for all rows (faster for 1024 rows;
        for blocks whose bits need not match another blocking's)."""
        c1 = len(self.sides[cols]) if c1 is None else c1
        width = c1 - c0
        if self.device == "numpy":
            out = self._np_buffer(name, b - a, width)
            if not one_call:
                return reid_distance(self.sides[rows][a:b], self.sides[cols][c0:c1], out=out)
            np.matmul(self.sides[rows][a:b], self.sides[cols][c0:c1].T, out=out)
            return np.negative(out, out=out)
        torch = self.torch
        out = self._t_buffer(name, b - a, width)
        with torch.inference_mode():
            torch.mm(self.tensors[rows][a:b], self.tensors[cols][c0:c1].T, out=out)
            out.neg_()
        if not cpu:
            return out
        if self.dev.type == "cpu":
            return self._np_buffer(name, b - a, width)
        host = self._np_buffer(name + " host", b - a, width)
        torch.from_numpy(host).copy_(out)
        return host


class _QueryGallery:
    """The query x gallery distances r = -cos of a block of queries in each variant:
    ``None`` plain, ``False`` / ``True`` GEFF min-enrichment with the query's own enriched
    copies kept / left out (fusion.apply_enrichment's rule, as retrieval's blocks apply
    it). Both passes take the blocks from here, so they see the same bits."""

    def __init__(self, products: _Products, variants: Sequence, plan: RetrievalPlan | None) -> None:
        self.products = products
        self.variants = tuple(variants)
        self.plan = plan
        self.n_query, self.n_gallery = len(products.sides["q"]), len(products.sides["g"])
        if any(v is not None for v in self.variants):
            layout, enriched = plan.e_layout, plan.enriched
            self.enrich = NumpyBackend(plan, Workspace())  # retrieval's min-enrichment rule
            self.cols = layout.cols
            by_gallery = np.argsort(enriched.gallery_index, kind="stable")  # samples per gallery image
            self.samples = by_gallery
            self.sample_start = np.searchsorted(enriched.gallery_index[by_gallery], np.arange(self.n_gallery + 1))

    def blocks(self, a: int, b: int) -> Iterator[tuple[object, np.ndarray]]:
        """(variant, (b - a, G) block) for each variant; the block is a buffer that the next
        step overwrites."""
        r = self.products.block("q", a, b, "g", name="qg", cpu=True)
        lowest = {}
        if any(v is not None for v in self.variants):
            plan = self.plan
            samples = self.products.block("q", a, b, "e", name="qe", cpu=True)  # layout order
            lowest = lowest_per_variant(self.enrich, plan.e_layout, samples, plan.own_copies(np.arange(a, b)),
                                        {v for v in self.variants if v is not None})
            plain = r[:, self.cols]
        for variant in self.variants:
            if variant is None:
                if lowest:
                    r[:, self.cols] = plain
                yield variant, r
            else:
                r[:, self.cols] = np.minimum(plain, lowest[variant])
                yield variant, r

    def pairs(self, i: np.ndarray, j: np.ndarray, variant) -> np.ndarray:
        """r of arbitrary (image, image) pairs in the N = Q + G numbering, as dot products."""
        xq, xg = self.products.sides["q"], self.products.sides["g"]
        n_q = self.n_query
        out = np.empty(len(i), np.float32)
        qi, qj = i < n_q, j < n_q
        for mask, left, right in ((qi & qj, (xq, i, 0), (xq, j, 0)), (~qi & ~qj, (xg, i, n_q), (xg, j, n_q))):
            sel = np.flatnonzero(mask)
            out[sel] = -_dots(left[0], left[1][sel] - left[2], right[0], right[1][sel] - right[2])
        cross = np.flatnonzero(qi != qj)
        q = np.where(qi, i, j)[cross]
        g = np.where(qi, j, i)[cross] - n_q
        out[cross] = -_dots(xq, q, xg, g)
        if variant is not None and len(cross):  # the smallest over the gallery image's samples too
            start = self.sample_start[g]
            count = self.sample_start[g + 1] - start
            sample = self.samples[concat_ranges(start, count)]
            pair = np.repeat(np.arange(len(cross)), count)
            if variant:  # own copies left out
                keep = self.plan.enriched.source_query[sample] != q[pair]
                sample, pair = sample[keep], pair[keep]
            r_e = -_dots(xq, q[pair], self.products.sides["e"], self.plan.e_layout.position[sample])
            low = out[cross]
            np.minimum.at(low, pair, r_e)
            out[cross] = low
        return out


def _dots(a: np.ndarray, ia: np.ndarray, b: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Row-wise dot products a[ia] . b[ib] (float32), a few thousand pairs at a time."""
    out = np.empty(len(ia), np.float32)
    step = max(1, _CHUNK // 4 // max(a.shape[1], 1))
    for s in range(0, len(ia), step):
        out[s:s + step] = np.einsum("ij,ij->i", a[ia[s:s + step]], b[ib[s:s + step]])
    return out


def _budget(device: str) -> int:
    return _BLOCK_BYTES_CUDA if device.startswith("cuda") else _BLOCK_BYTES


def _block_rows(width: int, device: str, block_size: int | None) -> int:
    """Query rows per block: about _budget bytes per (rows x width) float32 buffer."""
    if block_size is not None:
        return checks.integer("block_size", block_size, 1)
    return int(min(1024, max(32, _budget(device) // (4 * max(width, 1)) // 32 * 32)))


def _neighbour_graphs(products: _Products, source: _QueryGallery, k: int, block: int, gallery_block: int,
                      budget: int, clock: PhaseClock, progress: bool) -> dict[object, _Graph]:
    """Every image's k nearest and largest distance, per variant of the query x gallery
    block, from one pass of block-wise products (no N x N array)."""
    n_q, n_g = source.n_query, source.n_gallery
    n = n_q + n_g
    keep = min(k, n)
    q_self, g_self = _Nearest(n_q, k), _Nearest(n_g, k)        # query-query, gallery-gallery
    q_cross = {v: _Nearest(n_q, k) for v in source.variants}   # query rows, gallery columns
    g_cross = {v: _Nearest(n_g, k) for v in source.variants}   # gallery rows, query columns
    q_self_max, g_self_max = np.full(n_q, -np.inf, np.float32), np.full(n_g, -np.inf, np.float32)
    q_cross_max = {v: np.full(n_q, -np.inf, np.float32) for v in source.variants}
    g_cross_max = {v: np.full(n_g, -np.inf, np.float32) for v in source.variants}
    q_steps = range(0, n_q, block)
    g_steps = range(0, n_g, gallery_block)
    bar = tqdm(total=2 * len(q_steps) + len(g_steps), desc="re-ranking: neighbours", unit="block",
               disable=not progress)
    for a in q_steps:
        b = min(a + block, n_q)
        with clock("neighbours: products"):
            qq = products.block("q", a, b, "q", name="qq")
        with clock("neighbours: selection"):
            _push(q_self, a, qq, k, 1, 0)
            q_self_max[a:b] = _amax(qq, 1)
        bar.update()
    for a in q_steps:
        b = min(a + block, n_q)
        with clock("neighbours: products"):
            variants = source.blocks(a, b)
            variant, qg = next(variants)
        while True:
            with clock("neighbours: selection"):
                _push(q_cross[variant], a, qg, k, 1, n_q)
                q_cross_max[variant][a:b] = _amax(qg, 1)
                _push(g_cross[variant], 0, qg, k, 0, a)
                np.maximum(g_cross_max[variant], _amax(qg, 0), out=g_cross_max[variant])
            with clock("neighbours: products"):
                nxt = next(variants, None)
            if nxt is None:
                break
            variant, qg = nxt
        bar.update()
    # The upper triangle: each pair once, for its row and its column, in tiles of
    # gallery_block rows (many rows: BLAS runs faster) x a budget of columns. Every list
    # receives its candidates in increasing index order, as _Nearest needs.
    width = max(gallery_block, budget // (4 * gallery_block))
    for a in g_steps:
        b = min(a + gallery_block, n_g)
        for c0 in range(a, n_g, width):
            c1 = min(c0 + width, n_g)
            with clock("neighbours: products"):
                gg = products.block("g", a, b, "g", c0, c1, name="gg", one_call=True)
            with clock("neighbours: selection"):
                _push(g_self, a, gg, k, 1, n_q + c0)
                np.maximum(g_self_max[a:b], _amax(gg, 1), out=g_self_max[a:b])
                lo = max(c0, b)  # columns beyond the row block: their rows' lists too
                if lo < c1:
                    rest = gg[:, lo - c0:]
                    _push(g_self, lo, rest, k, 0, n_q + a)
                    np.maximum(g_self_max[lo:c1], _amax(rest, 0), out=g_self_max[lo:c1])
        bar.update()
    bar.close()
    products.release("qq", "gg")
    graphs = {}
    one = np.float32(1.0)
    for v in source.variants:
        q_ranks, q_dist = _merge(q_self, q_cross[v], keep)
        g_ranks, g_dist = _merge(g_cross[v], g_self, keep)
        largest = np.concatenate([np.maximum(q_self_max, q_cross_max[v]), np.maximum(g_cross_max[v], g_self_max)])
        row_max = np.square(one + largest)
        row_max[row_max == 0] = 1.0
        graphs[v] = _Graph(np.concatenate([q_ranks, g_ranks]), np.concatenate([q_dist, g_dist]), row_max)
    return graphs


def _feature_encoding(graph: _Graph, source: _QueryGallery, variant, k1: int, k2: int) -> _Encoding:
    """Steps 3-5 on a neighbour graph; expansion members beyond a row's stored neighbours
    get their distance from dot products."""
    one = np.float32(1.0)

    def pair_orig(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        r = np.empty(len(i), np.float32)
        found = np.zeros(len(i), bool)
        step = max(1, _CHUNK // graph.ranks.shape[1])
        for s in range(0, len(i), step):
            hit = graph.ranks[i[s:s + step]] == j[s:s + step, None]
            at = hit.argmax(axis=1)
            found[s:s + step] = hit[np.arange(len(at)), at]
            r[s:s + step] = graph.dist[i[s:s + step], at]
        missing = np.flatnonzero(~found)
        if len(missing):
            r[missing] = source.pairs(i[missing], j[missing], variant)
        d = one + r
        return d * d / graph.row_max[i]

    return _encode(graph.ranks, pair_orig, source.n_query, k1, k2)


def _final_block(r: np.ndarray, enc: _Encoding, row_max: np.ndarray, a: int, b: int, lam: float,
                 out: np.ndarray) -> np.ndarray:
    """Re-ranked (b - a, G) distances of query rows a..b-1 from their r = -cos block:
    the Jaccard term into ``out``, then the original distance (squared 1 - cos over the
    row's largest, as the classic normalises) added a few rows at a time, in cache."""
    _jaccard_into(enc, a, b, out)
    np.multiply(out, np.float32(1.0 - lam), out=out)
    step = cache_rows(r.shape[1])
    tmp = np.empty((min(step, b - a), r.shape[1]), np.float32)
    for s in range(0, b - a, step):
        e = min(s + step, b - a)
        t = np.add(r[s:e], np.float32(1.0), out=tmp[:e - s])
        np.multiply(t, t, out=t)
        np.divide(t, row_max[a + s:a + e, None], out=t)
        np.multiply(t, np.float32(lam), out=t)
        np.add(out[s:e], t, out=out[s:e])
    return out


# ----------------------------------------------------------------- features API
def _check_features(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (images x dims) array, got shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    for s in range(0, len(x), 8192):
        norm2 = np.einsum("ij,ij->i", x[s:s + 8192], x[s:s + 8192])
        if not np.isfinite(norm2).all():
            raise ValueError(f"{name} hold NaN or infinite values")
        worst = int(np.argmax(np.abs(norm2 - 1.0)))
        if abs(norm2[worst] - 1.0) > 2e-3:
            raise ValueError(f"{name} must be L2-normalised (the distance is 1 - cos): row {s + worst} has "
                             f"norm {np.sqrt(norm2[worst]):.4f}")
    return x


class _Reranker:
    """The neighbour graphs and encodings of one (query, gallery) pair of sets, and the
    output per block of query rows."""

    def __init__(self, xq, xg, *, k1, k2, lam, device, block_size, variants=(None,), plan=None,
                 timings=None, progress=False) -> None:
        self.k1, self.k2, self.lam = k1, k2, lam
        sides = {"q": xq, "g": xg}
        if plan is not None and plan.need_enriched:
            sides["e"] = plan.e_reid
        self.products = _Products(device, sides)
        self.source = _QueryGallery(self.products, variants, plan)
        self.clock = PhaseClock(timings, self.products.synchronize)
        n_q, n_g = len(xq), len(xg)
        self.block = _block_rows(max(n_q, n_g), device, block_size)
        g_block = block_size if block_size is not None else (4096 if device.startswith("cuda") else 1024)
        self.graphs = _neighbour_graphs(self.products, self.source, max(k1 + 1, k2), self.block, g_block,
                                        _budget(device), self.clock, progress)
        with self.clock("encoding"):
            self.encodings = {v: _feature_encoding(g, self.source, v, k1, k2) for v, g in self.graphs.items()}
        self._out: dict[str, np.ndarray] = {}

    def _buffer(self, name: str, rows: int) -> np.ndarray:
        n_g = self.source.n_gallery
        buf = self._out.get(name)
        if buf is None or len(buf) < rows:
            buf = self._out[name] = np.empty((rows, n_g), np.float32)
        return buf[:rows]

    def blocks(self) -> Iterator[tuple[int, int, Iterator[tuple[object, np.ndarray]]]]:
        """(a, b, per-variant re-ranked blocks) over the query rows, in blocks of
        ``self.block``; each yielded block is a buffer reused by the next."""
        for a in range(0, self.source.n_query, self.block):
            b = min(a + self.block, self.source.n_query)
            yield a, b, self._variants(a, b)

    def _variants(self, a: int, b: int):
        with self.clock("output: products"):
            variants = self.source.blocks(a, b)
            item = next(variants, None)
        while item is not None:
            variant, r = item
            with self.clock("output: jaccard and combination"):
                out = _final_block(r, self.encodings[variant], self.graphs[variant].row_max, a, b, self.lam,
                                   self._buffer("final", b - a))
            yield variant, out
            with self.clock("output: products"):
                item = next(variants, None)


def rerank_blocks(query: np.ndarray, gallery: np.ndarray, *, k1: int = K1, k2: int = K2,
                  lambda_value: float = LAMBDA, block_size: int | None = None, device: str = "numpy",
                  timings: dict[str, float] | None = None,
                  progress: bool = False) -> Iterator[tuple[slice, np.ndarray]]:
    """Re-ranked distances between L2-normalised query and gallery features (distance
    1 - cos), block by block: yields (query rows, (rows, G) float32 block), the block a
    buffer that the next one overwrites (copy it to keep it). Equal to
    ``k_reciprocal_rerank`` on the 1 - cos matrices to float32 rounding.

    The neighbour pass runs at this call; the blocks are formed as they are consumed.
    block_size: query rows per block (default: about 96 MiB per (block x G) buffer, 1 GiB
    on CUDA) and gallery rows per gallery x gallery tile (default 1024, CUDA 4096).
    device: "numpy", "torch-cpu", "cuda", "auto" (see
    :func:`~reface_utils.method.retrieval.resolve_device`); with torch, the products and
    the selection of neighbours in the query x query and gallery x gallery tiles run on
    the device, the rest on the CPU. timings: a dict to receive wall seconds per phase."""
    k1, k2, lam = _params(k1, k2, lambda_value)
    xq, xg = _check_features("query features", query), _check_features("gallery features", gallery)
    if xq.shape[1] != xg.shape[1]:
        raise ValueError(f"query features are {xq.shape[1]}-d but gallery features {xg.shape[1]}-d")
    device = resolve_device(device)
    if len(xq) == 0 or len(xg) == 0:
        return iter([(slice(0, len(xq)), np.zeros((len(xq), len(xg)), np.float32))])
    ranker = _Reranker(xq, xg, k1=k1, k2=k2, lam=lam, device=device, block_size=block_size,
                       timings=timings, progress=progress)

    def gen():
        for a, b, variants in ranker.blocks():
            for _, out in variants:
                yield slice(a, b), out

    return gen()


def k_reciprocal_rerank_features(query: np.ndarray, gallery: np.ndarray, *, k1: int = K1, k2: int = K2,
                                 lambda_value: float = LAMBDA, block_size: int | None = None,
                                 device: str = "numpy") -> np.ndarray:
    """The whole (Q, G) float32 re-ranked matrix from features (:func:`rerank_blocks`
    gathered): for sets whose Q x G matrix fits in memory."""
    out = np.empty((len(query), len(gallery)), np.float32)
    for rows, block in rerank_blocks(query, gallery, k1=k1, k2=k2, lambda_value=lambda_value,
                                     block_size=block_size, device=device):
        out[rows] = block
    return out


# --------------------------------------------------------------- evaluation API
def rerank_configs(alpha: float = 0.75, *, enrichment: str | None = "min",
                   exclude_self: bool = False) -> list[RetrievalConfig]:
    """The re-ranked rows of the results table: "reid+rerank" and "fused+enriched+rerank"
    ("fused+rerank" without enrichment; with ``exclude_self`` also
    "fused+enriched+rerank (own copy left out)"), named as ``retrieval.default_configs``'
    rows with "+rerank"."""
    configs = [RetrievalConfig("reid+rerank", 1.0)]
    if enrichment is None:
        return configs + [RetrievalConfig("fused+rerank", alpha)]
    if enrichment != "min":
        raise ValueError(f"re-ranking supports the 'min' enrichment (GEFF) only, got {enrichment!r}")
    configs.append(RetrievalConfig("fused+enriched+rerank", alpha, "min"))
    if exclude_self:
        configs.append(RetrievalConfig("fused+enriched+rerank (own copy left out)", alpha, "min", exclude_self=True))
    return configs


def rerank_retrieval(
    query: FeatureSet,
    gallery: FeatureSet,
    configs: Sequence[RetrievalConfig] | None = None,
    *,
    modes: Sequence[str] = ("standard",),
    enriched: EnrichedGallery | None = None,
    alpha: float = 0.75,
    k1: int = K1,
    k2: int = K2,
    lambda_value: float = LAMBDA,
    exclude_same_camera: bool = True,
    topk: int = 0,
    threads: int | None = None,
    device: str = "numpy",
    block_size: int | None = None,
    progress: bool = True,
    timings: dict[str, float] | None = None,
) -> RetrievalResult:
    """Evaluate re-ranked configs the way :func:`~reface_utils.method.retrieval.run_retrieval`
    evaluates the others (same RetrievalResult: table, per-mode EvalResult, top-k).

    configs: default :func:`rerank_configs` (alpha; "min" enrichment when ``enriched`` has
    samples). For each config the ReID distances (1 - cos) are re-ranked over all queries
    and gallery images; with "min" enrichment the query x gallery distances are enriched
    first (an enriched gallery image counts as near to a query as its nearest sample, for
    the neighbour sets and the original-distance term alike; ``exclude_self`` leaves a
    query's own copies out of its row); with alpha < 1 the re-ranked distances are then
    fused with the face distances (not re-ranked) as ``fusion.fuse`` does. The modes
    (standard / CC / SC) filter the gallery at evaluation, after re-ranking, exactly as
    for the other configs. alpha is only used for the default configs.
    device: "numpy" (default), "torch-cpu", "cuda", "auto"; block_size: query rows per block.
    timings: a dict to receive wall seconds per phase.
    """
    k1, k2, lam = _params(k1, k2, lambda_value)
    if configs is None:
        has_samples = enriched is not None and len(enriched) > 0
        configs = rerank_configs(alpha, enrichment="min" if has_samples else None)
    configs = list(configs)
    for c in configs:
        if c.alpha == 0.0:
            raise ValueError(f"config {c.name!r}: alpha = 0 (face only) has no ReID distance to re-rank")
        if c.enrichment not in (None, "min"):
            raise ValueError(f"config {c.name!r}: re-ranking supports the 'min' enrichment (GEFF) only, "
                             f"got {c.enrichment!r}")
    plan = plan_retrieval(query, gallery, configs, modes=modes, enriched=enriched,
                          exclude_same_camera=exclude_same_camera, topk=topk, threads=threads, device="numpy")
    _check_features("query ReID features", query.reid)
    _check_features("gallery ReID features", gallery.reid)
    device = resolve_device(device)

    def variant(c: RetrievalConfig):
        return c.exclude_self if c.enrichment == "min" and plan.n_enriched else None

    variants = sorted({variant(c) for c in configs}, key=lambda v: (v is not None, bool(v)))
    ranker = _Reranker(query.reid, gallery.reid, k1=k1, k2=k2, lam=lam, device=device, block_size=block_size,
                       variants=variants, plan=plan, timings=timings, progress=progress)
    clock = ranker.clock
    face_buf = None

    def scored() -> Iterator[BlockScores]:
        nonlocal face_buf
        for a, b, blocks in ranker.blocks():
            rows = np.arange(a, b)
            face = None
            if plan.need_face:
                with clock("face"):
                    face_buf = face_buf if face_buf is not None and len(face_buf) >= b - a else \
                        np.empty((b - a, plan.n_gallery), np.float32)
                    face = face_buf[:b - a]
                    cameras = (plan.cameras, query.camids[a:b]) if plan.cameras is not None else None
                    face_distance_into(face, query.face[a:b], query.has_face[a:b], plan.g_face, cameras)
            metrics, top = {}, {}
            for v, dist in blocks:
                # ReID-only configs first; the last fused one may overwrite the block (no buffer)
                mine = sorted((c for c in configs if variant(c) == v), key=lambda c: c.alpha < 1.0)
                last = max((i for i, c in enumerate(mine) if c.alpha < 1.0), default=-1)
                for i, config in enumerate(mine):
                    with clock("fusion"):
                        out = dist if config.alpha == 1.0 else fuse(
                            dist, face, config.alpha, out=dist if i == last else ranker._buffer("fused", b - a))
                    with clock("metrics"):
                        metrics[config.name] = plan.scorers[config.name].score_block(out, rows)
                    if plan.topk:
                        with clock("top-k"):
                            top[config.name] = top_k(out, plan.topk)
            yield BlockScores(rows, metrics, top)

    n_blocks = -(-len(query) // ranker.block)
    return merge_blocks(plan, tqdm(scored(), total=n_blocks, desc="re-ranking: scoring", unit="block",
                                   disable=not progress))


def combine_results(*results: RetrievalResult) -> RetrievalResult:
    """One RetrievalResult from several (e.g. ``run_retrieval``'s and
    ``rerank_retrieval``'s on the same sets): tables concatenated, config names unique."""
    names = [name for r in results for name in r.table["config"].unique()]
    if len(set(names)) != len(names):
        raise ValueError(f"config names must be unique across the results, got {names}")
    table = pd.concat([r.table for r in results], ignore_index=True)
    merged = RetrievalResult(table, {}, {})
    for r in results:
        merged.results.update(r.results)
        merged.topk.update(r.topk)
    return merged
