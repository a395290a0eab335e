"""The neighbour pass of the block-wise re-ranking: one pass of block-wise products keeps,
per enrichment variant, every image's nearest (distance and index) and the largest
distance in its row (the classic's column maximum) -- :class:`_Graph` -- without an
N x N array."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ..retrieval import PhaseClock
from .neighbours import _amax, _merge, _Nearest, _push
from .products import _Products, _QueryGallery


@dataclass(eq=False)
class _Graph:
    """One variant's neighbour lists: ranks (N, K) nearest first, their distances r
    (= -cos, float32), and each row's largest (1 + r)^2 -- the classic's column maximum."""

    ranks: np.ndarray
    dist: np.ndarray
    row_max: np.ndarray


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
