"""ReID and face distances, gallery enrichment and their fusion (docs/METHOD.md section 4).

Every function works on a whole distance matrix or on a block of query rows, so that
``retrieval/`` can run them block-wise (its numpy and torch backends share ``fuse_into``
and ``EnrichmentLayout.lowest``, written for both); they compute in float32 (the features
are float32) and never change their inputs unless given ``out=`` that aliases one.

Conventions, each as the reference (GEFF ``Scripts/inference.py`` and
``FaceModules/insightface.py``) produces it:

* ReID distance = -cos(q, g) on L2-normalised features (``get_cosine_distmat``).
* Face distance = 1 - cos(face_q, face_g) (``face_inference``: ``1 - similarities``) with
  ``compute_similarities(gallery_enrichment=False)``'s conventions:

  - a query without a face keeps its initial similarity -1 to every gallery image, so its
    whole row is distance 2, same-camera entries included (the reference skips such
    queries before it applies the camera rule);
  - a gallery image without a face is a zero vector, so its similarity is 0 (distance 1);
  - for a query with a face, gallery images from the query's camera get similarity -inf,
    i.e. distance +inf (skipped when camera ids are not given, as for 42Street).

* Enrichment (``apply_enriched_gallery``): the distance to gallery image j becomes the
  minimum of its own distance and the distances to the enriched samples attached to j.
  GEFF applies it to the ReID distances only (``reid_inference``), then fuses.
* Fusion: alpha * reid + (1 - alpha) * face. The reference never forms the sum at
  alpha = 1 (ReID only) or alpha = 0 (face only); here too those give exactly the one
  input, so that 0 * inf never makes a NaN. For 0 < alpha < 1 an infinite face distance
  gives an infinite fused distance.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core.arrays import concat_ranges

__all__ = [
    "PRODUCT_TILE",
    "row_tiles",
    "cache_rows",
    "reid_distance",
    "face_distance",
    "same_camera_pairs",
    "CameraIndex",
    "EnrichmentLayout",
    "FaceGallery",
    "apply_enrichment",
    "enriched_distance",
    "fuse",
    "fuse_into",
    "zero_faceless_rows",
    "face_distance_into",
    "self_pairs",
]

NO_FACE_QUERY_DISTANCE = 2.0  # 1 - (-1): the reference's initial similarity for a query without face


def _features(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples x dims) array, got shape {x.shape}")
    if x.dtype != np.float32:
        x = x.astype(np.float32)  # one copy; pass float32 to avoid it
    return x


# Products are formed PRODUCT_TILE query rows per BLAS call. OpenBLAS rounds a float32
# product differently with the shape of the call (how it splits rows between threads and
# kernels), so a query's distances depend on its call; fixed tiles of the query set make
# every blocking whose blocks start at multiples of the tile give the same bits as one
# call on all queries (retrieval's default blocks are multiples of it).
PRODUCT_TILE = 512
CACHE_BYTES = 1 << 19  # elementwise work goes a few rows at a time: about 512 KiB per operand


def row_tiles(n: int, tile: int = PRODUCT_TILE) -> list[tuple[int, int]]:
    """(start, stop) of the PRODUCT_TILE-row tiles of n rows."""
    return [(s, min(s + tile, n)) for s in range(0, n, tile)]


def cache_rows(width: int) -> int:
    """Rows of ``width`` float32 columns that fit CACHE_BYTES (at least 1)."""
    return max(1, CACHE_BYTES // (4 * max(width, 1)))


def reid_distance(query: np.ndarray, gallery: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """(Q, G) float32 distances -cos(q, g) between L2-normalised ReID features (products in
    tiles of PRODUCT_TILE query rows)."""
    query, gallery = _features("query features", query), _features("gallery features", gallery)
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query features are {query.shape[1]}-d but gallery features {gallery.shape[1]}-d")
    if out is None:
        out = np.empty((len(query), len(gallery)), np.float32)
    for start, stop in row_tiles(len(query)):
        np.matmul(query[start:stop], gallery.T, out=out[start:stop])
    np.negative(out, out=out)
    return out


def zero_faceless_rows(embedding: np.ndarray, has_face: np.ndarray) -> np.ndarray:
    """Embeddings with the rows of images without a face set to zero (copies only if needed)."""
    embedding = _features("face embeddings", embedding)
    has_face = np.asarray(has_face, dtype=bool).ravel()
    if len(has_face) != len(embedding):
        raise ValueError(f"has_face has {len(has_face)} entries for {len(embedding)} face embeddings")
    if has_face.all() or not embedding[~has_face].any():
        return embedding
    embedding = embedding.copy()
    embedding[~has_face] = 0.0
    return embedding


class CameraIndex:
    """The gallery grouped by camera id, to list same-camera pairs of any block of queries
    without a Q x G mask (cost proportional to the number of pairs)."""

    def __init__(self, g_camids: np.ndarray) -> None:
        g_camids = np.asarray(g_camids).ravel()
        self.cameras, g_code = np.unique(g_camids, return_inverse=True)
        self._order = np.argsort(g_code, kind="stable")
        self._count = np.bincount(g_code, minlength=len(self.cameras))
        self._start = np.concatenate([[0], np.cumsum(self._count)[:-1]])

    def pairs(self, q_camids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query row, gallery column) pairs with equal camera ids."""
        q_camids = np.asarray(q_camids).ravel()
        if len(self.cameras) == 0 or len(q_camids) == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        pos = np.clip(np.searchsorted(self.cameras, q_camids), 0, len(self.cameras) - 1)
        per_query = np.where(self.cameras[pos] == q_camids, self._count[pos], 0)
        rows = np.repeat(np.arange(len(q_camids), dtype=np.int64), per_query)
        cols = self._order[concat_ranges(self._start[pos], per_query)]
        return rows, cols


    def fill(self, out: np.ndarray, q_camids: np.ndarray, rows: np.ndarray, value: float) -> None:
        """out[r, c] = value for the given query rows r and every gallery column c with r's
        camera: one 2-D assignment per camera (no list of pairs, which at PRCC scale would
        be a third of the block)."""
        q_camids = np.asarray(q_camids).ravel()
        rows = np.asarray(rows, dtype=np.int64).ravel()
        if len(self.cameras) == 0 or len(rows) == 0:
            return
        cams = q_camids[rows]
        pos = np.clip(np.searchsorted(self.cameras, cams), 0, len(self.cameras) - 1)
        hit = (self.cameras[pos] == cams) & (self._count[pos] > 0)
        rows, pos = rows[hit], pos[hit]
        if len(rows) == 0:  # e.g. LaST: every image its own camera
            return
        by_cam = np.argsort(pos, kind="stable")
        rows, pos = rows[by_cam], pos[by_cam]
        bounds = np.flatnonzero(np.concatenate(([True], pos[1:] != pos[:-1], [True])))
        for a, b in zip(bounds[:-1], bounds[1:]):
            cam = pos[a]
            cols = self._order[self._start[cam]:self._start[cam] + self._count[cam]]
            out[rows[a:b, None], cols] = value


def same_camera_pairs(q_camids: np.ndarray, g_camids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (query row, gallery column) pairs with equal camera ids."""
    return CameraIndex(g_camids).pairs(q_camids)


def face_distance(
    q_emb: np.ndarray,
    g_emb: np.ndarray,
    q_has_face: np.ndarray,
    g_has_face: np.ndarray,
    q_camids: np.ndarray | None = None,
    g_camids: np.ndarray | None = None,
    *,
    exclude_same_camera: bool = True,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """(Q, G) float32 face distances 1 - cos with the reference's conventions.

    Query without face -> 2 on its whole row; gallery image without face -> 1; same camera
    (query with a face, camera ids given, ``exclude_same_camera``) -> +inf.
    Embeddings are expected L2-normalised (``face.FaceFeatures.embedding``).
    """
    q_has_face = np.asarray(q_has_face, dtype=bool).ravel()
    q_emb = _features("query face embeddings", q_emb)
    if len(q_has_face) != len(q_emb):
        raise ValueError(f"q_has_face has {len(q_has_face)} entries for {len(q_emb)} query embeddings")
    gallery = FaceGallery(g_emb, g_has_face)
    if q_emb.shape[1] != gallery.dim:
        raise ValueError(f"query face embeddings are {q_emb.shape[1]}-d but gallery ones {gallery.dim}-d")
    pairs = None
    if exclude_same_camera and q_camids is not None and g_camids is not None:
        if len(q_camids) != len(q_emb) or len(g_camids) != len(gallery):
            raise ValueError("camera ids must have one entry per query / gallery embedding")
        pairs = same_camera_pairs(q_camids, g_camids)
    if out is None:
        out = np.empty((len(q_emb), len(gallery)), dtype=np.float32)
    return face_distance_into(out, q_emb, q_has_face, gallery, pairs)


class FaceGallery:
    """Gallery face embeddings prepared once: rows without a face are zero (similarity 0),
    and when few images have a face, the embeddings of those that do are kept compact so
    that only face-to-face similarities are computed (the rest are constants)."""

    DENSE_ABOVE = 0.75  # fraction of images with a face above which compaction does not pay

    def __init__(self, embedding: np.ndarray, has_face: np.ndarray) -> None:
        embedding = _features("gallery face embeddings", embedding)
        self.has_face = np.asarray(has_face, dtype=bool).ravel()
        if len(self.has_face) != len(embedding):
            raise ValueError(f"has_face has {len(self.has_face)} entries for {len(embedding)} face embeddings")
        self.dense = bool(self.has_face.mean() > self.DENSE_ABOVE) if len(self.has_face) else True
        self.cols = np.flatnonzero(self.has_face)
        self._size, self.dim = embedding.shape
        # dense: every row, the faceless ones zero; compact: only the rows with a face
        self.compact = (zero_faceless_rows(embedding, self.has_face) if self.dense
                        else np.ascontiguousarray(embedding[self.cols]))

    def __len__(self) -> int:
        return self._size


def face_distance_into(
    out: np.ndarray,
    q_emb: np.ndarray,
    q_has_face: np.ndarray,
    gallery: FaceGallery,
    same_camera: tuple[np.ndarray, np.ndarray] | tuple[CameraIndex, np.ndarray] | None,
    scratch: Callable[[str, int, int], np.ndarray] | None = None,
) -> np.ndarray:
    """face_distance's work with the gallery prepared; shared by face_distance and
    retrieval's blocks (so both give the same bits: products per PRODUCT_TILE query rows,
    over the rows of the tile that have a face). same_camera: the (row, col) pairs
    listed, or (CameraIndex of the gallery, the rows' camera ids). scratch(name, rows,
    cols): reusable float32 buffers (retrieval's Workspace.get), else fresh arrays."""
    scratch = scratch or (lambda name, rows, cols: np.empty((rows, cols), np.float32))
    q_has_face = np.asarray(q_has_face, dtype=bool).ravel()
    for start, stop in row_tiles(len(out)):
        faced = start + np.flatnonzero(q_has_face[start:stop])
        if len(faced) == 0:
            continue
        every = len(faced) == stop - start
        if gallery.dense:
            if every:
                np.matmul(q_emb[start:stop], gallery.compact.T, out=out[start:stop])
                np.subtract(np.float32(1.0), out[start:stop], out=out[start:stop])
                continue
            target = np.matmul(q_emb[faced], gallery.compact.T, out=scratch("face rows", len(faced), out.shape[1]))
            np.subtract(np.float32(1.0), target, out=target)
            out[faced] = target
            continue
        sims = np.matmul(q_emb[faced], gallery.compact.T, out=scratch("face sims", len(faced), len(gallery.cols)))
        # Spread over the gallery's columns a few rows at a time, in cache.
        step = cache_rows(out.shape[1])
        for a in range(0, len(faced), step):
            b = min(a + step, len(faced))
            chunk = sims[a:b]
            np.subtract(np.float32(1.0), chunk, out=chunk)
            target = scratch("face rows", step, out.shape[1])[:b - a]
            target.fill(1.0)  # gallery without face: similarity 0
            target[:, gallery.cols] = chunk
            if every:
                out[start + a:start + b] = target
            else:
                out[faced[a:b]] = target
    if isinstance(same_camera, tuple) and isinstance(same_camera[0], CameraIndex):
        same_camera[0].fill(out, same_camera[1], np.flatnonzero(q_has_face), np.inf)
    elif same_camera is not None and len(same_camera[0]):
        rows, cols = same_camera
        keep = q_has_face[rows]
        out[rows[keep], cols[keep]] = np.inf
    out[~q_has_face] = NO_FACE_QUERY_DISTANCE
    return out


@dataclass(frozen=True, eq=False)
class EnrichmentLayout:
    """The enriched samples laid out so that the smallest distance per gallery image is a
    few contiguous elementwise minima (no per-group reduction, no gather).

    Groups (the samples attached to one gallery image) are ranked by size, largest first
    (ties: lower gallery column first). Level k holds the k-th sample of every group that
    has more than k samples: since those groups are the first ``level_counts[k]`` ranks,
    level k is one contiguous run aligned with level 0.

    order: (E,) the sample at each position; position: (E,) the position of each sample;
    cols: (groups,) the gallery column of each group rank; level_counts: (levels,).
    """

    order: np.ndarray
    position: np.ndarray
    cols: np.ndarray
    level_counts: np.ndarray

    @classmethod
    def of(cls, enriched_to_gallery: np.ndarray) -> "EnrichmentLayout":
        e2g = np.asarray(enriched_to_gallery, dtype=np.int64).ravel()
        if len(e2g) == 0:
            empty = np.zeros(0, np.int64)
            return cls(empty, empty, empty, empty)
        cols, group, sizes = np.unique(e2g, return_inverse=True, return_counts=True)
        by_size = np.argsort(-sizes, kind="stable")
        rank = np.argsort(by_size)[group]            # group rank of each sample
        by_group = np.argsort(rank, kind="stable")   # samples grouped, sample order within
        starts = np.concatenate(([0], np.cumsum(sizes[by_size])[:-1]))
        level = np.empty(len(e2g), np.int64)
        level[by_group] = np.arange(len(e2g)) - np.repeat(starts, sizes[by_size])
        level_counts = np.bincount(level)
        level_start = np.concatenate(([0], np.cumsum(level_counts)[:-1]))
        position = level_start[level] + rank
        order = np.empty(len(e2g), np.int64)
        order[position] = np.arange(len(e2g))
        return cls(order, position, cols[by_size], level_counts)

    def lowest(self, samples: np.ndarray, *, out: np.ndarray | None = None, xp=np) -> np.ndarray:
        """(rows, groups) smallest distance per group, from (rows, E) distances to the
        samples in layout order: a new array, or written to ``out``. ``xp``: the array
        namespace (numpy, or torch for tensors, with ``out`` given): the same minima."""
        counts = self.level_counts
        if out is None:
            out = np.empty((samples.shape[0], len(self.cols)), samples.dtype)
        if len(counts) == 0:
            return out
        out[...] = samples[:, :counts[0]]
        offset = counts[0]
        for n in counts[1:]:
            xp.minimum(out[:, :n], samples[:, offset:offset + n], out=out[:, :n])
            offset += n
        return out


def enriched_distance(query: np.ndarray, enriched: np.ndarray, enriched_to_gallery: np.ndarray) -> np.ndarray:
    """(Q, E) ReID distances -cos from queries to enriched samples (sample order), formed
    as retrieval's blocks form them: the product over the samples in EnrichmentLayout
    order (so that the blocks read each group's samples as contiguous runs, no gather).
    A BLAS rounds a column by its position in the call, so this, not
    ``reid_distance(query, enriched)``, gives the block-wise stage's bits."""
    layout = EnrichmentLayout.of(enriched_to_gallery)
    enriched = _features("enriched features", enriched)
    if len(layout.order) != len(enriched):
        raise ValueError(f"enriched_to_gallery has {len(layout.order)} entries for {len(enriched)} enriched samples")
    return reid_distance(query, enriched[layout.order])[:, layout.position]


def apply_enrichment(
    distmat: np.ndarray,
    enriched_distmat: np.ndarray,
    enriched_to_gallery: np.ndarray,
    *,
    query_indices: np.ndarray | None = None,
    enriched_query_indices: np.ndarray | None = None,
    exclude_self: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Gallery distances lowered to those of the enriched samples attached to each image.

    distmat: (Q, G) distances query -> gallery; enriched_distmat: (Q, E) distances
    query -> enriched sample; enriched_to_gallery: (E,) gallery index each sample is
    attached to. Result[:, j] = min(distmat[:, j], min_{e: enriched_to_gallery[e] == j}
    enriched_distmat[:, e]).

    exclude_self: ignore a query's distance to its own enriched copy (docs/METHOD.md section 4
    note: the reference keeps it, which makes that query's best match distance -1). Needs
    ``query_indices`` (Q,) -- the query index of each row -- and ``enriched_query_indices``
    (E,) -- the query each sample was made from, in the same numbering.

    Returns a new array unless ``out`` is given (``out=distmat`` works in place).
    """
    distmat = np.asarray(distmat)
    enriched_distmat = np.asarray(enriched_distmat)
    e2g = np.asarray(enriched_to_gallery, dtype=np.int64).ravel()
    if enriched_distmat.shape != (distmat.shape[0], len(e2g)):
        raise ValueError(
            f"enriched_distmat must have shape ({distmat.shape[0]}, {len(e2g)}), got {enriched_distmat.shape}"
        )
    if len(e2g) and (e2g.min() < 0 or e2g.max() >= distmat.shape[1]):
        raise ValueError(f"enriched_to_gallery must index the {distmat.shape[1]} gallery columns")
    if out is None:
        out = distmat.copy()
    elif out is not distmat:
        np.copyto(out, distmat)
    if len(e2g) == 0:
        return out
    layout = EnrichmentLayout.of(e2g)
    ordered = np.take(enriched_distmat, layout.order, axis=1)  # a copy: (Q, E) is small next to (Q, G)
    if exclude_self:
        if query_indices is None or enriched_query_indices is None:
            raise ValueError("exclude_self needs query_indices and enriched_query_indices")
        rows, samples = self_pairs(np.asarray(query_indices).ravel(), np.asarray(enriched_query_indices).ravel())
        ordered[rows, layout.position[samples]] = np.inf
    lowest = layout.lowest(ordered)
    out[:, layout.cols] = np.minimum(out[:, layout.cols], lowest)
    return out


def self_pairs(row_query: np.ndarray, sample_query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, sample) pairs where a row's query made that sample (vectorised join)."""
    if len(row_query) == 0 or len(sample_query) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    s_order = np.argsort(sample_query, kind="stable")
    s_sorted = sample_query[s_order]
    lo = np.searchsorted(s_sorted, row_query, side="left")
    hi = np.searchsorted(s_sorted, row_query, side="right")
    n = hi - lo
    rows = np.repeat(np.arange(len(row_query), dtype=np.int64), n)
    return rows, s_order[concat_ranges(lo, n)]


def fuse(
    reid_distmat: np.ndarray, face_distmat: np.ndarray, alpha: float, *, out: np.ndarray | None = None
) -> np.ndarray:
    """alpha * reid + (1 - alpha) * face (docs/METHOD.md section 4; paper: alpha = 0.75).

    alpha = 1 returns the ReID distances and alpha = 0 the face distances exactly (copies,
    or written to ``out``). In between, +inf face distances stay +inf. The sum is formed
    as (1 - alpha) * (face + reid * alpha / (1 - alpha)), three in-place passes with no
    temporary, which rounds within float32 precision of the textbook form.
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    reid_distmat, face_distmat = np.asarray(reid_distmat), np.asarray(face_distmat)
    if reid_distmat.shape != face_distmat.shape:
        raise ValueError(f"ReID distances {reid_distmat.shape} and face distances {face_distmat.shape} differ in shape")
    dtype = np.result_type(reid_distmat.dtype, face_distmat.dtype, np.float32)
    if out is None:
        out = np.empty(reid_distmat.shape, dtype=dtype)
    if alpha == 1.0:
        np.copyto(out, reid_distmat)
        return out
    if alpha == 0.0:
        np.copyto(out, face_distmat)
        return out
    if out is face_distmat:
        raise ValueError("out may alias the ReID distances, not the face distances")
    return fuse_into(reid_distmat, face_distmat, alpha, out, dtype=dtype)


def fuse_into(reid, face, alpha: float, out, *, xp=np, dtype=np.float32):
    """The fused distance for 0 < alpha < 1, written to ``out`` (which may alias ``reid``,
    not ``face``): (1 - alpha) * (face + reid * (alpha / (1 - alpha))), three in-place
    passes, the two constants rounded to ``dtype``. ``xp``: the array namespace, numpy or
    torch (for tensors): the same passes with the same constants, so the same bits. No
    checks: :func:`fuse` is the checked entry point; retrieval's backends call this."""
    dtype = np.dtype(dtype).type
    xp.multiply(reid, dtype(alpha / (1.0 - alpha)), out=out)
    xp.add(out, face, out=out)
    xp.multiply(out, dtype(1.0 - alpha), out=out)
    return out
