"""The metric state of a query set, block by block, and the whole-matrix ``evaluate``.

:class:`MetricAccumulator` holds the labels (one :class:`~.labels.EvalLabels`, coded once)
and, per mode, each query's AP and first good rank. Blocks are scored by a pure step
(:meth:`MetricAccumulator.score_block` -> :class:`~.results.BlockMetrics`) and merged by
:meth:`MetricAccumulator.merge`; the CMC histogram and the AP sum are formed once from the
per-query arrays (:meth:`MetricAccumulator.result`), so any block size, block order or
place of scoring gives the same bits. The good / junk rules of each mode are here
(``score_ranked``); where each good match stands in its row is counted by
``rank_counts``. :func:`evaluate` is the torchreid-style entry point on a full matrix.
"""
from __future__ import annotations

import copy
from typing import Iterable, Sequence

import numpy as np

from ...core.arrays import concat_ranges, joint_codes
from . import rank_counts
from .labels import ENRICHED_CAMID, MODES, EvalLabels
from .results import BlockMetrics, EvalResult

__all__ = ["MetricAccumulator", "evaluate"]


def _is_enriched_camera(camids: np.ndarray) -> np.ndarray:
    camids = np.asarray(camids)
    if np.issubdtype(camids.dtype, np.number):
        return camids == ENRICHED_CAMID
    return np.zeros(camids.shape, dtype=bool)


class MetricAccumulator:
    """Evaluate a Q x G distance matrix given block by block (rows = queries).

    >>> acc = MetricAccumulator(EvalLabels(q_pids, g_pids, q_camids, g_camids), modes=("standard",))
    >>> for start in range(0, Q, 256):
    ...     acc.add_block(distmat[start:start + 256], slice(start, start + 256))
    >>> acc.result("standard").mAP

    All requested modes are computed from the same pass over each block. Blocks may come
    in any order; each query may be added once. ``add_block`` is ``merge(score_block(...))``:
    ``score_block`` only reads the labels, so blocks can be scored elsewhere (threads,
    processes, a cluster) and merged here. ``threads`` > 1 splits the counting over rows
    between threads (numpy releases the GIL in it).
    ``cc_skip_enriched_only=False`` drops GEFF's camera -1 rule (ReFace's first release,
    which appended enriched samples to the gallery, evaluated without it).
    """

    def __init__(
        self,
        labels: EvalLabels,
        modes: Iterable[str] = ("standard",),
        threads: int = 1,
        cc_skip_enriched_only: bool = True,
    ) -> None:
        self.labels = labels
        self.modes = tuple(modes)
        self.cc_skip_enriched_only = cc_skip_enriched_only
        self.threads = max(1, int(threads))
        for mode in self.modes:
            if mode not in MODES:
                raise ValueError(f"unknown evaluation mode {mode!r}; use one of {MODES}")
        if not self.modes:
            raise ValueError("give at least one evaluation mode")
        # the labels are flat and their lengths checked (EvalLabels): only coded here
        self.num_query, self.num_gallery = labels.num_query, labels.num_gallery
        pid_values, (self._q_pid, self._g_pid) = joint_codes(labels.q_pids, labels.g_pids)
        n_pids = len(pid_values)
        _, (self._q_cam, self._g_cam) = joint_codes(labels.q_camids, labels.g_camids)
        self._g_enriched_cam = _is_enriched_camera(labels.g_camids)
        self._with_clothes = any(m != "standard" for m in self.modes)
        if self._with_clothes:
            if not labels.has_clothes:
                raise ValueError(
                    f"modes {self.modes} need clothes ids: pass q_clothes_ids and g_clothes_ids"
                )
            _, (self._q_clo, self._g_clo) = joint_codes(labels.q_clothes_ids, labels.g_clothes_ids)
        # Gallery grouped by identity: a query's candidates are one contiguous slice.
        self._g_by_pid = np.argsort(self._g_pid, kind="stable")
        counts = np.bincount(self._g_pid, minlength=n_pids)
        self._pid_count = counts
        self._pid_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._added = np.zeros(self.num_query, dtype=bool)
        # Per-query AP and first good rank: the whole state. The CMC histogram and the AP
        # sum are formed once in result(), so block size and block order cannot change a bit.
        self._ap = {m: np.zeros(self.num_query) for m in self.modes}
        self._first = {m: np.full(self.num_query, -1, dtype=np.int64) for m in self.modes}

    # ------------------------------------------------------------------ blocks
    def add_block(
        self,
        dist: np.ndarray,
        rows: slice | np.ndarray | Sequence[int],
        exclude: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Add the distance rows of some queries (``merge(score_block(...))``).

        dist: (b, G) distances (smaller = more similar), any real dtype; not modified.
        rows: the query indices of the b rows (a slice or an index array).
        exclude: optional (block_row, gallery_col) pairs removed from those queries'
            rankings, as if they were junk in every mode (e.g. a query's own enriched copy).
        """
        rows = self._rows(rows)
        self._check_not_added(rows)
        self.merge(self.score_block(dist, rows, exclude))

    def score_block(
        self,
        dist: np.ndarray,
        rows: slice | np.ndarray | Sequence[int],
        exclude: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> "BlockMetrics":
        """The metric state of some queries' distance rows, without adding it: a pure step
        (reads only the labels), so blocks can be scored anywhere -- other threads,
        processes or machines -- and merged with :meth:`merge` in any order, exactly."""
        dist = np.asarray(dist)
        if dist.ndim != 2 or dist.shape[1] != self.num_gallery:
            raise ValueError(
                f"distance block must have shape (rows, {self.num_gallery}), got {dist.shape}"
            )
        rows = self._rows(rows)
        if len(rows) != dist.shape[0]:
            raise ValueError(f"{dist.shape[0]} distance rows but {len(rows)} query indices")
        if not np.issubdtype(dist.dtype, np.number) or np.iscomplexobj(dist):
            raise TypeError(f"distances must be real numbers, got dtype {dist.dtype}")
        if len(rows) and self.num_gallery and np.issubdtype(dist.dtype, np.floating) and np.isnan(dist.max()):
            r, c = np.argwhere(np.isnan(dist))[0]
            raise ValueError(
                f"distance matrix has NaN (query {rows[r]}, gallery {c}); NaN cannot be ranked: "
                "check the features for NaN or the fusion inputs"
            )
        return self.score_ranked(
            rows, exclude,
            gather=lambda r, c: dist[r, c],
            count_before=lambda r, c, v: rank_counts.count_before(dist, r, c, v, len(rows), self.threads),
        )

    def score_ranked(
        self,
        rows: np.ndarray,
        exclude: tuple[np.ndarray, np.ndarray] | None,
        gather,
        count_before,
    ) -> "BlockMetrics":
        """score_block given two functions instead of the distance rows, so that the rows
        can live elsewhere (``retrieval.torch_backend``: on a GPU):

        gather(block_row, col) -> the distances at those (row, col) pairs (numpy);
        count_before(block_row, col, value) -> for each pair, the number of entries of its
        row that come before it in (distance, gallery index) order (numpy int64). Pairs
        come sorted by (row, value, col).
        """
        rows = self._rows(rows)
        b = len(rows)
        if b and (rows.min() < 0 or rows.max() >= self.num_query):
            raise ValueError(f"query indices must lie in 0..{self.num_query - 1}")
        if len(np.unique(rows)) != b:
            raise ValueError("a query index appears twice in one block")
        if b == 0:
            empty = np.empty(0, np.int64)
            return BlockMetrics(empty, {m: np.zeros(0) for m in self.modes}, {m: empty for m in self.modes})

        # Candidates: the gallery entries of each query's identity (+ excluded pairs).
        q_pid = self._q_pid[rows]
        counts = self._pid_count[q_pid]
        cand_row = np.repeat(np.arange(b, dtype=np.int64), counts)
        cand_col = self._g_by_pid[concat_ranges(self._pid_start[q_pid], counts)]
        excluded = np.zeros(len(cand_row), dtype=bool)
        if exclude is not None:
            cand_row, cand_col, excluded = _merge_excluded(cand_row, cand_col, excluded, exclude, b, self.num_gallery)
        same_pid = self._g_pid[cand_col] == q_pid[cand_row]
        same_cam = self._g_cam[cand_col] == self._q_cam[rows][cand_row]
        values = np.asarray(gather(cand_row, cand_col))
        # Within a row, candidates in ranking order: by distance, then gallery index.
        order = rank_counts.ranking_order(cand_row, values, cand_col)
        cand_row, cand_col, values = cand_row[order], cand_col[order], values[order]
        same_pid, same_cam, excluded = same_pid[order], same_cam[order], excluded[order]
        if self._with_clothes:
            same_clo = (self._g_clo[cand_col] == self._q_clo[rows][cand_row])

        good, junk = {}, {}
        keep = same_pid & ~excluded
        for mode in self.modes:
            if mode == "standard":
                good[mode] = keep & ~same_cam
                junk[mode] = (same_pid & same_cam) | excluded
            elif mode == "CC":
                good[mode] = keep & ~same_cam & ~same_clo
                junk[mode] = (same_pid & (same_cam | same_clo)) | excluded
            else:  # SC
                good[mode] = keep & ~same_cam & same_clo
                junk[mode] = (same_pid & (same_cam | ~same_clo)) | excluded
        any_good = np.zeros(len(cand_row), dtype=bool)
        for mode in self.modes:
            any_good |= good[mode]

        # Position of every good match in its full row (all entries counted).
        full_rank = np.full(len(cand_row), -1, dtype=np.int64)
        idx = np.flatnonzero(any_good)
        full_rank[idx] = count_before(cand_row[idx], cand_col[idx], values[idx])

        row_start = np.searchsorted(cand_row, np.arange(b))
        ap, first = {}, {}
        for mode in self.modes:
            ap[mode], first[mode] = self._block_mode(mode, b, cand_row, cand_col, good[mode], junk[mode],
                                                     full_rank, row_start)
        return BlockMetrics(rows, ap, first)

    def merge(self, block: "BlockMetrics") -> None:
        """Add a scored block (from :meth:`score_block` of this or an equal accumulator)."""
        rows = self._rows(block.rows)
        if set(block.ap) != set(self.modes):
            raise ValueError(f"block scored for modes {tuple(block.ap)}, this accumulator has {self.modes}")
        self._check_not_added(rows)
        self._added[rows] = True
        for mode in self.modes:
            self._ap[mode][rows] = block.ap[mode]
            self._first[mode][rows] = block.first[mode]

    def _rows(self, rows) -> np.ndarray:
        if isinstance(rows, slice):
            return np.arange(self.num_query)[rows]
        return np.asarray(rows, dtype=np.int64).ravel()

    def _check_not_added(self, rows: np.ndarray) -> None:
        if len(rows) and (rows.min() < 0 or rows.max() >= self.num_query):
            raise ValueError(f"query indices must lie in 0..{self.num_query - 1}")
        if self._added[rows].any() or len(np.unique(rows)) != len(rows):
            raise ValueError("a query was added twice to the same MetricAccumulator")

    def _block_mode(self, mode, b, cand_row, cand_col, good, junk, full_rank, row_start):
        """(AP, first good rank) of each block row in one mode; AP 0 and rank -1 where skipped."""
        # junk entries before each candidate within its row (exclusive), good ordinal
        junk_cum = np.cumsum(junk)
        junk_before = junk_cum - junk
        junk_before -= np.concatenate(([0], junk_cum))[row_start][cand_row]
        good_cum = np.cumsum(good)
        good_ord = good_cum - 1 - np.concatenate(([0], good_cum))[row_start][cand_row]

        g_row = cand_row[good]
        rank = full_rank[good] - junk_before[good]  # rank among non-junk entries
        ordinal = good_ord[good]
        n_good = np.bincount(g_row, minlength=b)
        valid = n_good > 0
        if mode == "CC" and self.cc_skip_enriched_only:
            real = ~self._g_enriched_cam[cand_col[good]]
            valid &= np.bincount(g_row[real], minlength=b) > 0
        precision = (ordinal + 1.0) / (rank + 1.0)
        ap = np.bincount(g_row, weights=precision, minlength=b)
        first = np.full(b, -1, dtype=np.int64)
        is_first = ordinal == 0
        first[g_row[is_first]] = rank[is_first]

        return np.where(valid, ap / np.maximum(n_good, 1), 0.0), np.where(valid, first, -1)

    def empty_copy(self) -> "MetricAccumulator":
        """An accumulator for the same queries, gallery and modes with nothing added
        (shares the label arrays, which are never written)."""
        twin = copy.copy(self)
        twin._added = np.zeros(self.num_query, dtype=bool)
        twin._ap = {m: np.zeros(self.num_query) for m in self.modes}
        twin._first = {m: np.full(self.num_query, -1, dtype=np.int64) for m in self.modes}
        return twin

    # ----------------------------------------------------------------- results
    @property
    def complete(self) -> bool:
        """True once every query has been added."""
        return bool(self._added.all())

    def result(self, mode: str | None = None) -> EvalResult:
        mode = self.modes[0] if mode is None else mode
        if mode not in self.modes:
            raise ValueError(f"mode {mode!r} was not requested (modes: {self.modes})")
        first = self._first[mode]
        evaluated = first >= 0  # an evaluated query has a first good match; a skipped one -1
        n = int(evaluated.sum())
        if n:
            cmc = np.cumsum(np.bincount(first[evaluated], minlength=self.num_gallery)) / n
            m_ap = float(np.sum(self._ap[mode])) / n
        else:  # nothing evaluated: undefined, not 0 (package docstring)
            cmc = np.full(self.num_gallery, np.nan)
            m_ap = float("nan")
        n_skip = int(self._added.sum()) - n
        return EvalResult(mode, cmc, float(m_ap), n, n_skip, first.copy())

    def results(self) -> dict[str, EvalResult]:
        return {m: self.result(m) for m in self.modes}

def _merge_excluded(cand_row, cand_col, excluded, exclude, b, num_gallery):
    """Add (row, col) pairs to drop; a pair already among the candidates is flagged."""
    ex_row = np.asarray(exclude[0], dtype=np.int64).ravel()
    ex_col = np.asarray(exclude[1], dtype=np.int64).ravel()
    if ex_row.shape != ex_col.shape:
        raise ValueError("exclude must be two index arrays of equal length (rows, cols)")
    if len(ex_row) == 0:
        return cand_row, cand_col, excluded
    if ex_row.min() < 0 or ex_row.max() >= b or ex_col.min() < 0 or ex_col.max() >= num_gallery:
        raise ValueError("exclude pairs must index the block (row < rows, col < gallery size)")
    key = cand_row * num_gallery + cand_col
    ex_key = np.unique(ex_row * num_gallery + ex_col)
    hit = np.isin(key, ex_key)
    excluded = excluded | hit
    extra = ex_key[~np.isin(ex_key, key)]
    return (
        np.concatenate([cand_row, extra // num_gallery]),
        np.concatenate([cand_col, extra % num_gallery]),
        np.concatenate([excluded, np.ones(len(extra), dtype=bool)]),
    )


def evaluate(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    q_clothes_ids: np.ndarray | None = None,
    g_clothes_ids: np.ndarray | None = None,
    mode: str = "standard",
    *,
    block_size: int = 512,
    threads: int = 1,
    cc_skip_enriched_only: bool = True,
) -> EvalResult:
    """CMC and mAP of a full (Q, G) distance matrix (smaller = more similar).

    ``mode="standard"`` reproduces Simple-CCReID ``evaluate``; ``"CC"`` and ``"SC"``
    reproduce ``evaluate_with_clothes`` (CC with GEFF's camera -1 rule). The labels come
    as in torchreid's ``evaluate`` and become one :class:`EvalLabels`. See the package
    docstring (``reface_utils.method.metrics``) for ties (broken by gallery index) and NaN
    (rejected).
    """
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D (queries x gallery), got shape {distmat.shape}")
    labels = EvalLabels(q_pids, g_pids, q_camids, g_camids, q_clothes_ids, g_clothes_ids)
    acc = MetricAccumulator(labels, modes=(mode,), threads=threads, cc_skip_enriched_only=cc_skip_enriched_only)
    if distmat.shape != (acc.num_query, acc.num_gallery):
        raise ValueError(
            f"distmat has shape {distmat.shape}, but there are {acc.num_query} query and "
            f"{acc.num_gallery} gallery labels"
        )
    for start in range(0, acc.num_query, block_size):
        stop = min(start + block_size, acc.num_query)
        acc.add_block(distmat[start:stop], slice(start, stop))
    return acc.result(mode)
