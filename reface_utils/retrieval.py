"""The post-feature stage, block-wise: distances, enrichment, fusion and metrics.

Given ReID features, face embeddings and labels of a query and a gallery set, and
optionally the enriched samples of ``enrich.py``, :func:`run_retrieval` evaluates several
configurations (ReID only, face only, fused, fused + enriched, ...) in one pass over
blocks of queries. Per block, the ReID and face distances are computed once (float32
matrix products into reused buffers) and every configuration is derived from them and fed
to a :class:`~reface_utils.metrics.MetricAccumulator`. No Q x G matrix, float64 or
otherwise, and no argsort of one, is ever held: at LaST scale (10,176 x 125,353, 4096-d)
the stage runs in a few hundred MB beyond the features themselves.

Enrichment, two formulations, both in the reference code (read for facts):

* ``"min"`` (GEFF, the later README numbers): the enriched samples are kept apart from the
  gallery (``enriched_gallery`` folder); ``Scripts/inference.py::apply_enriched_gallery``
  lowers the ReID distance of each gallery image to the smallest distance of the samples
  attached to it, and only then fuses with the face distances (which are not enriched).
  Evaluation sees the original gallery only, so the CC rule on camera -1 never fires.
* ``"append"`` (ReFace's first release, commit 43cc526): the enriched samples are copied
  into the test gallery as new images with the predicted identity, a camera id that no
  real camera has (LTCC ``c0`` -> camid -1) and a clothes label of their own. They are
  ranked like any gallery image (ReID and face distances), and in CC mode a query whose
  only good matches are such samples is skipped (GEFF's camid -1 rule). Here they are
  appended as gallery columns G..G+E-1 with camid -1 and a clothes id no query has.

In both, a query that was enriched finds its own copy (distance -1 in ReID, 0 in face)
attached to its face match; ``exclude_self=True`` leaves that copy out ("min": ignored in
the minimum; "append": removed from that query's ranking), to show how much of the gain
is transductive.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from .fusion import (
    CameraIndex,
    FaceGallery,
    _face_distance_into,
    _group_by_gallery,
    _lowest_enriched,
    _self_pairs,
    fuse,
    reid_distance,
)
from .metrics import ENRICHED_CAMID, EvalResult, MetricAccumulator
from .progress import progress_bar

__all__ = [
    "FeatureSet",
    "EnrichedGallery",
    "RetrievalConfig",
    "RetrievalResult",
    "default_configs",
    "run_retrieval",
    "top_k",
]

ENRICHMENT_KINDS = (None, "min", "append")


def _float32_rows(name: str, x: np.ndarray, n: int | None = None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples x dims), got shape {x.shape}")
    if n is not None and len(x) != n:
        raise ValueError(f"{name} has {len(x)} rows, expected {n}")
    return np.ascontiguousarray(x, dtype=np.float32)  # no copy when already float32 C-order


@dataclass(eq=False)
class FeatureSet:
    """Features and labels of one side (query or gallery), one row per image.

    reid: (N, D) L2-normalised ReID features (float32 avoids a copy).
    face: (N, F) L2-normalised face embeddings, zero rows where no face (optional).
    has_face: (N,) bool; defaults to "embedding row is non-zero".
    """

    reid: np.ndarray
    pids: np.ndarray
    camids: np.ndarray
    clothes_ids: np.ndarray | None = None
    face: np.ndarray | None = None
    has_face: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.reid = _float32_rows("reid features", self.reid)
        n = len(self.reid)
        self.pids = _labels("pids", self.pids, n)
        self.camids = _labels("camids", self.camids, n)
        if self.clothes_ids is not None:
            self.clothes_ids = _labels("clothes_ids", self.clothes_ids, n)
        if self.face is not None:
            self.face = _float32_rows("face embeddings", self.face, n)
            if self.has_face is None:
                self.has_face = self.face.any(axis=1)
        if self.has_face is not None:
            self.has_face = _labels("has_face", self.has_face, n).astype(bool)

    def __len__(self) -> int:
        return len(self.reid)


def _labels(name: str, values, n: int) -> np.ndarray:
    values = np.asarray(values).ravel()
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries for {n} images")
    return values


@dataclass(eq=False)
class EnrichedGallery:
    """The enriched samples (query images attached to a gallery image), as an index.

    gallery_index: (E,) gallery image each sample is attached to (its face match).
    reid: (E, D) the samples' ReID features (their query's features).
    pids: (E,) identity given to the sample (used by the "append" formulation).
    source_query: (E,) index of the sample's query among the evaluated queries, or -1 if
        it is not one of them (e.g. PRCC: samples made from the other query set).
    face, has_face: the samples' face embeddings (needed by "append" with alpha < 1).
    """

    gallery_index: np.ndarray
    reid: np.ndarray
    pids: np.ndarray
    source_query: np.ndarray
    face: np.ndarray | None = None
    has_face: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.gallery_index = np.asarray(self.gallery_index, dtype=np.int64).ravel()
        n = len(self.gallery_index)
        self.reid = _float32_rows("enriched reid features", self.reid, n)
        self.pids = _labels("enriched pids", self.pids, n)
        self.source_query = _labels("source_query", self.source_query, n).astype(np.int64)
        if self.face is not None:
            self.face = _float32_rows("enriched face embeddings", self.face, n)
            if self.has_face is None:
                self.has_face = self.face.any(axis=1)
        if self.has_face is not None:
            self.has_face = _labels("enriched has_face", self.has_face, n).astype(bool)

    def __len__(self) -> int:
        return len(self.gallery_index)

    @classmethod
    def from_table(
        cls,
        table: pd.DataFrame,
        source: FeatureSet,
        gallery: FeatureSet,
        *,
        query_offset: int = 0,
        num_queries: int | None = None,
    ) -> "EnrichedGallery":
        """From ``enrich_gallery``'s table (columns ``query_index``, ``gallery_index``,
        optional ``pid``) and the query set it was built from.

        The evaluated queries are ``source`` rows ``query_offset .. query_offset +
        num_queries - 1`` (default: all of ``source``); this maps each sample to its query
        for ``exclude_self``. PRCC: build the enrichment from B and C together, then call
        this once with the B rows and once with the C rows.
        """
        for column in ("query_index", "gallery_index"):
            if column not in table.columns:
                raise ValueError(f"enrichment table lacks the column {column!r} (columns: {list(table.columns)})")
        q_idx = table["query_index"].to_numpy(dtype=np.int64)
        g_idx = table["gallery_index"].to_numpy(dtype=np.int64)
        if len(q_idx) and (q_idx.min() < 0 or q_idx.max() >= len(source)):
            raise ValueError(f"query_index must lie in 0..{len(source) - 1} (the enrichment's query set)")
        if len(g_idx) and (g_idx.min() < 0 or g_idx.max() >= len(gallery)):
            raise ValueError(f"gallery_index must lie in 0..{len(gallery) - 1}")
        pids = table["pid"].to_numpy() if "pid" in table.columns else gallery.pids[g_idx]
        num_queries = len(source) - query_offset if num_queries is None else num_queries
        local = q_idx - query_offset
        source_query = np.where((local >= 0) & (local < num_queries), local, -1)
        face = source.face[q_idx] if source.face is not None else None
        has_face = source.has_face[q_idx] if source.has_face is not None else None
        return cls(g_idx, source.reid[q_idx], pids, source_query, face, has_face)


@dataclass(frozen=True)
class RetrievalConfig:
    """One line of the results table.

    alpha: weight of ReID in the fused distance (1: ReID only, 0: face only).
    enrichment: None, "min" (GEFF) or "append" (ReFace v1); see the module docstring.
    exclude_self: leave each query's own enriched copy out.
    cc_skip_enriched_only: GEFF's CC rule (skip a query whose good matches are all
        appended samples, camera -1). ReFace v1 evaluated without it: set False with
        "append" to reproduce its numbers.
    """

    name: str
    alpha: float = 1.0
    enrichment: str | None = None
    exclude_self: bool = False
    cc_skip_enriched_only: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"config {self.name!r}: alpha must lie in [0, 1], got {self.alpha}")
        if self.enrichment not in ENRICHMENT_KINDS:
            raise ValueError(f"config {self.name!r}: enrichment must be one of {ENRICHMENT_KINDS}")
        if self.exclude_self and self.enrichment is None:
            raise ValueError(f"config {self.name!r}: exclude_self needs an enrichment")


def default_configs(alpha: float = 0.75, *, enrichment: str | None = "min", exclude_self: bool = True) -> list[RetrievalConfig]:
    """ReID only, face only, fused, fused + enriched (+ the same without own copies)."""
    configs = [
        RetrievalConfig("reid", 1.0),
        RetrievalConfig("face", 0.0),
        RetrievalConfig("fused", alpha),
    ]
    if enrichment is not None:
        configs.append(RetrievalConfig("fused+enriched", alpha, enrichment))
        if exclude_self:
            configs.append(RetrievalConfig("fused+enriched (own copy left out)", alpha, enrichment, exclude_self=True))
    return configs


@dataclass(eq=False)
class RetrievalResult:
    """table: one row per (config, mode): top1/5/10/20, mAP (fractions), evaluated, skipped.
    results[(config, mode)]: the EvalResult (CMC curve, first good rank per query).
    topk[config]: (Q, k) gallery columns of each query's best k matches, best first
    (columns >= G are the appended enriched samples G + e). Empty when k = 0."""

    table: pd.DataFrame
    results: dict[tuple[str, str], EvalResult]
    topk: dict[str, np.ndarray] = field(default_factory=dict)


def run_retrieval(
    query: FeatureSet,
    gallery: FeatureSet,
    configs: Sequence[RetrievalConfig] | None = None,
    *,
    modes: Sequence[str] = ("standard",),
    enriched: EnrichedGallery | None = None,
    exclude_same_camera: bool = True,
    block_size: int | None = None,
    topk: int = 0,
    threads: int | None = None,
    progress: bool = True,
    timings: dict[str, float] | None = None,
    metric_states: dict[str, MetricAccumulator] | None = None,
) -> RetrievalResult:
    """Evaluate every config and mode in one block-wise pass over the queries.

    block_size: queries per block (default: about 192 MiB per distance buffer, 16..1024).
    threads: threads for the metric counting (default: up to 4, the CPU count).
    exclude_same_camera: the face convention "same camera -> distance +inf".
    timings: a dict to receive wall seconds per phase ("reid gallery product",
        "reid enriched product", "face", "fusion and enrichment", "metrics", "top-k").
    metric_states: a dict to receive each config's MetricAccumulator, by config name
        (the Ray engine, ``cluster.py``, merges the per-query states of partial runs).
    """
    clock = _PhaseClock(timings)
    configs = list(configs) if configs is not None else default_configs(enrichment="min" if enriched is not None else None)
    _check_configs(configs, query, gallery, enriched, modes)
    n_query, n_gallery = len(query), len(gallery)
    n_enriched = len(enriched) if enriched is not None else 0
    need_face = any(c.alpha < 1.0 for c in configs)
    need_enriched = any(c.enrichment is not None for c in configs) and n_enriched > 0
    append = any(c.enrichment == "append" for c in configs) and n_enriched > 0
    width = n_gallery + (n_enriched if need_enriched else 0)
    face_width = n_gallery + (n_enriched if append else 0)
    if block_size is None:
        block_size = int(np.clip((192 << 20) // (4 * max(width, 1)), 16, 1024))
    threads = threads if threads is not None else min(4, os.cpu_count() or 1)

    # Prepared once: face galleries, cameras grouped, enrichment grouped.
    g_face = FaceGallery(gallery.face, gallery.has_face) if need_face else None
    e_face = FaceGallery(enriched.face, enriched.has_face) if append and need_face else None
    cameras = CameraIndex(gallery.camids) if need_face and exclude_same_camera else None
    if need_enriched:
        e_order, e_starts, e_cols = _group_by_gallery(enriched.gallery_index)
        e_pos = np.argsort(e_order)  # sample -> position in e_order
        self_q, self_e = _self_pairs(np.arange(n_query), enriched.source_query)
        self_start = np.searchsorted(self_q, np.arange(n_query + 1))  # pairs of query q: self_start[q]:self_start[q+1]
    # Queries with a face first: their blocks need face products, the others a constant.
    order = np.arange(n_query)
    if need_face:
        order = np.concatenate([np.flatnonzero(query.has_face), np.flatnonzero(~query.has_face)])

    accumulators = {c.name: _accumulator(c, query, gallery, enriched, modes, threads) for c in configs}
    top = {c.name: np.empty((n_query, min(topk, _config_width(c, n_gallery, n_enriched))), np.int64) for c in configs} if topk else {}

    reid_buf = np.empty((block_size, width), np.float32)
    face_buf = np.empty((block_size, face_width), np.float32) if need_face else None
    mixed = any(c.enrichment is not None or 0.0 < c.alpha < 1.0 for c in configs)
    work_buf = np.empty((block_size, max(width, face_width)), np.float32) if mixed else None

    for start in progress_bar(range(0, n_query, block_size), desc="retrieval", unit="block", disable=not progress):
        rows = order[start:start + block_size]
        nb = len(rows)
        q_reid = query.reid[rows]
        reid = reid_buf[:nb]
        with clock("reid gallery product"):
            reid_distance(q_reid, gallery.reid, out=reid[:, :n_gallery])
        if need_enriched:
            with clock("reid enriched product"):
                reid_distance(q_reid, enriched.reid, out=reid[:, n_gallery:])
        face = None
        if need_face:
            face = face_buf[:nb]
            with clock("face"):
                has_face, q_face = query.has_face[rows], query.face[rows]
                pairs = cameras.pairs(query.camids[rows]) if cameras is not None else None
                _face_distance_into(face[:, :n_gallery], q_face, has_face, g_face, pairs)
                if append:  # appended samples: camera -1 is nobody's camera, no exclusion
                    _face_distance_into(face[:, n_gallery:], q_face, has_face, e_face, None)
        if need_enriched:  # (block row, sample) pairs of each query's own enriched copies
            counts = self_start[rows + 1] - self_start[rows]
            block_self = (np.repeat(np.arange(nb), counts), self_e[_ranges(self_start[rows], counts)])
        lowest = {}
        for config in configs:
            with clock("fusion and enrichment"):
                dist, exclude = _config_block(config, reid, face, work_buf, n_gallery, nb)
                if config.enrichment == "min" and n_enriched:
                    if config.exclude_self not in lowest:
                        pairs = (block_self[0], e_pos[block_self[1]]) if config.exclude_self else None
                        lowest[config.exclude_self] = _lowest_enriched(reid[:, n_gallery:], e_order, e_starts, pairs)
                    enriched_reid = np.minimum(reid[:, e_cols], lowest[config.exclude_self])
                    if config.alpha == 1.0:
                        dist[:, e_cols] = enriched_reid
                    elif config.alpha > 0.0:
                        dist[:, e_cols] = fuse(enriched_reid, face[:, e_cols], config.alpha)
                if config.enrichment == "append" and config.exclude_self and n_enriched:
                    exclude = (block_self[0], n_gallery + block_self[1])
            with clock("metrics"):
                accumulators[config.name].add_block(dist, rows, exclude=exclude)
            if topk:
                with clock("top-k"):
                    top[config.name][rows] = top_k(dist, top[config.name].shape[1])

    if metric_states is not None:
        metric_states.update(accumulators)
    results: dict[tuple[str, str], EvalResult] = {}
    records = []
    for config in configs:
        for mode, res in accumulators[config.name].results().items():
            results[(config.name, mode)] = res
            records.append({"config": config.name, "alpha": config.alpha, "enrichment": config.enrichment or "",
                            **res.as_dict()})
    return RetrievalResult(pd.DataFrame.from_records(records), results, top)


class _PhaseClock:
    """Adds wall seconds per named phase into a caller's dict (no-op without one)."""

    def __init__(self, sink: dict[str, float] | None) -> None:
        self.sink = sink

    @contextmanager
    def __call__(self, phase: str):
        if self.sink is None:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sink[phase] = self.sink.get(phase, 0.0) + time.perf_counter() - start


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ranges starts[i] .. starts[i] + counts[i] - 1, vectorised."""
    total = int(counts.sum())
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + offsets


def _config_width(config: RetrievalConfig, n_gallery: int, n_enriched: int) -> int:
    return n_gallery + (n_enriched if config.enrichment == "append" else 0)


def _config_block(config, reid, face, work_buf, n_gallery, nb):
    """The config's distance block (a view of a shared buffer when nothing is mixed in);
    min-enrichment columns are patched by the caller."""
    width = n_gallery + (reid.shape[1] - n_gallery if config.enrichment == "append" else 0)
    if config.enrichment == "min":
        out = work_buf[:nb, :n_gallery]
        if config.alpha == 0.0:  # GEFF enriches the ReID distances only
            return face[:, :n_gallery], None
        return fuse(reid[:, :n_gallery], face[:, :n_gallery] if config.alpha < 1.0 else reid[:, :n_gallery],
                    config.alpha, out=out), None
    if config.alpha == 1.0:
        return reid[:, :width], None
    if config.alpha == 0.0:
        return face[:, :width], None
    return fuse(reid[:, :width], face[:, :width], config.alpha, out=work_buf[:nb, :width]), None


def _accumulator(config, query, gallery, enriched, modes, threads) -> MetricAccumulator:
    g_pids, g_camids, g_clothes = gallery.pids, gallery.camids, gallery.clothes_ids
    q_camids, q_clothes = query.camids, query.clothes_ids
    if config.enrichment == "append" and enriched is not None and len(enriched):
        g_pids = np.concatenate([g_pids, enriched.pids])
        if not np.issubdtype(g_camids.dtype, np.integer):  # e.g. camera names: codes >= 0
            _, codes = np.unique(np.concatenate([q_camids, g_camids]), return_inverse=True)
            q_camids, g_camids = codes[: len(q_camids)], codes[len(q_camids):]
        g_camids = np.concatenate([g_camids, np.full(len(enriched), ENRICHED_CAMID)])
        if g_clothes is not None and q_clothes is not None:
            # a clothes label of their own (as GEFF's copies get), never a query's
            _, codes = np.unique(np.concatenate([q_clothes, g_clothes]), return_inverse=True)
            q_clothes = codes[: len(q_clothes)]
            g_clothes = np.concatenate([codes[len(q_clothes):], np.full(len(enriched), -1)])
    return MetricAccumulator(query.pids, g_pids, q_camids, g_camids, q_clothes, g_clothes, modes=modes,
                             threads=threads, cc_skip_enriched_only=config.cc_skip_enriched_only)


def _check_configs(configs, query, gallery, enriched, modes) -> None:
    names = [c.name for c in configs]
    if not configs:
        raise ValueError("give at least one RetrievalConfig")
    if len(set(names)) != len(names):
        raise ValueError(f"config names must be unique, got {names}")
    if query.reid.shape[1] != gallery.reid.shape[1]:
        raise ValueError(f"query ReID features are {query.reid.shape[1]}-d, gallery ones {gallery.reid.shape[1]}-d")
    if any(c.alpha < 1.0 for c in configs):
        for side, fs in (("query", query), ("gallery", gallery)):
            if fs.face is None:
                raise ValueError(f"configs with alpha < 1 need face embeddings: the {side} FeatureSet has face=None")
    if any(c.enrichment is not None for c in configs) and enriched is None:
        raise ValueError("configs with enrichment need enriched=EnrichedGallery(...)")
    if enriched is not None and len(enriched):
        if enriched.reid.shape[1] != query.reid.shape[1]:
            raise ValueError("enriched ReID features must have the query features' dimension")
        if enriched.gallery_index.min() < 0 or enriched.gallery_index.max() >= len(gallery):
            raise ValueError(f"enriched.gallery_index must lie in 0..{len(gallery) - 1}")
        if any(c.enrichment == "append" and c.alpha < 1.0 for c in configs) and enriched.face is None:
            raise ValueError('"append" enrichment with alpha < 1 needs the enriched samples\' face embeddings')
    if any(m != "standard" for m in modes) and (query.clothes_ids is None or gallery.clothes_ids is None):
        raise ValueError(f"modes {tuple(modes)} need clothes ids on both query and gallery FeatureSets")


def top_k(dist: np.ndarray, k: int) -> np.ndarray:
    """Per row, the columns of the k smallest distances, ties broken by column (as the
    metrics do), without sorting whole rows. (rows, k) int64."""
    dist = np.asarray(dist)
    n_rows, width = dist.shape
    k = min(k, width)
    if k <= 0:
        return np.empty((n_rows, 0), np.int64)
    chunk = 256
    if width <= 8 * chunk or width // chunk < k:
        return np.argsort(dist, axis=1, kind="stable")[:, :k]
    # The k-th smallest chunk minimum bounds the k-th smallest value: at least k entries
    # (one per chunk) are <= it, and entries below it lie in fewer than k chunks.
    chunk_min = np.minimum.reduceat(dist, np.arange(0, width, chunk), axis=1)
    bound = np.partition(chunk_min, k - 1, axis=1)[:, k - 1]
    out = np.empty((n_rows, k), np.int64)
    for r in range(n_rows):
        row = dist[r]
        below = np.flatnonzero(row < bound[r])
        below = below[np.lexsort((below, row[below]))]
        if len(below) < k:
            tied = np.flatnonzero(row == bound[r])[: k - len(below)]
            below = np.concatenate([below, tied])
        out[r] = below[:k]
    return out
