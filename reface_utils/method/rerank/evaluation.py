"""Re-ranked rows of the results tables: :func:`rerank_configs` (their names),
:func:`rerank_retrieval` (the evaluation, as ``retrieval.run_retrieval`` evaluates the
others: enrichment inside the query x gallery block, fusion after re-ranking, CC/SC
filtering at evaluation) and :func:`combine_results` (one table from several results)."""
from __future__ import annotations

from typing import Iterator, Sequence, Unpack

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..fusion import face_distance_into, fuse
from ..retrieval import (BlockScores, FeatureSet, PlanOptions, RetrievalConfig, RetrievalResult, merge_blocks,
                         plan_retrieval, resolve_device, top_k)
from .blockwise import _check_features, _Reranker
from .params import K1, K2, LAMBDA, _params

__all__ = ["rerank_configs", "rerank_retrieval", "combine_results"]


def rerank_configs(alpha: float = 0.75, *, enrichment: str | None = "min",
                   exclude_self: bool = False) -> list[RetrievalConfig]:
    """The re-ranked rows of the results table: "reid+rerank" and "fused+enriched+rerank"
    ("fused+rerank" without enrichment; with ``exclude_self`` also
    "fused+enriched+rerank (own copy left out)"), named as ``retrieval.default_configs``'
    rows with "+rerank"."""
    configs = [RetrievalConfig("reid+rerank", 1.0)]
    if enrichment is None:
        return configs + [RetrievalConfig("fused+rerank", alpha)]
    if enrichment != "min":
        raise ValueError(f"re-ranking supports the 'min' enrichment (GEFF) only, got {enrichment!r}")
    configs.append(RetrievalConfig("fused+enriched+rerank", alpha, "min"))
    if exclude_self:
        configs.append(RetrievalConfig("fused+enriched+rerank (own copy left out)", alpha, "min", exclude_self=True))
    return configs


def rerank_retrieval(
    query: FeatureSet,
    gallery: FeatureSet,
    configs: Sequence[RetrievalConfig] | None = None,
    *,
    alpha: float = 0.75,
    k1: int = K1,
    k2: int = K2,
    lambda_value: float = LAMBDA,
    device: str = "numpy",
    block_size: int | None = None,
    progress: bool = True,
    timings: dict[str, float] | None = None,
    **options: Unpack[PlanOptions],
) -> RetrievalResult:
    """Evaluate re-ranked configs the way :func:`~reface_utils.method.retrieval.run_retrieval`
    evaluates the others (same RetrievalResult: table, per-mode EvalResult, top-k).

    configs: default :func:`rerank_configs` (alpha; "min" enrichment when ``enriched`` has
    samples). For each config the ReID distances (1 - cos) are re-ranked over all queries
    and gallery images; with "min" enrichment the query x gallery distances are enriched
    first (an enriched gallery image counts as near to a query as its nearest sample, for
    the neighbour sets and the original-distance term alike; ``exclude_self`` leaves a
    query's own copies out of its row); with alpha < 1 the re-ranked distances are then
    fused with the face distances (not re-ranked) as ``fusion.fuse`` does. The modes
    (standard / CC / SC) filter the gallery at evaluation, after re-ranking, exactly as
    for the other configs. alpha is only used for the default configs.
    device: "numpy" (default), "torch-cpu", "cuda", "auto"; block_size: query rows per block.
    timings: a dict to receive wall seconds per phase. ``options``: the plan's
    (``modes``, ``enriched``, ``exclude_same_camera``, ``topk``, ``threads``), with
    :func:`~reface_utils.method.retrieval.plan_retrieval`'s defaults.
    """
    k1, k2, lam = _params(k1, k2, lambda_value)
    if configs is None:
        enriched = options.get("enriched")
        has_samples = enriched is not None and len(enriched) > 0
        configs = rerank_configs(alpha, enrichment="min" if has_samples else None)
    configs = list(configs)
    for c in configs:
        if c.alpha == 0.0:
            raise ValueError(f"config {c.name!r}: alpha = 0 (face only) has no ReID distance to re-rank")
        if c.enrichment not in (None, "min"):
            raise ValueError(f"config {c.name!r}: re-ranking supports the 'min' enrichment (GEFF) only, "
                             f"got {c.enrichment!r}")
    # the plan's own scoring runs on numpy: re-ranking computes the distances on ``device``
    plan = plan_retrieval(query, gallery, configs, device="numpy", **options)
    _check_features("query ReID features", query.reid)
    _check_features("gallery ReID features", gallery.reid)
    device = resolve_device(device)

    def variant(c: RetrievalConfig):
        return c.exclude_self if c.enrichment == "min" and plan.n_enriched else None

    variants = sorted({variant(c) for c in configs}, key=lambda v: (v is not None, bool(v)))
    ranker = _Reranker(query.reid, gallery.reid, k1=k1, k2=k2, lam=lam, device=device, block_size=block_size,
                       variants=variants, plan=plan, timings=timings, progress=progress)
    clock = ranker.clock
    face_buf = None

    def scored() -> Iterator[BlockScores]:
        nonlocal face_buf
        for a, b, blocks in ranker.blocks():
            rows = np.arange(a, b)
            face = None
            if plan.need_face:
                with clock("face"):
                    face_buf = face_buf if face_buf is not None and len(face_buf) >= b - a else \
                        np.empty((b - a, plan.n_gallery), np.float32)
                    face = face_buf[:b - a]
                    cameras = (plan.cameras, query.camids[a:b]) if plan.cameras is not None else None
                    face_distance_into(face, query.face[a:b], query.has_face[a:b], plan.g_face, cameras)
            metrics, top = {}, {}
            for v, dist in blocks:
                # ReID-only configs first; the last fused one may overwrite the block (no buffer)
                mine = sorted((c for c in configs if variant(c) == v), key=lambda c: c.alpha < 1.0)
                last = max((i for i, c in enumerate(mine) if c.alpha < 1.0), default=-1)
                for i, config in enumerate(mine):
                    with clock("fusion"):
                        out = dist if config.alpha == 1.0 else fuse(
                            dist, face, config.alpha, out=dist if i == last else ranker._buffer("fused", b - a))
                    with clock("metrics"):
                        metrics[config.name] = plan.scorers[config.name].score_block(out, rows)
                    if plan.topk:
                        with clock("top-k"):
                            top[config.name] = top_k(out, plan.topk)
            yield BlockScores(rows, metrics, top)

    n_blocks = -(-len(query) // ranker.block)
    return merge_blocks(plan, tqdm(scored(), total=n_blocks, desc="re-ranking: scoring", unit="block",
                                   disable=not progress))


def combine_results(*results: RetrievalResult) -> RetrievalResult:
    """One RetrievalResult from several (e.g. ``run_retrieval``'s and
    ``rerank_retrieval``'s on the same sets): tables concatenated, config names unique."""
    names = [name for r in results for name in r.table["config"].unique()]
    if len(set(names)) != len(names):
        raise ValueError(f"config names must be unique across the results, got {names}")
    table = pd.concat([r.table for r in results], ignore_index=True)
    merged = RetrievalResult(table, {}, {})
    for r in results:
        merged.results.update(r.results)
        merged.topk.update(r.topk)
    return merged
