"""The r = -cos distances that the block-wise re-ranking reads: :class:`_Products` (blocks
between feature sets, numpy or torch, buffers reused) and :class:`_QueryGallery` (the
query x gallery block in each enrichment variant, and any (image, image) pairs as dot
products)."""
from __future__ import annotations

import warnings
from typing import Iterator, Sequence

import numpy as np

from ...core.arrays import concat_ranges
from ..fusion import reid_distance
from ..retrieval import RetrievalPlan, Workspace
from ..retrieval.blockstep import lowest_per_variant
from ..retrieval.numpy_backend import NumpyBackend
from .params import _CHUNK


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
