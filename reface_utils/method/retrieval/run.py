"""Scoring a block on the plan's device, and the whole pass: :func:`score_block` (picks the
backend: ``numpy_backend.py``, or ``torch_backend.py`` for a torch device, imported then)
and :func:`run_retrieval` (plan, blocks, merge)."""
from __future__ import annotations

from typing import Sequence, Unpack

from tqdm.auto import tqdm

from .blockstep import score_block_on
from .contract import (BlockScores, PlanOptionsWithDevice, QueryBlock, RetrievalPlan, RetrievalResult, Workspace,
                       merge_blocks, plan_retrieval, query_blocks)
from .inputs import FeatureSet, RetrievalConfig
from .numpy_backend import NumpyBackend

__all__ = ["score_block", "run_retrieval"]


def score_block(
    plan: RetrievalPlan,
    block: QueryBlock,
    *,
    workspace: Workspace | None = None,
    timings: dict[str, float] | None = None,
) -> BlockScores:
    """The metric state and top-k of one block of queries, for every config: a pure step
    (reads ``plan`` and ``block``, returns new arrays), so blocks can run anywhere and be
    merged by :func:`merge_blocks` in any order with the same bits as one in-process run.
    ``workspace``: buffers to reuse between calls (one per thread)."""
    workspace = workspace if workspace is not None else Workspace()
    if plan.device == "numpy":
        backend = NumpyBackend(plan, workspace)
    else:
        from .torch_backend import TorchBackend  # torch is imported only for a torch device

        backend = TorchBackend(plan, workspace)
    return score_block_on(backend, plan, block, timings)


def run_retrieval(
    query: FeatureSet,
    gallery: FeatureSet,
    configs: Sequence[RetrievalConfig] | None = None,
    *,
    block_size: int | None = None,
    progress: bool = True,
    timings: dict[str, float] | None = None,
    workspace: Workspace | None = None,
    **options: Unpack[PlanOptionsWithDevice],
) -> RetrievalResult:
    """Evaluate every config and mode in one block-wise pass over the queries.

    options: ``modes``, ``enriched``, ``exclude_same_camera``, ``topk``, ``threads`` and
        ``device`` (:class:`PlanOptionsWithDevice`), passed to :func:`plan_retrieval` as
        they are: its signature holds their defaults.
    block_size: queries per block (default: about 192 MiB per distance buffer in whole
        product tiles, 512..1024; on a GPU 768 MiB, up to 4096). Multiples of
        fusion.PRODUCT_TILE give the full-matrix computation's bits.
    threads: CPU threads for fusion and metric counting (default: up to 4, the CPU count).
    workspace: a :class:`Workspace` to reuse between calls (e.g. a sweep over alpha on the
        same sets): the distance buffers -- a few hundred MiB at LaST scale -- are then
        allocated and first touched once, not on every call (numpy and torch-cpu).
    exclude_same_camera: the face convention "same camera -> distance +inf".
    timings: a dict to receive wall seconds per phase ("reid gallery product",
        "reid enriched product", "face", "fusion and enrichment", "metrics", "top-k").
    device: "auto" (CUDA when torch sees one, else numpy), "numpy" (or "cpu"),
        "torch-cpu", "cuda" / "cuda:N"; see :func:`resolve_device`. The torch path gives
        the same ranks (ties broken by gallery index) whenever the float32 products round
        alike; products on another BLAS may differ in the last bit.

    Equivalent to ``merge_blocks(plan, [score_block(plan, b) for b in query_blocks(plan,
    query)])`` with ``plan = plan_retrieval(...)``: those three steps are the API for
    running blocks elsewhere (threads, processes, a cluster).
    """
    plan = plan_retrieval(query, gallery, configs, **options)  # the options' one set of defaults
    if workspace is None:
        workspace = Workspace()
    elif not isinstance(workspace, Workspace):
        raise TypeError(f"workspace must be a retrieval.Workspace (or None), got {type(workspace).__name__}")
    blocks = query_blocks(plan, query, block_size)
    n_blocks = -(-len(query) // (block_size or plan.default_block_size()))
    scored = (score_block(plan, block, workspace=workspace, timings=timings)
              for block in tqdm(blocks, total=n_blocks, desc="retrieval", unit="block", disable=not progress))
    return merge_blocks(plan, scored)
