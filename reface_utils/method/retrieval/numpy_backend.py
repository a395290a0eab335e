"""The numpy backend of the block step (``blockstep.py``): the CPU, OpenBLAS products.

The products are ``fusion.reid_distance`` and ``fusion.face_distance_into`` (per
PRODUCT_TILE query rows, so that blocks give the full-matrix functions' bits) into the
:class:`~.contract.Workspace`'s buffers; the elementwise work goes in row chunks that fit
the cache, split between threads on large blocks; the metrics count ranks on the CPU
(``MetricAccumulator.score_block``) and the top-k is :func:`~.contract.top_k`.
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from ..fusion import cache_rows, face_distance_into, reid_distance
from ..metrics import thread_pool
from .contract import QueryBlock, RetrievalPlan, Workspace, top_k

__all__ = ["NumpyBackend"]


class NumpyBackend:
    """The block step's arrays and primitive operations on numpy (see ``blockstep.py``)."""

    xp = np
    synchronize = None

    def __init__(self, plan: RetrievalPlan, workspace: Workspace) -> None:
        self.plan, self.workspace = plan, workspace
        self.buffer = workspace.get

    @staticmethod
    def session():
        return nullcontext()

    @staticmethod
    def index(name: str, array: np.ndarray) -> np.ndarray:
        return array

    @staticmethod
    def take_cols(x: np.ndarray, cols: np.ndarray, out: np.ndarray) -> np.ndarray:
        return np.take(x, cols, axis=1, out=out)

    @staticmethod
    def assign(dst: np.ndarray, src: np.ndarray) -> None:
        np.copyto(dst, src)

    @staticmethod
    def fill(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, value: float) -> None:
        x[rows, cols] = value

    def by_rows(self, work, n_rows: int, width: int) -> None:
        """work(a, b) over consecutive row chunks that fit the cache (fusion.cache_rows), the
        rows split between the plan's threads when the block is large (numpy's elementwise
        passes, gathers and scatters release the GIL; each chunk's rows are written by one
        call)."""
        step, threads = cache_rows(width), self.plan.threads

        def span(lo: int, hi: int) -> None:
            for a in range(lo, hi, step):
                work(a, min(a + step, hi))

        if threads < 2 or n_rows < 2 * threads or n_rows * width < (1 << 20):
            span(0, n_rows)
            return
        bounds = np.linspace(0, n_rows, threads + 1).astype(int)
        pool = thread_pool(threads)
        for job in [pool.submit(span, a, b) for a, b in zip(bounds[:-1], bounds[1:])]:
            job.result()

    @staticmethod
    def queries(block: QueryBlock) -> QueryBlock:
        return block

    def reid_distance(self, block: QueryBlock, side: str, out: np.ndarray) -> None:
        plan = self.plan
        reid_distance(block.reid, plan.gallery.reid if side == "gallery" else plan.e_reid, out=out)

    def face_distance(self, block: QueryBlock, out: np.ndarray) -> None:
        plan, n_gallery = self.plan, self.plan.n_gallery
        cameras = (plan.cameras, block.camids) if plan.cameras is not None else None
        face_distance_into(out[:, :n_gallery], block.face, block.has_face, plan.g_face, cameras, self.buffer)
        if plan.append:  # appended samples: camera -1 is nobody's camera, no exclusion
            face_distance_into(out[:, n_gallery:], block.face, block.has_face, plan.e_face, None, self.buffer)

    @staticmethod
    def score(scorer, dist: np.ndarray, rows: np.ndarray, exclude):
        return scorer.score_block(dist, rows, exclude=exclude), None

    @staticmethod
    def top_k(dist: np.ndarray, k: int, ranking) -> np.ndarray:
        return top_k(dist, k)
