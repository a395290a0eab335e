"""k-reciprocal re-ranking from L2-normalised features at any scale: :func:`rerank_blocks`
(block by block) and :func:`k_reciprocal_rerank_features` (the whole matrix).

The distance is the one the project ranks by: ``fusion.reid_distance`` gives r = -cos;
the re-ranking uses r + 1 = 1 - cos (torchreid's cosine distance), the same order, and
>= 0 so that the classic's squaring keeps it. Memory stays O(N k1 + block x N):

* one pass of block-wise products (``graph.py``) keeps, for each of the N = Q + G images,
  only its max(k1 + 1, k2) nearest (distance and index, ties to the lower index) and the
  largest distance in its row, which is the classic's column maximum (the matrix is
  symmetric); the gallery x gallery part is formed once per pair (upper triangle), each
  block updating its rows and its columns;
* steps 3-6 as the dense path (``encoding.py``); distances of expansion members that are
  not among a row's stored neighbours are recomputed as dot products;
* the output is formed per block of query rows: the products of those rows again (for the
  original-distance term), the Jaccard term from the sparse V.

:class:`_Reranker` holds one (query, gallery) pair's graphs and encodings; the
evaluation (``evaluation.py``) runs on it too.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ...core import checks
from ..fusion import cache_rows
from ..retrieval import PhaseClock, resolve_device
from .encoding import _encode, _Encoding, _jaccard_into
from .graph import _Graph, _neighbour_graphs
from .params import _CHUNK, K1, K2, LAMBDA, _params
from .products import _Products, _QueryGallery

__all__ = ["rerank_blocks", "k_reciprocal_rerank_features"]

_BLOCK_BYTES = 96 << 20       # one (block x N) float32 buffer on the CPU
_BLOCK_BYTES_CUDA = 1 << 30


def _budget(device: str) -> int:
    return _BLOCK_BYTES_CUDA if device.startswith("cuda") else _BLOCK_BYTES


def _block_rows(width: int, device: str, block_size: int | None) -> int:
    """Query rows per block: about _budget bytes per (rows x width) float32 buffer."""
    if block_size is not None:
        return checks.integer("block_size", block_size, 1)
    return int(min(1024, max(32, _budget(device) // (4 * max(width, 1)) // 32 * 32)))


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
