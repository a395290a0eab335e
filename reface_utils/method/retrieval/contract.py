"""The retrieval contract: the plan, the blocks, the merge, and the steps around them.

The plan that every block of one run shares (:func:`plan_retrieval` -> :class:`RetrievalPlan`,
its pass-through options :class:`PlanOptions` / :class:`PlanOptionsWithDevice`), the unit
of work (:func:`query_blocks` -> :class:`QueryBlock`), what scoring a block returns
(:class:`BlockScores`) and their exact merge (:func:`merge_blocks` ->
:class:`RetrievalResult`); with the device choice (:func:`resolve_device`), the reusable
buffers (:class:`Workspace`), the phase timer (:class:`PhaseClock`) and :func:`top_k`.
The inputs they read (:class:`FeatureSet`, :class:`EnrichedGallery`,
:class:`RetrievalConfig`) are ``inputs.py``'s. Imports no backend: ``blockstep.py`` scores
a block with the numpy (``numpy_backend.py``) or torch (``torch_backend.py``) primitives.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence, TypedDict

import numpy as np
import pandas as pd

from ...core.arrays import concat_ranges, joint_codes
from ..fusion import PRODUCT_TILE, CameraIndex, EnrichmentLayout, FaceGallery, self_pairs
from ..metrics import ENRICHED_CAMID, BlockMetrics, EvalLabels, EvalResult, MetricAccumulator
from .inputs import EnrichedGallery, FeatureSet, RetrievalConfig, _check_configs, default_configs

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
    "RetrievalResult",
    "top_k",
    "PlanOptions",
    "PlanOptionsWithDevice",
]


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


class PlanOptions(TypedDict, total=False):
    """The options of :func:`plan_retrieval` that an entry point passes on unchanged.

    Their defaults are plan_retrieval's alone: a wrapper takes ``**options:
    Unpack[PlanOptions]`` next to its own parameters and forwards them, instead of
    copying the options and their defaults into its signature. Keys are keyword-only
    parameters of plan_retrieval; a wrong key fails there as an unexpected argument.
    """

    modes: Sequence[str]
    enriched: EnrichedGallery | None
    exclude_same_camera: bool
    topk: int
    threads: int | None


class PlanOptionsWithDevice(PlanOptions, total=False):
    """:class:`PlanOptions` and ``device``, for entry points that score on the plan's
    device (:func:`run_retrieval`); one with a device of its own (re-ranking, Ray) takes
    PlanOptions and its own ``device`` parameter."""

    device: str


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
            _, (q_camids, g_camids) = joint_codes(q_camids, g_camids)
        g_camids = np.concatenate([g_camids, np.full(len(enriched), ENRICHED_CAMID)])
        if g_clothes is not None and q_clothes is not None:
            # a clothes label of their own (as GEFF's copies get), never a query's
            _, (q_clothes, g_clothes) = joint_codes(q_clothes, g_clothes)
            g_clothes = np.concatenate([g_clothes, np.full(len(enriched), -1)])
    return MetricAccumulator(EvalLabels(query.pids, g_pids, q_camids, g_camids, q_clothes, g_clothes), modes=modes,
                             threads=threads, cc_skip_enriched_only=config.cc_skip_enriched_only)


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
