"""CMC and mAP for (clothes-changing) person re-identification, exact and block-wise.

The numbers are those of Simple-CCReID's ``tools/eval_metrics.py`` (``evaluate`` for
``mode="standard"``, ``evaluate_with_clothes`` for ``"CC"``/``"SC"``) with GEFF's addition
in CC mode (see docs/METHOD.md section 5):

* For a query, gallery entries of the same identity are *good* or *junk*; junk entries are
  removed from the ranking before CMC and AP are read off it.

  ========  =====================================  =========================================
  mode      good                                   junk
  ========  =====================================  =========================================
  standard  same pid, other camera                 same pid, same camera
  CC        same pid, other camera, other clothes  same pid and (same camera or same clothes)
  SC        same pid, other camera, same clothes   same pid and (same camera or other clothes)
  ========  =====================================  =========================================

* A query without any good match is skipped. In CC mode (GEFF) a query whose good matches
  all carry camera id ``-1`` (GEFF's enriched samples) is skipped too.
* AP = mean over the good matches i (in ranking order) of (i + 1) / (rank_i + 1), rank_i
  the 0-based position of good match i among the non-junk entries; CMC[r] = fraction of
  evaluated queries whose first good match is within the first r + 1 non-junk entries.

Ties. The reference sorts each row with numpy's default (unstable) quicksort, so tied
distances come out in an unspecified order. Here ties are broken by gallery index (the
order a stable sort gives), so the same input always gives the same numbers; on inputs
without ties both agree to rounding (1e-9). ``-0.0`` and ``0.0`` are equal, as in numpy.

NaN distances are rejected (``ValueError``): the reference silently ranks them last.

How it stays fast and small. Nothing here argsorts a Q x G matrix. The only gallery
entries whose position matters are the query's own identity (good and junk); for each good
match the number of entries before it in the row is counted -- with two vectorised passes
over the row per distinct value (``<`` and ``==``, the latter resolving ties by gallery
index) when a large gallery meets few good matches, otherwise by sorting the row (numpy's
SIMD sort, several rows per call) and binary searches -- and the junk entries before it
are counted among the few same-identity entries. Memory is O(block rows x gallery), which
is what lets ``retrieval.py`` evaluate LaST (10k x 125k) block by block.

Blocks are scored by a pure step (:meth:`MetricAccumulator.score_block` ->
:class:`BlockMetrics`: per-query AP and first good rank) and merged by
:meth:`MetricAccumulator.merge`; the CMC histogram and the AP sum are formed once from the
per-query arrays, so any block size, block order or place of scoring gives the same bits.

If no query is evaluated, the metrics are undefined: ``cmc`` is all NaN, ``mAP`` and every
``top(k)`` NaN, ``num_evaluated`` 0 (the reference's ``evaluate_with_clothes`` returns zeros,
which read as "every query failed"; its ``evaluate`` divides by zero).
"""
from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

from ..core.arrays import concat_ranges

__all__ = ["MODES", "BlockMetrics", "EvalResult", "MetricAccumulator", "evaluate", "thread_pool"]

MODES: tuple[str, ...] = ("standard", "CC", "SC")
# GEFF marks enriched samples with this camera id; in CC mode a query whose good
# matches all have it is skipped (GEFF ReIDModules/CAL/tools/eval_metrics.py).
ENRICHED_CAMID = -1


@dataclass(frozen=True, eq=False)
class EvalResult:
    """Metrics of one evaluation mode.

    ``cmc[r]`` is the fraction of evaluated queries with a good match within the first
    ``r + 1`` non-junk gallery entries (ranks 1..G). ``first_good_rank[q]`` is the 0-based
    rank of query q's first good match among non-junk entries, -1 if q was skipped (for
    figures; not part of the reference output).
    """

    mode: str
    cmc: np.ndarray
    mAP: float
    num_evaluated: int
    num_skipped: int
    first_good_rank: np.ndarray | None = field(default=None, repr=False)

    @property
    def top1(self) -> float:
        return self.top(1)

    def top(self, k: int) -> float:
        """CMC at rank k (1-based); ranks beyond the gallery size read the last value."""
        if k < 1:
            raise ValueError(f"rank k must be >= 1, got {k}")
        if self.cmc.size == 0:
            return float("nan") if self.num_evaluated == 0 else 0.0
        return float(self.cmc[min(k, self.cmc.size) - 1])

    def as_dict(self, ranks: Sequence[int] = (1, 5, 10, 20)) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {"mode": self.mode}
        out.update({f"top{k}": self.top(k) for k in ranks})
        out.update(mAP=self.mAP, evaluated=self.num_evaluated, skipped=self.num_skipped)
        return out


def _codes(query_values: np.ndarray, gallery_values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Joint integer codes of two label arrays (any dtype with equality and order)."""
    joint = np.concatenate([np.asarray(query_values).ravel(), np.asarray(gallery_values).ravel()])
    uniq, inverse = np.unique(joint, return_inverse=True)
    inverse = inverse.astype(np.int64, copy=False)
    n = len(np.asarray(query_values).ravel())
    return inverse[:n], inverse[n:], len(uniq)


def _is_enriched_camera(camids: np.ndarray) -> np.ndarray:
    camids = np.asarray(camids)
    if np.issubdtype(camids.dtype, np.number):
        return camids == ENRICHED_CAMID
    return np.zeros(camids.shape, dtype=bool)


@dataclass(frozen=True, eq=False)
class BlockMetrics:
    """The metric state of a block of queries, as :meth:`MetricAccumulator.score_block`
    returns it: picklable (numpy arrays only) and merged exactly, in any order, by
    :meth:`MetricAccumulator.merge`.

    rows: (b,) query indices. ap[mode]: (b,) float64 average precision (0 where skipped).
    first[mode]: (b,) int64 rank of the first good match among non-junk entries, -1 where
    the query is skipped.
    """

    rows: np.ndarray
    ap: dict[str, np.ndarray]
    first: dict[str, np.ndarray]


class MetricAccumulator:
    """Evaluate a Q x G distance matrix given block by block (rows = queries).

    >>> acc = MetricAccumulator(q_pids, g_pids, q_camids, g_camids, modes=("standard",))
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
        q_pids: np.ndarray,
        g_pids: np.ndarray,
        q_camids: np.ndarray,
        g_camids: np.ndarray,
        q_clothes_ids: np.ndarray | None = None,
        g_clothes_ids: np.ndarray | None = None,
        modes: Iterable[str] = ("standard",),
        threads: int = 1,
        cc_skip_enriched_only: bool = True,
    ) -> None:
        self.modes = tuple(modes)
        self.cc_skip_enriched_only = cc_skip_enriched_only
        self.threads = max(1, int(threads))
        for mode in self.modes:
            if mode not in MODES:
                raise ValueError(f"unknown evaluation mode {mode!r}; use one of {MODES}")
        if not self.modes:
            raise ValueError("give at least one evaluation mode")
        q_pids, g_pids = np.asarray(q_pids).ravel(), np.asarray(g_pids).ravel()
        q_camids, g_camids = np.asarray(q_camids).ravel(), np.asarray(g_camids).ravel()
        self.num_query, self.num_gallery = len(q_pids), len(g_pids)
        _check_len("q_camids", q_camids, self.num_query)
        _check_len("g_camids", g_camids, self.num_gallery)
        self._q_pid, self._g_pid, n_pids = _codes(q_pids, g_pids)
        self._q_cam, self._g_cam, _ = _codes(q_camids, g_camids)
        self._g_enriched_cam = _is_enriched_camera(g_camids)
        self._with_clothes = any(m != "standard" for m in self.modes)
        if self._with_clothes:
            if q_clothes_ids is None or g_clothes_ids is None:
                raise ValueError(
                    f"modes {self.modes} need clothes ids: pass q_clothes_ids and g_clothes_ids"
                )
            q_clothes_ids = np.asarray(q_clothes_ids).ravel()
            g_clothes_ids = np.asarray(g_clothes_ids).ravel()
            _check_len("q_clothes_ids", q_clothes_ids, self.num_query)
            _check_len("g_clothes_ids", g_clothes_ids, self.num_gallery)
            self._q_clo, self._g_clo, _ = _codes(q_clothes_ids, g_clothes_ids)
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
            count_before=lambda r, c, v: self._count_before(dist, r, c, v, len(rows)),
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
        order = _ranking_order(cand_row, values, cand_col)
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

    def _count_before(
        self, dist: np.ndarray, c_row: np.ndarray, c_col: np.ndarray, c_val: np.ndarray, b: int
    ) -> np.ndarray:
        """For each (row, col, value) candidate: #entries of the row before it in
        (distance, gallery index) order. Candidates come sorted by (row, value, col).

        float32 rows (retrieval's case): :func:`_count_packed`, chunks of rows at a time;
        rows it hands back (most of the row would need sorting) and other dtypes:
        :func:`_count_rows`, row by row."""
        out = np.empty(len(c_row), dtype=np.int64)
        bounds = np.searchsorted(c_row, np.arange(b + 1))
        busy = np.flatnonzero(bounds[1:] > bounds[:-1])
        width = dist.shape[1]
        if dist.dtype == np.float32 and 0 < width < _KEY_COL_LIMIT and len(busy):
            rows_per_chunk = int(np.clip(_PACKED_CHUNK_ENTRIES // width, 1, _KEY_ROW_LIMIT))
            chunks = [busy[s:s + rows_per_chunk] for s in range(0, len(busy), rows_per_chunk)]
            handed_back = self._run_split(lambda rows: _count_packed(dist, rows, bounds, c_col, c_val, out), chunks)
            busy = np.concatenate(handed_back + [np.empty(0, np.int64)])
        if len(busy):
            chunks = [busy[i::self.threads] for i in range(self.threads)]  # interleaved for balance
            self._run_split(lambda rows: _count_rows(dist, rows, bounds, c_col, c_val, out), chunks)
        return out

    def _run_split(self, work, chunks: list[np.ndarray]) -> list:
        """work(chunk) for each non-empty chunk of rows, on the metric threads (numpy
        releases the GIL in its passes, sorts and searches); the results in chunk order."""
        chunks = [c for c in chunks if len(c)]
        if self.threads == 1 or len(chunks) < 2:
            return [work(chunk) for chunk in chunks]
        pool = thread_pool(self.threads)
        return [job.result() for job in [pool.submit(work, chunk) for chunk in chunks]]

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
        else:  # nothing evaluated: undefined, not 0 (module docstring)
            cmc = np.full(self.num_gallery, np.nan)
            m_ap = float("nan")
        n_skip = int(self._added.sum()) - n
        return EvalResult(mode, cmc, float(m_ap), n, n_skip, first.copy())

    def results(self) -> dict[str, EvalResult]:
        return {m: self.result(m) for m in self.modes}


@lru_cache(maxsize=None)
def thread_pool(threads: int) -> ThreadPoolExecutor:
    """One shared pool per thread count (metrics and retrieval blocks run on it)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="reface-metrics")


# Rough costs on one core (measured: 2-core AVX-512 VM, numpy 2.4): a counting pass over
# a row (per entry, plus a fixed cost per call), and sorting rows (per entry; numpy's
# SIMD sort) plus two binary searches per row.
_PASS_NS_PER_ENTRY, _CALL_NS, _SORT_NS_PER_ENTRY = 0.1, 1000.0, 3.5
_SORT_CHUNK_ENTRIES = 1 << 22  # rows sorted together: at most 16 MiB of float32 at a time


# Packed keys (row, distance, gallery index) in one uint64: 12 + 32 + 20 bits.
_KEY_ROW_LIMIT, _KEY_COL_LIMIT = 1 << 12, 1 << 20
_PACKED_CHUNK_ENTRIES = 1 << 18  # rows compared per chunk: 1 MiB of float32 (cache-sized)
_PACKED_DENSE = 0.5  # rows needing more than this fraction of their entries go row by row


def _order_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> uint64 whose unsigned order is the float order (-0.0 ties with 0.0):
    negative floats get all bits flipped, others the sign bit set."""
    bits = (values + np.float32(0.0)).view(np.uint32)  # + 0.0: -0.0 becomes 0.0
    flip = bits >> np.uint32(31)
    flip *= np.uint32(0x7FFFFFFF)
    flip |= np.uint32(0x80000000)
    bits ^= flip
    return bits.astype(np.uint64)


def _packed_keys(row: np.ndarray, value: np.ndarray, col: np.ndarray) -> np.ndarray:
    keys = _order_bits(value)
    keys <<= np.uint64(20)
    keys |= col.astype(np.uint64, copy=False)
    keys |= row.astype(np.uint64) << np.uint64(52)
    return keys


def _values_at(block: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """block[row, col] through one flat take when rows are evenly strided (e.g. a view
    of the first columns of a wider buffer), which numpy's 2-D fancy indexing is not."""
    item = block.itemsize
    if block.ndim != 2 or block.strides[1] != item or block.strides[0] % item or block.strides[0] < 0:
        return block[row, col]
    stride = block.strides[0] // item
    span = (block.shape[0] - 1) * stride + block.shape[1] if block.size else 0
    flat = np.lib.stride_tricks.as_strided(block, shape=(span,), strides=(item,), writeable=False)
    return flat[row * stride + col]


def _count_packed(dist, rows, bounds, c_col, c_val, out) -> np.ndarray:
    """_count_before's work for a chunk of float32 rows, without sorting whole rows.

    An entry can come before a candidate only if its distance is at most the row's largest
    candidate distance: those entries (one comparison pass) are packed with their row and
    gallery index into uint64 keys and sorted together, and each candidate's count is the
    position of its own key among its row's keys (binary search) -- ties broken by
    gallery index exactly. Rows where more than half the entries qualify (e.g. a
    constant row) are returned for :func:`_count_rows`, whose full-row sort is cheaper."""
    sizes = bounds[rows + 1] - bounds[rows]
    highest = c_val[bounds[rows + 1] - 1]  # candidates sorted by value within a row
    width = dist.shape[1]
    contiguous = rows[-1] - rows[0] == len(rows) - 1
    block = dist[rows[0]:rows[-1] + 1] if contiguous else dist[rows]  # a view when it can
    flat = np.flatnonzero(block <= highest[:, None])  # (much faster than a 2-D nonzero)
    local = flat // width
    per_row = np.bincount(local, minlength=len(rows))
    dense = per_row > _PACKED_DENSE * width
    if dense.any():
        keep = ~dense[local]
        flat, local = flat[keep], local[keep]
        per_row[dense] = 0
    col = flat - local * width
    keys = _packed_keys(local, _values_at(block, local, col), col)
    keys.sort()
    row_start = np.concatenate(([0], np.cumsum(per_row)[:-1]))
    sparse = np.flatnonzero(~dense)
    counts = sizes[sparse]
    idx = concat_ranges(bounds[rows[sparse]], counts)
    cand_local = np.repeat(sparse, counts)
    position = np.searchsorted(keys, _packed_keys(cand_local, c_val[idx], c_col[idx]))
    out[idx] = position - row_start[cand_local]
    return rows[dense]


def _count_rows(dist, rows, bounds, c_col, c_val, out) -> None:
    """_count_before's work for some rows (writes disjoint slices of ``out``).

    Per row, either count entries below / equal to each distinct good value with two
    vectorised passes, or sort the row and binary-search the values, whichever the cost
    estimate prefers (large galleries with few good matches: passes; otherwise sort,
    several rows per call). Both give the same exact counts.
    """
    if len(rows) == 0:
        return
    width = dist.shape[1]
    # distinct values per row: runs of equal values share their counts
    # (whole rows tie for no-face queries)
    sizes = bounds[rows + 1] - bounds[rows]
    idx = concat_ranges(bounds[rows], sizes)
    vals = c_val[idx]
    row_first = np.cumsum(sizes) - sizes
    new_run = np.ones(len(idx), dtype=bool)
    new_run[1:] = vals[1:] != vals[:-1]
    new_run[row_first] = True  # each row starts a run
    n_runs = np.add.reduceat(new_run, row_first) if len(idx) else np.zeros(0, np.int64)
    pass_cost = n_runs * 2 * (_CALL_NS + width * _PASS_NS_PER_ENTRY)
    sort_cost = width * _SORT_NS_PER_ENTRY + 2 * _CALL_NS
    by_sort = pass_cost > sort_cost
    mask = np.empty(width, dtype=bool)
    for r in rows[~by_sort]:
        _count_row(dist[r], None, bounds[r], bounds[r + 1], c_col, c_val, out, mask)
    sort_rows = rows[by_sort]
    step = max(1, _SORT_CHUNK_ENTRIES // max(width, 1))
    for s in range(0, len(sort_rows), step):
        chunk = sort_rows[s:s + step]
        ordered = np.sort(dist[chunk], axis=1)
        for i, r in enumerate(chunk):
            start, stop = bounds[r], bounds[r + 1]
            vals = c_val[start:stop]
            below = ordered[i].searchsorted(vals, side="left")
            if (ordered[i].searchsorted(vals, side="right") - below == 1).all():
                out[start:stop] = below  # no ties (the common case): done
            else:
                _count_row(dist[r], ordered[i], start, stop, c_col, c_val, out, mask)


def _count_row(row, ordered, start, stop, c_col, c_val, out, mask) -> None:
    """Counts for the candidates start:stop of one row; ``ordered``: the sorted row or None
    (then counting passes)."""
    vals = c_val[start:stop]
    run_starts = np.flatnonzero(np.concatenate(([True], vals[1:] != vals[:-1])))
    run_stops = np.append(run_starts[1:], len(vals))
    if ordered is not None:
        run_vals = vals[run_starts]
        below_all = np.searchsorted(ordered, run_vals, side="left")
        ties_all = np.searchsorted(ordered, run_vals, side="right") - below_all
    for i, (s, e) in enumerate(zip(run_starts, run_stops)):
        v = vals[s]
        if ordered is None:
            below = np.count_nonzero(np.less(row, v, out=mask))
            ties = np.count_nonzero(np.equal(row, v, out=mask))
        else:
            below, ties = below_all[i], ties_all[i]
        if ties == 1:
            out[start + s] = below
        else:  # break ties by gallery index
            if ordered is not None:
                np.equal(row, v, out=mask)
            tied_cols = np.flatnonzero(mask)
            out[start + s:start + e] = below + np.searchsorted(tied_cols, c_col[start + s:start + e])


def _ranking_order(row: np.ndarray, value: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Order of (row, value, col) triples, lexicographic. float32 values (the usual case)
    and small enough rows/cols pack into one unique uint64 key: one SIMD argsort instead
    of lexsort's three stable sorts."""
    if value.dtype != np.float32 or len(row) == 0 or row.max() >= _KEY_ROW_LIMIT or col.max() >= _KEY_COL_LIMIT:
        return np.lexsort((col, value, row))
    return np.argsort(_packed_keys(row, value, col))


def _check_len(name: str, arr: np.ndarray, n: int) -> None:
    if len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} entries, expected {n}")


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
    reproduce ``evaluate_with_clothes`` (CC with GEFF's camera -1 rule). See the module
    docstring for ties (broken by gallery index) and NaN (rejected).
    """
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D (queries x gallery), got shape {distmat.shape}")
    acc = MetricAccumulator(q_pids, g_pids, q_camids, g_camids, q_clothes_ids, g_clothes_ids, modes=(mode,),
                            threads=threads, cc_skip_enriched_only=cc_skip_enriched_only)
    if distmat.shape != (acc.num_query, acc.num_gallery):
        raise ValueError(
            f"distmat has shape {distmat.shape}, but there are {acc.num_query} query and "
            f"{acc.num_gallery} gallery labels"
        )
    for start in range(0, acc.num_query, block_size):
        stop = min(start + block_size, acc.num_query)
        acc.add_block(distmat[start:stop], slice(start, stop))
    return acc.result(mode)
