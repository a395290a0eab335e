"""The retrieval inputs and their checks: each side's features and labels
(:class:`FeatureSet`), the enriched samples (:class:`EnrichedGallery`), the configurations
of one run (:class:`RetrievalConfig`, :func:`default_configs`, ``ENRICHMENT_KINDS``) and
the check that they fit together (``_check_configs``, run by ``plan_retrieval``).

Each container checks itself on construction (shapes, row counts, float32 C-order
features); how they fit together is checked once per run, when the plan is made.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..fusion import EnrichmentLayout

__all__ = [
    "FeatureSet",
    "EnrichedGallery",
    "RetrievalConfig",
    "default_configs",
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
        _check_rows(self, len(self.reid), "", ("pids", "camids", "clothes_ids"), optional=("clothes_ids",))

    def __len__(self) -> int:
        return len(self.reid)


def _check_rows(obj, n: int, what: str, names: Sequence[str], *, optional: Sequence[str] = (),
                int64: Sequence[str] = (), labels: dict[str, str] | None = None) -> None:
    """Check ``obj``'s per-image arrays in place: the label fields ``names`` (n entries each;
    ``optional`` ones may be None; ``int64`` ones made int64; ``labels``: a field's name in
    errors, when not its own), then the face embeddings and has_face (``what`` prefixes
    their names in errors)."""
    for name in names:
        values = getattr(obj, name)
        if values is None and name in optional:
            continue
        values = _labels((labels or {}).get(name, name), values, n)
        setattr(obj, name, values.astype(np.int64) if name in int64 else values)
    face, has_face = obj.face, obj.has_face
    if face is not None:
        face = _float32_rows(f"{what}face embeddings", face, n)
        if has_face is None:
            has_face = face.any(axis=1)
    if has_face is not None:
        has_face = _labels(f"{what}has_face", has_face, n).astype(bool)
    obj.face, obj.has_face = face, has_face


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
    table_row: (E,) the enrichment table row each sample came from (``from_table``, which
        orders the samples as retrieval lays them out -- grouped by gallery image, see
        fusion.EnrichmentLayout -- so that no per-call reordering copy is needed). Ranked
        columns of appended samples refer to this order: see :meth:`columns_by_table_row`.
    """

    gallery_index: np.ndarray
    reid: np.ndarray
    pids: np.ndarray
    source_query: np.ndarray
    face: np.ndarray | None = None
    has_face: np.ndarray | None = None
    table_row: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.gallery_index = np.asarray(self.gallery_index, dtype=np.int64).ravel()
        n = len(self.gallery_index)
        self.reid = _float32_rows("enriched reid features", self.reid, n)
        _check_rows(self, n, "enriched ", ("pids", "source_query", "table_row"), optional=("table_row",),
                    int64=("source_query", "table_row"), labels={"pids": "enriched pids"})

    def __len__(self) -> int:
        return len(self.gallery_index)

    def columns_by_table_row(self, columns: np.ndarray, n_gallery: int) -> np.ndarray:
        """Ranked columns (``RetrievalResult.topk`` of an "append" config) with each appended
        sample, column ``n_gallery + e``, renumbered ``n_gallery + table_row[e]`` -- its
        enrichment-table row, the numbering ``visualise.appended_samples`` expects. Gallery
        columns and samples without a table row are unchanged."""
        columns = np.array(columns, dtype=np.int64, copy=True)
        if self.table_row is not None:
            appended = columns >= n_gallery
            columns[appended] = n_gallery + self.table_row[columns[appended] - n_gallery]
        return columns

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
        order = EnrichmentLayout.of(g_idx).order  # retrieval's layout: the gathers below do it
        q_idx, g_idx, pids = q_idx[order], g_idx[order], np.asarray(pids)[order]
        num_queries = len(source) - query_offset if num_queries is None else num_queries
        local = q_idx - query_offset
        source_query = np.where((local >= 0) & (local < num_queries), local, -1)
        face = source.face[q_idx] if source.face is not None else None
        has_face = source.has_face[q_idx] if source.has_face is not None else None
        return cls(g_idx, source.reid[q_idx], pids, source_query, face, has_face, table_row=order)


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
