"""The torch backend of the block step (``blockstep.py``): a GPU, or the CPU for tests.

Per block of queries, everything that scales with queries x gallery runs on the torch
device: the ReID and face products, the face conventions, and -- with the block step's
rules, written once for both backends -- min-enrichment, fusion and the "append" columns;
then the ranking: one stable sort per row, whose inverse permutation gives every entry's
position in (distance, gallery index) order, the tie-breaking of ``metrics.py``, and the
top-k (the first k of that sort). Only what scales with the number of same-identity pairs
crosses to the CPU: their distances and positions, which ``MetricAccumulator`` turns into
AP and first good rank with the same code as the numpy path.

The elementwise steps are the numpy path's (same float32 constants, same order of
operations), so the distances are its bits whenever the products round alike; products
from another BLAS (cuBLAS, or torch's CPU kernels) may differ in the last bit, which can
only swap entries that are within float32 rounding of each other. TF32 matmuls
(``torch.set_float32_matmul_precision("high")``) round far more coarsely: a warning says so.

The plan keeps its gallery tensors on the device (``plan.backend_state``) between blocks.
On the CPU the block's buffers are the :class:`~.contract.Workspace`'s (shared memory, no
copy); on a GPU they are allocated per block (torch's caching allocator reuses them).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..fusion import NO_FACE_QUERY_DISTANCE, FaceGallery
from .contract import QueryBlock, RetrievalPlan, Workspace

__all__ = ["TorchBackend"]


class _DeviceGallery:
    """The plan's arrays that every block reads, moved to the device once."""

    def __init__(self, plan: RetrievalPlan, device: torch.device) -> None:
        if device.type == "cuda" and torch.get_float32_matmul_precision() != "highest":
            warnings.warn("torch float32 matmul precision is not 'highest' (TF32 products): retrieval ranks "
                          "may differ from the numpy path; call torch.set_float32_matmul_precision('highest')",
                          stacklevel=4)
        self.device = device
        put = self.put
        self.g_reid = put(plan.gallery.reid)
        self.e_reid = put(plan.e_reid) if plan.need_enriched else None  # layout order, as numpy's
        self.g_face = _DeviceFaces(plan.g_face, put) if plan.g_face is not None else None
        self.e_face = _DeviceFaces(plan.e_face, put) if plan.e_face is not None else None
        self.g_cam = None
        if plan.cameras is not None:  # gallery camera as its index among the gallery's cameras
            self.g_cam = put(np.searchsorted(plan.cameras.cameras, plan.gallery.camids).astype(np.int64))
        self.indices: dict[str, torch.Tensor] = {}

    def put(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)


class _DeviceFaces:
    def __init__(self, faces: FaceGallery, put) -> None:
        self.dense = faces.dense
        self.compact = put(faces.compact)
        self.cols = put(faces.cols)
        self.width = len(faces)


@dataclass
class _Queries:
    """A block's query tensors on the device."""

    reid: torch.Tensor
    face: torch.Tensor | None
    has_face: torch.Tensor | None
    camera: torch.Tensor | None  # each query's camera as an index among the gallery's, -1: none of them


class TorchBackend:
    """The block step's arrays and primitive operations on a torch device (see ``blockstep.py``)."""

    xp = torch

    def __init__(self, plan: RetrievalPlan, workspace: Workspace) -> None:
        key = f"torch:{plan.device}"
        if key not in plan.backend_state:
            plan.backend_state[key] = _DeviceGallery(plan, torch.device(plan.device))
        self.plan, self.workspace = plan, workspace
        self.dev: _DeviceGallery = plan.backend_state[key]
        self.device = self.dev.device
        self.put = self.dev.put
        cuda = self.device.type == "cuda"
        self.synchronize = (lambda: torch.cuda.synchronize(self.device)) if cuda else None

    @staticmethod
    def session():
        return torch.inference_mode()

    def buffer(self, name: str, rows: int, cols: int) -> torch.Tensor:
        if self.device.type == "cpu":
            return torch.from_numpy(self.workspace.get(name, rows, cols))
        return torch.empty((rows, cols), dtype=torch.float32, device=self.device)

    def index(self, name: str, array: np.ndarray) -> torch.Tensor:
        if name not in self.dev.indices:
            self.dev.indices[name] = self.put(np.asarray(array, dtype=np.int64))
        return self.dev.indices[name]

    @staticmethod
    def take_cols(x: torch.Tensor, cols: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return torch.index_select(x, 1, cols, out=out)

    @staticmethod
    def assign(dst: torch.Tensor, src: torch.Tensor) -> None:
        dst.copy_(src)

    def fill(self, x: torch.Tensor, rows: np.ndarray, cols: np.ndarray, value: float) -> None:
        x[self.put(rows), self.put(cols)] = value

    @staticmethod
    def by_rows(work, n_rows: int, width: int) -> None:
        work(0, n_rows)  # the device runs each pass over the whole block

    def queries(self, block: QueryBlock) -> _Queries:
        plan, put = self.plan, self.put
        face = has_face = camera = None
        if plan.need_face:
            face, has_face = put(block.face), put(block.has_face)
            if plan.cameras is not None:
                cams = plan.cameras.cameras
                pos = np.clip(np.searchsorted(cams, block.camids), 0, max(len(cams) - 1, 0))
                known = (cams[pos] == block.camids) if len(cams) else np.zeros(len(block), bool)
                camera = put(np.where(known, pos, -1))
        return _Queries(put(block.reid), face, has_face, camera)

    def reid_distance(self, queries: _Queries, side: str, out: torch.Tensor) -> None:
        features = self.dev.g_reid if side == "gallery" else self.dev.e_reid
        torch.matmul(queries.reid, features.T, out=out)
        out.neg_()

    def face_distance(self, queries: _Queries, out: torch.Tensor) -> None:
        n_gallery = self.plan.n_gallery
        _face_distance(out[:, :n_gallery], queries.face, queries.has_face, self.dev.g_face, queries.camera,
                       self.dev.g_cam)
        if self.plan.append:  # appended samples: camera -1 is nobody's camera, no exclusion
            _face_distance(out[:, n_gallery:], queries.face, queries.has_face, self.dev.e_face, None, None)

    def score(self, scorer, dist: torch.Tensor, rows: np.ndarray, exclude):
        """MetricAccumulator.score_ranked with the ranking done on the device: a stable sort
        of each row (ties keep gallery order) and its inverse permutation."""
        if dist.numel() and bool(torch.isnan(dist).any()):
            r, c = (int(v) for v in torch.nonzero(torch.isnan(dist))[0])
            raise ValueError(f"distance matrix has NaN (query {rows[r]}, gallery {c}); NaN cannot be ranked: "
                             "check the features for NaN or the fusion inputs")
        # + 0.0 turns -0.0 into 0.0: they are equal, but a radix sort on the bits would part them
        _, order = torch.sort(dist + 0.0, dim=1, stable=True)
        position = torch.empty(order.shape, dtype=torch.int32, device=dist.device)
        position.scatter_(1, order, torch.arange(order.shape[1], dtype=torch.int32, device=dist.device)
                          .expand(order.shape).contiguous())
        put = self.put

        def gather(r, c):
            return dist[put(r), put(c)].cpu().numpy()

        def count_before(r, c, v):
            return position[put(r), put(c)].cpu().numpy().astype(np.int64)

        return scorer.score_ranked(rows, exclude, gather, count_before), order

    @staticmethod
    def top_k(dist: torch.Tensor, k: int, order: torch.Tensor) -> np.ndarray:
        return order[:, :k].cpu().numpy()


def _face_distance(out: torch.Tensor, q_face: torch.Tensor, has_face: torch.Tensor, faces: _DeviceFaces,
                   q_cam: torch.Tensor | None, g_cam: torch.Tensor | None) -> None:
    """fusion.face_distance_into on the device (same conventions, same float32 ops)."""
    out.fill_(NO_FACE_QUERY_DISTANCE)
    faced = torch.nonzero(has_face).squeeze(1)
    if len(faced) == 0:
        return
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
