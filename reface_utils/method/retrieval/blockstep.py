"""The block step, written once for every backend: products, enrichment variants, fusion,
metrics and top-k of one :class:`~.contract.QueryBlock`.

A backend (``numpy_backend.NumpyBackend``, ``torch_backend.TorchBackend``) supplies the
arrays and the primitive operations; what is computed from them, and in which order, is
here only, so that both backends apply the same rules with the same float32 operations:

* the ReID block is (b, G + E): gallery columns, then the enriched samples in
  ``fusion.EnrichmentLayout`` order (the order of their product);
* "min" (GEFF): per variant -- own copies kept, or left out (+inf over them) -- the
  smallest distance of each gallery image's samples (``EnrichmentLayout.lowest``), which
  then lowers that image's ReID distance; fusion after;
* "append": the samples as gallery columns G..G+E-1 in sample order, ReID and face
  distances fused alike; a query's own copies are left out by the metrics (``exclude``);
* fusion: ``fusion.fuse_into`` (the three float32 passes of ``fusion.fuse``); alpha = 1
  and alpha = 0 give one input exactly (a view, no arithmetic).

Backend interface (duck-typed): ``xp`` (numpy or torch: ``minimum``, ``multiply``,
``add`` with ``out=``), ``synchronize`` (None or a callable, for the timer), ``session()``
(a context for the whole step), ``buffer(name, rows, cols)``, ``index(name, array)`` (a
plan-level index array as the backend indexes with it), ``take_cols(x, cols, out)``,
``assign(dst, src)``, ``fill(x, rows, cols, value)`` (rows, cols: numpy),
``by_rows(work, n_rows, width)`` (``work(a, b)`` over row ranges that cover the block),
``queries(block)``, ``reid_distance(queries, side, out)`` (side "gallery" or "enriched"),
``face_distance(queries, out)`` (out: (b, plan.face_width)), ``score(scorer, dist, rows,
exclude)`` -> (BlockMetrics, ranking) and ``top_k(dist, k, ranking)`` -> numpy (b, k).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..fusion import EnrichmentLayout, fuse_into
from .contract import BlockScores, PhaseClock, QueryBlock, RetrievalPlan
from .inputs import RetrievalConfig

__all__ = ["score_block_on", "lowest_per_variant", "config_distances"]


def score_block_on(backend, plan: RetrievalPlan, block: QueryBlock,
                   timings: dict[str, float] | None = None) -> BlockScores:
    """retrieval.score_block with the given backend (see the module docstring)."""
    clock = PhaseClock(timings, backend.synchronize)
    nb, n_gallery = len(block), plan.n_gallery
    rows = np.asarray(block.rows, dtype=np.int64)
    with backend.session():
        queries = backend.queries(block)
        reid = backend.buffer("reid", nb, plan.width)
        with clock("reid gallery product"):
            backend.reid_distance(queries, "gallery", reid[:, :n_gallery])
        if plan.need_enriched:
            with clock("reid enriched product"):
                backend.reid_distance(queries, "enriched", reid[:, n_gallery:])  # layout order
        face = None
        if plan.need_face:
            face = backend.buffer("face", nb, plan.face_width)
            with clock("face"):
                backend.face_distance(queries, face)
        own = plan.own_copies(rows) if plan.need_enriched else None  # (block row, sample) pairs
        with clock("fusion and enrichment"):
            appended = None
            if plan.append:  # the samples as gallery columns G + e: sample order
                appended = backend.take_cols(reid, backend.index("appended", n_gallery + plan.e_layout.position),
                                             backend.buffer("appended", nb, plan.n_enriched))
            variants = {c.exclude_self for c in plan.configs if c.enrichment == "min"} if plan.n_enriched else ()
            lowest = lowest_per_variant(backend, plan.e_layout, reid[:, n_gallery:], own, variants)
        # The last config that reads the ReID distances may overwrite them in place.
        last_reid = max((i for i, c in enumerate(plan.configs) if c.alpha > 0.0), default=-1)
        metrics, top = {}, {}
        for i, config in enumerate(plan.configs):
            with clock("fusion and enrichment"):
                dist = config_distances(backend, plan, config, reid, appended, face, lowest, reid_free=i == last_reid)
                exclude = None
                if config.enrichment == "append" and config.exclude_self and plan.n_enriched:
                    exclude = (own[0], n_gallery + own[1])
            with clock("metrics"):
                metrics[config.name], ranking = backend.score(plan.scorers[config.name], dist, rows, exclude)
            if plan.topk:
                with clock("top-k"):
                    top[config.name] = backend.top_k(dist, plan.topk, ranking)
    return BlockScores(rows, metrics, top)


def lowest_per_variant(backend, layout: EnrichmentLayout, samples, own: tuple[np.ndarray, np.ndarray] | None,
                       variants: Iterable[bool]) -> dict:
    """Per min-enrichment variant (own copies kept: False, left out: True) the smallest ReID
    distance of each group of enriched samples, (b, groups). ``samples``: the block's
    distances to the samples in layout order; ``own``: (block row, sample) pairs of the
    rows' own copies. The True variant writes +inf over those in ``samples``."""
    lowest = {}
    for exclude_self in sorted(variants):  # False first: True then writes +inf over own copies
        if exclude_self and len(own[0]):
            backend.fill(samples, own[0], layout.position[own[1]], np.inf)
        out = backend.buffer(f"lowest {exclude_self}", samples.shape[0], len(layout.cols))
        lowest[exclude_self] = layout.lowest(samples, out=out, xp=backend.xp)
    return lowest


def config_distances(backend, plan: RetrievalPlan, config: RetrievalConfig, reid, appended, face, lowest: dict, *,
                     reid_free: bool):
    """The config's (b, width) distance block. A view of the ReID or face distances when
    nothing is mixed in; ``reid_free``: no later config reads the ReID distances, so they
    are overwritten (no copy, one pass less). ``appended``: the ReID distances to the
    enriched samples in sample order ("append"). Elementwise the same operations as the
    full-matrix functions (apply_enrichment, then fuse), so the same bits."""
    nb, n_gallery, alpha = len(reid), plan.n_gallery, config.alpha
    if config.enrichment == "append" and plan.n_enriched:
        if alpha == 0.0:
            return face[:, :n_gallery + plan.n_enriched]
        out = backend.buffer("work", nb, n_gallery + plan.n_enriched)
        if alpha == 1.0:
            backend.assign(out[:, :n_gallery], reid[:, :n_gallery])
            backend.assign(out[:, n_gallery:], appended)
        else:
            _fuse_rows(backend, reid[:, :n_gallery], face[:, :n_gallery], alpha, out[:, :n_gallery])
            fuse_into(appended, face[:, n_gallery:], alpha, out[:, n_gallery:], xp=backend.xp)
        return out
    if config.enrichment == "min" and alpha == 0.0:  # GEFF enriches the ReID distances only
        return face[:, :n_gallery]
    if config.enrichment != "min" or not plan.n_enriched:
        if alpha == 1.0:
            return reid[:, :n_gallery]
        if alpha == 0.0:
            return face[:, :n_gallery]
        out = reid[:, :n_gallery] if reid_free else backend.buffer("work", nb, n_gallery)
        return _fuse_rows(backend, reid[:, :n_gallery], face[:, :n_gallery], alpha, out)
    # GEFF min-enrichment: the ReID distance of each gallery image with samples becomes the
    # smallest of its own and its samples'; then fusion. Row range by row range (numpy:
    # chunks that fit the cache, so that the column gather, the minimum, the write-back and
    # the fusion passes all find the rows in cache; torch: the whole block at once).
    cols, low = backend.index("enriched columns", plan.e_layout.cols), lowest[config.exclude_self]
    face = face[:, :n_gallery] if face is not None else None
    out = reid[:, :n_gallery] if reid_free else backend.buffer("work", nb, n_gallery)
    gathered = backend.buffer("enriched", nb, len(plan.e_layout.cols))
    xp = backend.xp

    def rows(a: int, b: int) -> None:
        enriched = backend.take_cols(reid[a:b], cols, gathered[a:b])
        xp.minimum(enriched, low[a:b], out=enriched)
        if not reid_free:
            backend.assign(out[a:b], reid[a:b, :n_gallery])
        out[a:b, cols] = enriched
        if alpha < 1.0:
            fuse_into(out[a:b], face[a:b], alpha, out[a:b], xp=xp)

    backend.by_rows(rows, nb, n_gallery)
    return out


def _fuse_rows(backend, reid, face, alpha: float, out):
    """fuse_into over the backend's row ranges (elementwise: the bits do not depend on the split)."""
    backend.by_rows(lambda a, b: fuse_into(reid[a:b], face[a:b], alpha, out[a:b], xp=backend.xp),
                    len(out), out.shape[1])
    return out
