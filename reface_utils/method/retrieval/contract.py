"""The retrieval contract: what every backend reads and returns, and the steps around them.

The inputs (:class:`FeatureSet`, :class:`EnrichedGallery`, :class:`RetrievalConfig`), the
plan that every block of one run shares (:func:`plan_retrieval` -> :class:`RetrievalPlan`),
the unit of work (:func:`query_blocks` -> :class:`QueryBlock`), what scoring a block
returns (:class:`BlockScores`) and their exact merge (:func:`merge_blocks` ->
:class:`RetrievalResult`); with the device choice (:func:`resolve_device`), the reusable
buffers (:class:`Workspace`), the phase timer (:class:`PhaseClock`) and :func:`top_k`.
Imports no backend: ``blockstep.py`` scores a block with the numpy (``numpy_backend.py``)
or torch (``torch_backend.py``) primitives.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from ...core.arrays import concat_ranges
from ..fusion import PRODUCT_TILE, CameraIndex, EnrichmentLayout, FaceGallery, self_pairs
from ..metrics import ENRICHED_CAMID, BlockMetrics, EvalResult, MetricAccumulator

__all__ = [
    "BlockScores",
    "QueryBlock",
    "RetrievalPlan",
    "Workspace",
    "PhaseClock",
    "merge_blocks",
    "plan_retrieval",
    "query_blocks",
    "resolve_device",
    "FeatureSet",
    "EnrichedGallery",
    "RetrievalConfig",
    "RetrievalResult",
    "default_configs",
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


@dataclass(eq=False)
class RetrievalResult:
    """table: one row per (config, mode): top1/5/10/20, mAP (fractions), evaluated, skipped.
    results[(config, mode)]: the EvalResult (CMC curve, first good rank per query).
    topk[config]: (Q, k) gallery columns of each query's best k matches, best first
    (columns >= G are the appended enriched samples G + e). Empty when k = 0."""

    table: pd.DataFrame
    results: dict[tuple[str, str], EvalResult]
    topk: dict[str, np.ndarray] = field(default_factory=dict)


DEVICES = ("auto", "numpy", "cpu", "torch-cpu", "cuda")


def resolve_device(device: str = "auto") -> str:
    """The backend a ``device`` argument selects: "numpy" or a torch device string.

    "auto": "cuda" when torch sees a CUDA device, else "numpy". "numpy" / "cpu": numpy
    (OpenBLAS) on the CPU. "torch-cpu": torch on the CPU (the GPU code path, for tests and
    comparison). "cuda" or "cuda:N": torch on that GPU.
    """
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'auto', 'numpy', 'cuda', got {device!r}")
    name = device.strip().lower()
    if name in ("numpy", "cpu"):
        return "numpy"
    if name == "torch-cpu":
        return "cpu"
    if name == "auto" or name.startswith("cuda"):
        try:
            import torch
        except ImportError:  # torch is a dependency; a broken install falls back on auto
            if name == "auto":
                return "numpy"
            raise
        if name == "auto":
            return "cuda" if torch.cuda.is_available() else "numpy"
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: torch sees no CUDA device; use device='auto' or 'numpy'")
        return name
    raise ValueError(f"unknown device {device!r}; use one of {DEVICES} (or 'cuda:N')")


@dataclass(eq=False)
class QueryBlock:
    """Some queries' features (a unit of work for :func:`score_block`; picklable).

    rows: (b,) indices of these queries in the query set; the other arrays are their rows.
    """

    rows: np.ndarray
    reid: np.ndarray
    camids: np.ndarray
    face: np.ndarray | None = None
    has_face: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(eq=False)
class BlockScores:
    """What :func:`score_block` returns for one QueryBlock (picklable): per config the
    metric state (:class:`~reface_utils.method.metrics.BlockMetrics`) and the top-k columns."""

    rows: np.ndarray
    metrics: dict[str, BlockMetrics]
    topk: dict[str, np.ndarray]


@dataclass(eq=False)
class RetrievalPlan:
    """Everything the blocks of one run share, prepared once by :func:`plan_retrieval`:
    configs, gallery and enriched features, the face galleries, cameras and enrichment
    grouped, and the query labels (inside the metric scorers). Holds no query features
    and no per-block state; picklable (numpy arrays, plus torch tensors on ``device``
    once a torch block has run)."""

    configs: tuple[RetrievalConfig, ...]
    modes: tuple[str, ...]
    gallery: FeatureSet
    enriched: EnrichedGallery | None
    n_query: int
    topk: int
    threads: int
    device: str
    exclude_same_camera: bool
    scorers: dict[str, MetricAccumulator]
    need_face: bool
    need_enriched: bool
    append: bool
    g_face: FaceGallery | None = None
    e_face: FaceGallery | None = None
    cameras: CameraIndex | None = None
    # Enrichment: samples laid out by gallery image (fusion.EnrichmentLayout); their
    # product is formed in that order (as fusion.enriched_distance does), so that each
    # group's samples are contiguous runs of the block and no gather is needed.
    e_layout: EnrichmentLayout | None = None
    e_reid: np.ndarray | None = None  # the samples' ReID features in layout order
    self_e: np.ndarray | None = None       # sample of each (query, own sample) pair, by query
    self_start: np.ndarray | None = None   # pairs of query q: self_start[q]:self_start[q + 1]
    backend_state: dict = field(default_factory=dict)  # a backend's own, built on first use (torch: tensors)

    @property
    def n_gallery(self) -> int:
        return len(self.gallery)

    @property
    def n_enriched(self) -> int:
        return len(self.enriched) if self.enriched is not None else 0

    @property
    def width(self) -> int:
        """Columns of the ReID block: gallery, then enriched samples if any config uses them."""
        return self.n_gallery + (self.n_enriched if self.need_enriched else 0)

    @property
    def face_width(self) -> int:
        return self.n_gallery + (self.n_enriched if self.append else 0)

    def own_copies(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``rows``, sample) pairs of the enriched samples made from the queries
        ``rows`` (each query's own copies; sample numbering of ``enriched``)."""
        counts = self.self_start[rows + 1] - self.self_start[rows]
        return np.repeat(np.arange(len(rows)), counts), self.self_e[concat_ranges(self.self_start[rows], counts)]

    def default_block_size(self) -> int:
        """About 192 MiB per distance buffer in whole product tiles (fusion.PRODUCT_TILE,
        so that blocks give the bits of one full-matrix call), 512..1024 queries (GPU:
        768 MiB, up to 4096)."""
        per_row = 4 * max(self.width, 1)
        budget, most = ((768 << 20), 4096) if self.device.startswith("cuda") else ((192 << 20), 1024)
        tiles = max(1, budget // per_row // PRODUCT_TILE)
        return int(min(tiles * PRODUCT_TILE, most))


def plan_retrieval(
    query: FeatureSet,
    gallery: FeatureSet,
    configs: Sequence[RetrievalConfig] | None = None,
    *,
    modes: Sequence[str] = ("standard",),
    enriched: EnrichedGallery | None = None,
    exclude_same_camera: bool = True,
    topk: int = 0,
    threads: int | None = None,
    device: str = "auto",
) -> RetrievalPlan:
    """Check the inputs and prepare what every block needs (see :func:`run_retrieval`)."""
    configs = list(configs) if configs is not None else default_configs(enrichment="min" if enriched is not None else None)
    modes = tuple(modes)
    _check_configs(configs, query, gallery, enriched, modes)
    threads = threads if threads is not None else min(4, os.cpu_count() or 1)
    n_enriched = len(enriched) if enriched is not None else 0
    need_face = any(c.alpha < 1.0 for c in configs)
    need_enriched = any(c.enrichment is not None for c in configs) and n_enriched > 0
    append = any(c.enrichment == "append" for c in configs) and n_enriched > 0
    plan = RetrievalPlan(
        configs=tuple(configs), modes=modes, gallery=gallery, enriched=enriched, n_query=len(query),
        topk=int(topk), threads=threads, device=resolve_device(device), exclude_same_camera=exclude_same_camera,
        scorers={c.name: _accumulator(c, query, gallery, enriched, modes, threads) for c in configs},
        need_face=need_face, need_enriched=need_enriched, append=append,
    )
    if need_face:
        plan.g_face = FaceGallery(gallery.face, gallery.has_face)
        plan.e_face = FaceGallery(enriched.face, enriched.has_face) if append else None
        plan.cameras = CameraIndex(gallery.camids) if exclude_same_camera else None
    if need_enriched:
        plan.e_layout = EnrichmentLayout.of(enriched.gallery_index)
        order = plan.e_layout.order
        laid_out = np.array_equal(order, np.arange(len(order)))  # from_table's already are
        plan.e_reid = enriched.reid if laid_out else np.ascontiguousarray(enriched.reid[order])
        self_q, plan.self_e = self_pairs(np.arange(len(query)), enriched.source_query)
        plan.self_start = np.searchsorted(self_q, np.arange(len(query) + 1))
    return plan


def query_blocks(plan: RetrievalPlan, query: FeatureSet, block_size: int | None = None) -> Iterator[QueryBlock]:
    """The queries in consecutive blocks of ``block_size`` (views of the features, no
    copies). Block sizes that are multiples of fusion.PRODUCT_TILE (the default's are)
    give exactly the distances of one full-matrix call; others may differ in the last bit
    of a product (see fusion.PRODUCT_TILE)."""
    if len(query) != plan.n_query:
        raise ValueError(f"the plan was made for {plan.n_query} queries, got {len(query)}")
    block_size = block_size or plan.default_block_size()
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    for start in range(0, len(query), block_size):
        part = slice(start, min(start + block_size, len(query)))
        yield QueryBlock(
            np.arange(part.start, part.stop), query.reid[part], query.camids[part],
            query.face[part] if plan.need_face else None, query.has_face[part] if plan.need_face else None,
        )


class Workspace:
    """Distance buffers reused from block to block, and from call to call when passed to
    :func:`run_retrieval` (allocating and first touching 100s of MiB per block costs more
    than the arithmetic on them). Not for two threads at once."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, rows: int, cols: int) -> np.ndarray:
        """A C-contiguous float32 (rows, cols) buffer, the same memory on every call with
        this name and width (grown when more rows are asked for)."""
        key = (name, cols)
        buf = self._buffers.get(key)
        if buf is None or buf.shape[0] < rows:
            buf = self._buffers[key] = np.empty((rows, cols), np.float32)
        return buf[:rows]


def merge_blocks(plan: RetrievalPlan, blocks: Iterable[BlockScores]) -> RetrievalResult:
    """The RetrievalResult of all queries' blocks (any order; each query exactly once)."""
    accumulators = {name: scorer.empty_copy() for name, scorer in plan.scorers.items()}
    widths = {c.name: min(plan.topk, _config_width(c, plan.n_gallery, plan.n_enriched)) for c in plan.configs}
    top = {name: np.empty((plan.n_query, w), np.int64) for name, w in widths.items()} if plan.topk else {}
    for block in blocks:
        for name, acc in accumulators.items():
            acc.merge(block.metrics[name])
            if plan.topk:
                top[name][block.rows] = block.topk[name]
    results: dict[tuple[str, str], EvalResult] = {}
    records = []
    for config in plan.configs:
        acc = accumulators[config.name]
        if not acc.complete:
            raise ValueError(f"config {config.name!r}: {int((~acc._added).sum())} queries were never scored")
        for mode, res in acc.results().items():
            results[(config.name, mode)] = res
            records.append({"config": config.name, "alpha": config.alpha, "enrichment": config.enrichment or "",
                            **res.as_dict()})
    return RetrievalResult(pd.DataFrame.from_records(records), results, top)


class PhaseClock:
    """Adds wall seconds per named phase into a caller's dict (no-op without one), the one
    timer of retrieval, its backends and re-ranking. ``synchronize``: called before and
    after each timed phase (e.g. ``torch.cuda.synchronize``), so that the work a device has
    queued counts in the phase that queued it; only when timing."""

    def __init__(self, sink: dict[str, float] | None, synchronize: Callable[[], object] | None = None) -> None:
        self.sink, self.synchronize = sink, synchronize

    @contextmanager
    def __call__(self, phase: str):
        if self.sink is None:
            yield
            return
        if self.synchronize is not None:
            self.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.synchronize is not None:
                self.synchronize()
            self.sink[phase] = self.sink.get(phase, 0.0) + time.perf_counter() - start


def _config_width(config: RetrievalConfig, n_gallery: int, n_enriched: int) -> int:
    return n_gallery + (n_enriched if config.enrichment == "append" else 0)


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
    metrics do), without sorting whole rows. (rows, k) int64; a single row (1-D) gives (k,)."""
    dist = np.asarray(dist)
    if dist.ndim == 1:
        return top_k(dist[None], k)[0]
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
