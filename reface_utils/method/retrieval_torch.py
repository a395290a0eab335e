"""retrieval.score_block on torch: the same block step on a GPU (or on the CPU, for tests).

Per block of queries, everything that scales with queries x gallery runs on the torch
device: the ReID and face products, the face conventions, min-enrichment, fusion, and the
ranking -- one stable sort per row, whose inverse permutation gives every entry's
position in (distance, gallery index) order, the tie-breaking of ``metrics.py`` -- and
the top-k (the first k of that sort). Only what scales with the number of same-identity
pairs crosses to the CPU: their distances and positions, which ``MetricAccumulator``
turns into AP and first good rank with the same code as the numpy path.

The elementwise steps are written op for op as in ``fusion.py`` (same float32 constants,
same order of operations), so the distances are the numpy path's bits whenever the
products round alike; products from another BLAS (cuBLAS, or torch's CPU kernels) may
differ in the last bit, which can only swap entries that are within float32 rounding of
each other. TF32 matmuls (``torch.set_float32_matmul_precision("high")``) round far more
coarsely: a warning says so.

The plan keeps its gallery tensors on the device (``plan.backend_state``) between blocks.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import torch

from ..core.arrays import concat_ranges
from .fusion import NO_FACE_QUERY_DISTANCE, FaceGallery

__all__ = ["score_block_torch"]


class _DeviceGallery:
    """The plan's arrays that every block reads, moved to the device once."""

    def __init__(self, plan, device: torch.device) -> None:
        if device.type == "cuda" and torch.get_float32_matmul_precision() != "highest":
            warnings.warn("torch float32 matmul precision is not 'highest' (TF32 products): retrieval ranks "
                          "may differ from the numpy path; call torch.set_float32_matmul_precision('highest')",
                          stacklevel=3)
        put = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
        self.device = device
        self.g_reid = put(plan.gallery.reid)
        self.e_reid = put(plan.enriched.reid) if plan.need_enriched else None
        self.g_face = _DeviceFaces(plan.g_face, put) if plan.g_face is not None else None
        self.e_face = _DeviceFaces(plan.e_face, put) if plan.e_face is not None else None
        if plan.cameras is not None:  # gallery camera as its index among the gallery's cameras
            codes = np.empty(len(plan.gallery), np.int64)
            codes[:] = np.searchsorted(plan.cameras.cameras, plan.gallery.camids)
            self.g_cam = put(codes)
        if plan.e_layout is not None:
            self.e_cols = put(plan.e_layout.cols)
            self.e_order = put(plan.e_layout.order)


class _DeviceFaces:
    def __init__(self, faces: FaceGallery, put) -> None:
        self.dense = faces.dense
        self.compact = put(faces.compact)
        self.cols = put(faces.cols)
        self.width = len(faces)


def _device_gallery(plan) -> _DeviceGallery:
    key = f"torch:{plan.device}"
    if key not in plan.backend_state:
        plan.backend_state[key] = _DeviceGallery(plan, torch.device(plan.device))
    return plan.backend_state[key]


def _face_distance(q_face: torch.Tensor, has_face: torch.Tensor, faces: _DeviceFaces,
                   q_cam: torch.Tensor | None, g_cam: torch.Tensor | None) -> torch.Tensor:
    """fusion.face_distance_into on the device (same conventions, same float32 ops)."""
    out = torch.full((len(q_face), faces.width), NO_FACE_QUERY_DISTANCE, dtype=torch.float32, device=q_face.device)
    faced = torch.nonzero(has_face).squeeze(1)
    if len(faced) == 0:
        return out
    sims = q_face[faced] @ faces.compact.T
    sims = torch.rsub(sims, 1.0)  # 1 - sims, as np.subtract(float32(1), sims)
    if faces.dense:
        target = sims
    else:  # gallery images without a face: similarity 0, distance 1
        target = torch.ones((len(faced), faces.width), dtype=torch.float32, device=q_face.device)
        target[:, faces.cols] = sims
    if q_cam is not None:
        target.masked_fill_(q_cam[faced][:, None] == g_cam[None, :], float("inf"))
    out[faced] = target
    return out


def _fuse(reid: torch.Tensor, face: torch.Tensor, alpha: float) -> torch.Tensor:
    """fusion.fuse op for op: (1 - alpha) * (face + reid * (alpha / (1 - alpha))), float32."""
    if alpha == 1.0:
        return reid.clone()
    if alpha == 0.0:
        return face.clone()
    ratio, weight = float(np.float32(alpha / (1.0 - alpha))), float(np.float32(1.0 - alpha))
    out = torch.mul(reid, ratio)
    out.add_(face)
    out.mul_(weight)
    return out


def _mix(reid: torch.Tensor, face: torch.Tensor | None, alpha: float) -> torch.Tensor:
    """ReID only, face only (both exact, no copy) or fused."""
    if alpha == 1.0:
        return reid
    if alpha == 0.0:
        return face
    return _fuse(reid, face, alpha)


def _lowest(samples: torch.Tensor, level_counts: np.ndarray) -> torch.Tensor:
    """fusion.EnrichmentLayout.lowest on the device."""
    out = samples[:, :int(level_counts[0])].clone()
    offset = int(level_counts[0])
    for n in level_counts[1:]:
        n = int(n)
        out[:, :n] = torch.minimum(out[:, :n], samples[:, offset:offset + n])
        offset += n
    return out


class _Clock:
    """Phase timings that include the device's queued work (synchronised only when timed)."""

    def __init__(self, sink: dict[str, float] | None, device: torch.device) -> None:
        self.sink, self.device = sink, device

    @contextmanager
    def __call__(self, phase: str):
        if self.sink is None:
            yield
            return
        import time

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.sink[phase] = self.sink.get(phase, 0.0) + time.perf_counter() - start


def score_block_torch(plan, block, *, timings: dict[str, float] | None = None):
    """retrieval.score_block for a plan whose device is a torch device."""
    from .retrieval import BlockScores

    dev = _device_gallery(plan)
    clock = _Clock(timings, dev.device)
    nb, n_gallery, n_enriched = len(block), plan.n_gallery, plan.n_enriched
    rows = np.asarray(block.rows, dtype=np.int64)
    put = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dev.device)  # noqa: E731
    with torch.inference_mode():
        q_reid = put(block.reid)
        with clock("reid gallery product"):
            reid = torch.neg(q_reid @ dev.g_reid.T)
        samples = None
        if plan.need_enriched:
            with clock("reid enriched product"):
                samples = torch.neg(q_reid @ dev.e_reid.T)
        face = face_samples = None
        if plan.need_face:
            with clock("face"):
                q_face, has_face = put(block.face), put(block.has_face)
                q_cam = None
                if plan.cameras is not None:
                    cams = plan.cameras.cameras
                    pos = np.clip(np.searchsorted(cams, block.camids), 0, max(len(cams) - 1, 0))
                    known = (cams[pos] == block.camids) if len(cams) else np.zeros(nb, bool)
                    q_cam = put(np.where(known, pos, -1))
                face = _face_distance(q_face, has_face, dev.g_face, q_cam, getattr(dev, "g_cam", None))
                if plan.append:
                    face_samples = _face_distance(q_face, has_face, dev.e_face, None, None)
        block_self = None
        if plan.need_enriched:
            counts = plan.self_start[rows + 1] - plan.self_start[rows]
            block_self = (np.repeat(np.arange(nb), counts), plan.self_e[concat_ranges(plan.self_start[rows], counts)])
        lowest = {}
        with clock("fusion and enrichment"):
            variants = sorted({c.exclude_self for c in plan.configs if c.enrichment == "min"})
            if variants and n_enriched:
                laid_out = samples.index_select(1, dev.e_order)  # a copy
                for exclude_self in variants:  # False first: True then writes +inf over own copies
                    if exclude_self and len(block_self[0]):
                        laid_out[put(block_self[0]), put(plan.e_layout.position[block_self[1]])] = float("inf")
                    lowest[exclude_self] = _lowest(laid_out, plan.e_layout.level_counts)
        metrics, top = {}, {}
        for config in plan.configs:
            with clock("fusion and enrichment"):
                exclude = None
                append = config.enrichment == "append" and n_enriched > 0
                if config.enrichment == "min" and n_enriched and config.alpha > 0.0:
                    enriched_reid = reid.clone()
                    enriched_reid[:, dev.e_cols] = torch.minimum(enriched_reid[:, dev.e_cols], lowest[config.exclude_self])
                    dist = _fuse(enriched_reid, face, config.alpha) if config.alpha < 1.0 else enriched_reid
                elif append:  # the samples as gallery columns G..G+E-1
                    reid_all = torch.cat([reid, samples], 1)
                    face_all = torch.cat([face, face_samples], 1) if config.alpha < 1.0 else None
                    dist = _mix(reid_all, face_all, config.alpha)
                    if config.exclude_self:
                        exclude = (block_self[0], n_gallery + block_self[1])
                else:
                    dist = _mix(reid, face, config.alpha)
            with clock("metrics"):
                metrics[config.name], order = _score(plan.scorers[config.name], dist, rows, exclude, put)
            if plan.topk:
                with clock("top-k"):
                    top[config.name] = order[:, :plan.topk].cpu().numpy()
    return BlockScores(rows, metrics, top)


def _score(scorer, dist: torch.Tensor, rows: np.ndarray, exclude, put):
    """MetricAccumulator.score_ranked with the ranking done on the device: a stable sort of
    each row (ties keep gallery order) and its inverse permutation."""
    if dist.numel() and bool(torch.isnan(dist).any()):
        r, c = (int(v) for v in torch.nonzero(torch.isnan(dist))[0])
        raise ValueError(f"distance matrix has NaN (query {rows[r]}, gallery {c}); NaN cannot be ranked: "
                         "check the features for NaN or the fusion inputs")
    # + 0.0 turns -0.0 into 0.0: they are equal, but a radix sort on the bits would part them
    _, order = torch.sort(dist + 0.0, dim=1, stable=True)
    position = torch.empty(order.shape, dtype=torch.int32, device=dist.device)
    position.scatter_(1, order, torch.arange(order.shape[1], dtype=torch.int32, device=dist.device)
                      .expand(order.shape).contiguous())

    def gather(r, c):
        return dist[put(r), put(c)].cpu().numpy()

    def count_before(r, c, v):
        return position[put(r), put(c)].cpu().numpy().astype(np.int64)

    return scorer.score_ranked(rows, exclude, gather, count_before), order
