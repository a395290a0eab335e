"""Running k-nearest lists, fed block by block: (distance, index) pairs packed into sortable
uint64 keys (ties to the lower index), :class:`_Nearest` (each row's k smallest so far),
and the selection of a distance block's candidates for the lists of its rows or of its
columns (numpy arrays or torch tensors, compared on their device)."""
from __future__ import annotations

import numpy as np

from .params import _CHUNK

_NONE = np.iinfo(np.int64).max  # index of an empty slot in a neighbour list, once decoded
_EMPTY = np.uint64(np.iinfo(np.uint64).max)  # an empty slot of a neighbour list
_SAMPLE = 8192  # entries of a list's first block that bound its k-th smallest


def _keys(dist: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(distance, index) pairs as uint64 keys ordered as the pairs are (distance first,
    ties to the lower index): the float32's bits made order-preserving above, the index
    (< 2^32) below. -0.0 is made 0.0 first, so that the two tie."""
    bits = (np.asarray(dist, np.float32) + np.float32(0.0)).view(np.uint32)
    bits = np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31)).astype(np.uint64)
    return (bits << np.uint64(32)) | np.asarray(index).astype(np.uint64)


def _unkey(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of keys; empty slots give (inf, _NONE)."""
    high = (keys >> np.uint64(32)).astype(np.uint32)
    dist = np.where(high >> 31, high & np.uint32(0x7FFFFFFF), ~high).view(np.float32)
    index = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    empty = keys == _EMPTY
    return np.where(empty, np.float32(np.inf), dist), np.where(empty, _NONE, index)


class _Nearest:
    """The k smallest (distance, index) seen so far per row, ties to the lower index,
    kept as sorted uint64 keys (:func:`_keys`). Candidates of a row must come in
    increasing index order (each pass below does): then one equal to the current k-th
    never displaces it, and the strict ``threshold`` filter loses nothing."""

    def __init__(self, n: int, k: int) -> None:
        self.key = np.full((n, k), _EMPTY, np.uint64)

    def threshold(self, rows: slice) -> np.ndarray:
        """The k-th distance of each row's list (inf while it holds fewer than k)."""
        return _unkey(self.key[rows, -1])[0]

    def push(self, rows: np.ndarray, dist: np.ndarray, index: np.ndarray) -> None:
        """Merge candidate triples (row, distance, index), any order and number: each
        touched row's candidates are cut to its k smallest, laid next to its list in one
        padded array, and every row sorted at once."""
        if len(rows) == 0:
            return
        k = self.key.shape[1]
        keys = _keys(dist, index)
        order = np.lexsort((keys, rows))
        rows, keys = rows[order], keys[order]
        touched, first, count = np.unique(rows, return_index=True, return_counts=True)
        rank = np.arange(len(rows)) - np.repeat(first, count)
        keep = rank < k
        width = int(min(count.max(), k))
        pad = np.full((len(touched), k + width), _EMPTY, np.uint64)
        pad[:, :k] = self.key[touched]
        pad[np.repeat(np.arange(len(touched)), count)[keep], k + rank[keep]] = keys[keep]
        pad.sort(axis=1)
        self.key[touched] = pad[:, :k]


def _merge(a: _Nearest, b: _Nearest, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(index, distance) of the k nearest of two lists over disjoint columns."""
    keys = np.sort(np.concatenate([a.key, b.key], axis=1), axis=1)[:, :k]
    dist, index = _unkey(keys)
    return index, dist


def _bound(block, k: int, axis: int) -> np.ndarray:
    """Per list (rows of the block: axis=1; columns: axis=0), a value with at least k of
    the list's entries in this block at or below it: the k-th smallest of its first
    _SAMPLE entries (torch: of all). Entries above it can never be among the list's k
    nearest; inf when the block holds k or fewer."""
    length, n_lists = block.shape[axis], block.shape[1 - axis]
    if length <= k:
        return np.full(n_lists, np.inf, np.float32)
    if not isinstance(block, np.ndarray):
        import torch

        return torch.topk(block, k, dim=axis, largest=False, sorted=False).values.amax(dim=axis).cpu().numpy()
    if axis == 1:
        return np.partition(block[:, :_SAMPLE], k - 1, axis=1)[:, k - 1]
    out = np.empty(n_lists, np.float32)
    part = block[:_SAMPLE]
    step = max(1, _CHUNK // len(part))  # per column: transposed chunks (a partition along
    for s in range(0, n_lists, step):   # axis 0 reads memory with a stride)
        out[s:s + step] = np.partition(np.ascontiguousarray(part[:, s:s + step].T), k - 1, axis=1)[:, k - 1]
    return out


def _candidates(block, thr: np.ndarray, k: int, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries of a (rows, cols) distance block that may enter the running lists of its
    rows (axis=1) or of its columns (axis=0), whose k-th distances are ``thr``: below thr
    where a list is full; at or below :func:`_bound` where it is not yet (the first
    block it sees). Returns (list, other, distance), list/other positions in the block.
    ``block``: numpy array, or torch tensor (the comparison then runs on its device)."""
    full = np.isfinite(thr)
    limit = thr if full.all() else np.where(full, thr, _bound(block, k, axis)).astype(np.float32)
    along = (slice(None), None) if axis == 1 else (None, slice(None))
    if isinstance(block, np.ndarray):
        where = block < limit[along]
        if not full.all():
            where |= (block == limit[along]) & ~full[along]
        r, c = np.divmod(np.flatnonzero(where), block.shape[1])  # 1-D: a few times faster than 2-D
        del where
        dist = block[r, c]
    else:
        import torch

        lim, open_ = (torch.from_numpy(x).to(block.device) for x in (limit, ~full))
        where = block < lim[along]
        if not full.all():
            where |= (block == lim[along]) & open_[along]
        r, c = torch.nonzero(where, as_tuple=True)
        dist = block[r, c].cpu().numpy()
        r, c = r.cpu().numpy(), c.cpu().numpy()
    return (r, c, dist) if axis == 1 else (c, r, dist)


def _push(nearest: _Nearest, row0: int, block, k: int, axis: int, index0: int) -> None:
    """Candidates of a block into the lists of its rows (axis=1: list row0 + block row;
    neighbour index index0 + column) or its columns (axis=0: list row0 + column;
    neighbour index0 + block row)."""
    n_lists = block.shape[0] if axis == 1 else block.shape[1]
    thr = nearest.threshold(slice(row0, row0 + n_lists))
    lists, others, dist = _candidates(block, thr, k, axis)
    nearest.push(row0 + lists, dist, index0 + others)


def _amax(block, axis: int) -> np.ndarray:
    if isinstance(block, np.ndarray):
        return block.max(axis=axis)
    return block.amax(dim=axis).cpu().numpy()
