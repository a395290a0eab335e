"""Evaluation protocols on part of a split: single-shot galleries and camera subsets.

Both evaluate a subset of the gallery (and, for camera subsets, of the queries) with the
same retrieval code as the full split; what needs care is the enriched gallery, whose
samples point at gallery rows and source rows of the full split:

* **Camera subset** (VC-Clothes cameras 3 and 4, CAL's ``vcclothes_cc``): samples attached
  to a gallery image outside the subset are dropped with it; samples from any source
  (every query set enriches, as in the full run) are kept.
* **Single-shot** (PRCC's own protocol: one gallery image per identity, drawn at random):
  a sample carries its identity, so it is attached to the drawn image of that identity
  (the enriched gallery of a single-shot gallery holds every sample of the identity).

Metrics of the single-shot draws are averaged (docs/METHOD.md section 5).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .retrieval import EnrichedGallery, FeatureSet

__all__ = ["take_rows", "single_shot_galleries", "subset_enrichment"]


def take_rows(features: FeatureSet, rows: np.ndarray) -> FeatureSet:
    """The rows ``rows`` (indices, in that order) of a feature set."""
    rows = np.asarray(rows, np.int64)
    pick = lambda a: None if a is None else a[rows]  # noqa: E731
    return FeatureSet(features.reid[rows], features.pids[rows], features.camids[rows], pick(features.clothes_ids),
                      pick(features.face), pick(features.has_face))


def single_shot_galleries(pids: np.ndarray, draws: int = 10, seed: int = 0) -> list[np.ndarray]:
    """``draws`` galleries of one image per identity (sorted gallery indices), each image
    drawn uniformly among its identity's, from a fixed seed (the same draws every run)."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    pids = np.asarray(pids)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        order = rng.permutation(len(pids))
        _, first = np.unique(pids[order], return_index=True)  # a random image of each identity
        out.append(np.sort(order[first]))
    return out


def subset_enrichment(samples: pd.DataFrame, sources: FeatureSet, gallery: FeatureSet, *,
                      gallery_rows: np.ndarray, query_rows: np.ndarray, by_identity: bool) -> EnrichedGallery | None:
    """The enriched gallery of a subset: ``gallery_rows`` of ``gallery`` and, as the
    evaluated queries, ``query_rows`` of ``sources`` (both full-split indices).

    ``by_identity``: attach each sample to the subset's image of its identity (single-shot;
    ``samples["pid"]``, or its gallery image's identity); else to its own gallery image,
    dropping samples whose image is not in the subset. None when no sample is left.
    """
    gallery_rows = np.asarray(gallery_rows, np.int64)
    query_rows = np.asarray(query_rows, np.int64)
    g_old = samples["gallery_index"].to_numpy(np.int64)
    if by_identity:
        pid = samples["pid"].to_numpy() if "pid" in samples else gallery.pids[g_old]
        subset_pids = gallery.pids[gallery_rows]
        order = np.argsort(subset_pids, kind="stable")
        at = np.searchsorted(subset_pids[order], pid)
        found = (at < len(order)) & (subset_pids[order][np.minimum(at, len(order) - 1)] == pid)
        g_new = np.where(found, order[np.minimum(at, len(order) - 1)], -1)
    else:
        position = np.full(len(gallery), -1, np.int64)
        position[gallery_rows] = np.arange(len(gallery_rows))
        g_new = position[g_old]
    keep = g_new >= 0
    if not keep.any():
        return None
    # sources reordered: the evaluated queries first (query_offset 0), every other source after
    others = np.setdiff1d(np.arange(len(sources)), query_rows, assume_unique=False)
    source_order = np.concatenate([query_rows, others])
    new_index = np.empty(len(sources), np.int64)
    new_index[source_order] = np.arange(len(sources))
    table = samples[keep].copy()
    table["query_index"] = new_index[table["query_index"].to_numpy(np.int64)]
    table["gallery_index"] = g_new[keep]
    if by_identity and "pid" not in table:
        table["pid"] = gallery.pids[g_old[keep]]
    return EnrichedGallery.from_table(table.reset_index(drop=True), take_rows(sources, source_order),
                                      take_rows(gallery, gallery_rows), query_offset=0,
                                      num_queries=len(query_rows))
