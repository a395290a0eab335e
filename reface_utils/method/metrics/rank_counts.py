"""The rank-counting kernels of the metrics: where each good match stands in its row.

Nothing here argsorts a Q x G matrix. The only gallery entries whose position matters are
the query's own identity (good and junk); for each good match the number of entries before
it in the row, in (distance, gallery index) order, is counted -- with packed uint64 keys
for float32 rows (:func:`count_before`), with two vectorised passes over the row per
distinct value (``<`` and ``==``, the latter resolving ties by gallery index) when a large
gallery meets few good matches, otherwise by sorting the row (numpy's SIMD sort, several
rows per call) and binary searches. Every path gives the same exact counts. Memory is
O(block rows x gallery), which is what lets ``retrieval/`` evaluate LaST (10k x 125k)
block by block. ``-0.0`` and ``0.0`` are equal, as in numpy.

The metric threads (:func:`thread_pool`) split the counting over rows: numpy releases the
GIL in its passes, sorts and searches.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

from ...core.arrays import concat_ranges

__all__ = ["count_before", "ranking_order", "thread_pool"]


@lru_cache(maxsize=None)
def thread_pool(threads: int) -> ThreadPoolExecutor:
    """One shared pool per thread count (metrics and retrieval blocks run on it)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="reface-metrics")


def count_before(
    dist: np.ndarray, c_row: np.ndarray, c_col: np.ndarray, c_val: np.ndarray, b: int, threads: int = 1
) -> np.ndarray:
    """For each (row, col, value) candidate: #entries of the row before it in
    (distance, gallery index) order. Candidates come sorted by (row, value, col).

    float32 rows (retrieval's case): :func:`_count_packed`, chunks of rows at a time;
    rows it hands back (most of the row would need sorting) and other dtypes:
    :func:`_count_rows`, row by row. ``threads`` > 1 splits the rows between threads."""
    threads = max(1, int(threads))
    out = np.empty(len(c_row), dtype=np.int64)
    bounds = np.searchsorted(c_row, np.arange(b + 1))
    busy = np.flatnonzero(bounds[1:] > bounds[:-1])
    width = dist.shape[1]
    if dist.dtype == np.float32 and 0 < width < _KEY_COL_LIMIT and len(busy):
        rows_per_chunk = int(np.clip(_PACKED_CHUNK_ENTRIES // width, 1, _KEY_ROW_LIMIT))
        chunks = [busy[s:s + rows_per_chunk] for s in range(0, len(busy), rows_per_chunk)]
        handed_back = _run_split(lambda rows: _count_packed(dist, rows, bounds, c_col, c_val, out), chunks, threads)
        busy = np.concatenate(handed_back + [np.empty(0, np.int64)])
    if len(busy):
        chunks = [busy[i::threads] for i in range(threads)]  # interleaved for balance
        _run_split(lambda rows: _count_rows(dist, rows, bounds, c_col, c_val, out), chunks, threads)
    return out


def _run_split(work, chunks: list[np.ndarray], threads: int) -> list:
    """work(chunk) for each non-empty chunk of rows, on the metric threads (numpy
    releases the GIL in its passes, sorts and searches); the results in chunk order."""
    chunks = [c for c in chunks if len(c)]
    if threads == 1 or len(chunks) < 2:
        return [work(chunk) for chunk in chunks]
    pool = thread_pool(threads)
    return [job.result() for job in [pool.submit(work, chunk) for chunk in chunks]]


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
    """count_before's work for a chunk of float32 rows, without sorting whole rows.

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
    """count_before's work for some rows (writes disjoint slices of ``out``).

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


def ranking_order(row: np.ndarray, value: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Order of (row, value, col) triples, lexicographic. float32 values (the usual case)
    and small enough rows/cols pack into one unique uint64 key: one SIMD argsort instead
    of lexsort's three stable sorts."""
    if value.dtype != np.float32 or len(row) == 0 or row.max() >= _KEY_ROW_LIMIT or col.max() >= _KEY_COL_LIMIT:
        return np.lexsort((col, value, row))
    return np.argsort(_packed_keys(row, value, col))
