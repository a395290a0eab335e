"""Gallery enrichment (docs/METHOD.md section 3): label queries by face, as an index.

For every query with an accepted face, find the most similar gallery face that the
protocol allows (other camera; with ``clothes_changing`` also other clothes). If the
similarity reaches ``sim_threshold`` (and, with ``rank_diff > 0``, the best identity
beats the runner-up identity by at least ``rank_diff``), the query becomes an
*enriched sample* attached to that gallery image and inherits its identity. Fusion
(:mod:`reface_utils.method.fusion`) then lets a gallery image be reached through its enriched
samples. The reference copies image files into the dataset; here the result is a table
of indices, and no file is touched.

Everything is vectorised and block-wise over queries: one matrix product per block of
queries against all gallery faces (float32), so LaST (10k queries x 125k gallery) never
holds a full query x gallery matrix.

Conventions and deviations from the reference (GEFF ``FaceModules/insightface.py``)
-------------------------------------------------------------------------------
- Gallery images without an accepted face are *excluded*. The reference gives them a
  zero face vector, i.e. similarity 0. That only matters (a) when ``sim_threshold <= 0``
  (the reference could then attach a query to a face-less gallery image) and (b) for
  ``rank_diff``: the reference's identity scores include those zeros, so a runner-up
  identity never scores below 0 if it has an allowed face-less image; here identity
  scores are over face images only (an identity without any allowed face image does not
  compete, and with a single competing identity the gap is +inf, as it is in effect in
  the reference, where an identity with no allowed image scores about -1.8e308).
- A query without an accepted face is never enriched (the reference scores it -1 and
  would enrich it if ``sim_threshold <= -1``).
- Clothes-changing exclusion: the reference computes positions of same-clothes images
  among *face* gallery images and then writes -inf at those positions of the *full*
  gallery row (wrong array). We exclude what it documents: gallery images whose
  clothes id equals the query's.
- Ties: the best match is the lowest gallery index among equal similarities (numpy
  argmax, as the reference).
- ``vote_by_track`` (video, reference ``predict_labels_with_majority_vote``): see
  :func:`enrich_gallery`. The reference groups consecutive frames of a sequence and
  breaks vote ties by the first label met; we group by the ``track`` column and break
  ties by the larger summed similarity, then the smaller pid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .features import FaceFeatures, unit_rows

__all__ = ["Enrichment", "Matches", "enrich_gallery", "enrichment_sweep", "best_matches"]

#: Elements of one query-block x gallery similarity block (float32: 128 MiB).
_BLOCK_ELEMENTS = 1 << 25


@dataclass
class Enrichment:
    """Result of :func:`enrich_gallery`.

    ``samples``: one row per enriched sample: ``query_index``, ``gallery_index`` (the
    gallery image it is attached to), ``pid`` (predicted: that image's pid),
    ``similarity`` (face cosine similarity between the query and that image; NaN where
    a track vote attached a face-less frame), ``true_pid`` when the query table has
    pids, and with ``vote_by_track`` also ``track`` and ``own_match`` (the frame itself
    matched this pid above the thresholds).
    ``queries``: one row per query: ``has_face``, ``best_gallery_index`` (-1: none
    allowed), ``best_similarity`` (-inf: none), ``identity_gap`` (NaN unless
    ``rank_diff > 0``), ``matched`` (passed the thresholds by itself).
    ``summary``: counts and, when labels are known, ``precision`` (fraction of enriched
    samples whose predicted pid is the query's true pid).
    """

    samples: pd.DataFrame
    queries: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Matches:
    """Best allowed gallery face per query (the expensive part, computed once)."""

    has_face: np.ndarray          # bool (Q,), after the detection threshold
    best_index: np.ndarray        # int64 (Q,), gallery row, -1 where nothing is allowed
    best_similarity: np.ndarray   # float32 (Q,), -inf where nothing is allowed
    identity_gap: np.ndarray      # float32 (Q,), best minus second identity score; NaN if not computed


# --------------------------------------------------------------------------- inputs
def _column(meta: pd.DataFrame, name: str, role: str, why: str) -> np.ndarray:
    if name not in meta.columns:
        raise KeyError(f"{role} table has no '{name}' column (needed for {why}); columns: {list(meta.columns)}")
    return meta[name].to_numpy()


def _joint_codes(query_values: np.ndarray, gallery_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes with equal values -> equal codes; missing values never equal anything."""
    codes, _ = pd.factorize(pd.Series(np.concatenate([np.asarray(query_values, object),
                                                      np.asarray(gallery_values, object)])))
    q, g = codes[:len(query_values)].astype(np.int64), codes[len(query_values):].astype(np.int64)
    q[q < 0] = -1
    g[g < 0] = -2
    return q, g


@dataclass
class _Problem:
    """Thresholded, normalised inputs shared by the matching passes."""

    query: FaceFeatures
    gallery_rows: np.ndarray      # gallery indices of the gallery images with an accepted face
    query_emb: np.ndarray         # (Q, D) unit rows
    gallery_emb: np.ndarray       # (Gf, D) unit rows of the face gallery images
    query_cam: np.ndarray
    gallery_cam: np.ndarray       # (Gf,)
    query_clothes: np.ndarray | None
    gallery_clothes: np.ndarray | None  # (Gf,)
    gallery_pid_code: np.ndarray  # (Gf,) codes in sorted pid order
    pid_values: np.ndarray        # code -> gallery pid value
    gallery_pids: np.ndarray      # (G,) gallery pid values


def _problem(query_faces: FaceFeatures, gallery_faces: FaceFeatures, query_meta: pd.DataFrame,
             gallery_meta: pd.DataFrame, det_threshold: float | None, clothes_changing: bool) -> _Problem:
    if len(query_faces) != len(query_meta):
        raise ValueError(f"{len(query_faces)} query face rows but {len(query_meta)} query table rows")
    if len(gallery_faces) != len(gallery_meta):
        raise ValueError(f"{len(gallery_faces)} gallery face rows but {len(gallery_meta)} gallery table rows")
    if query_faces.dim != gallery_faces.dim:
        raise ValueError(f"query and gallery face embeddings differ in size ({query_faces.dim} vs "
                         f"{gallery_faces.dim}): were they made by the same face model?")
    if det_threshold is not None:
        query_faces = query_faces.thresholded(det_threshold)
        gallery_faces = gallery_faces.thresholded(det_threshold)
    rows = np.flatnonzero(gallery_faces.has_face)
    q_cam, g_cam = _joint_codes(_column(query_meta, "camid", "query", "the camera exclusion"),
                                _column(gallery_meta, "camid", "gallery", "the camera exclusion"))
    q_clo = g_clo = None
    if clothes_changing:
        q_clo, g_clo = _joint_codes(_column(query_meta, "clothes_id", "query", "clothes_changing=True"),
                                    _column(gallery_meta, "clothes_id", "gallery", "clothes_changing=True"))
        g_clo = g_clo[rows]
    g_pids = _column(gallery_meta, "pid", "gallery", "the predicted identities")
    codes, values = pd.factorize(pd.Series(g_pids[rows]), sort=True)
    return _Problem(query=query_faces, gallery_rows=rows,
                    query_emb=unit_rows(query_faces.embedding), gallery_emb=unit_rows(gallery_faces.embedding[rows]),
                    query_cam=q_cam, gallery_cam=g_cam[rows], query_clothes=q_clo, gallery_clothes=g_clo,
                    gallery_pid_code=codes.astype(np.int64), pid_values=np.asarray(values), gallery_pids=g_pids)


def _block_rows(block_size: int | None, gallery_faces: int) -> int:
    if block_size is None:
        return int(np.clip(_BLOCK_ELEMENTS // max(gallery_faces, 1), 1, 4096))
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    return int(block_size)


# --------------------------------------------------------------------------- matching
def _match(p: _Problem, queries: np.ndarray, *, with_gap: bool, block_size: int | None,
           only_pid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best allowed gallery face for ``queries`` (indices of queries with a face).

    ``only_pid`` (codes per query, aligned with ``queries``) restricts each query to one
    identity. Returns gallery indices (-1: none), similarities (-inf: none), gaps.
    """
    n = len(queries)
    best_index = np.full(n, -1, np.int64)
    best_sim = np.full(n, -np.inf, np.float32)
    gap = np.full(n, np.nan, np.float32)
    if n == 0 or len(p.gallery_rows) == 0:
        return best_index, best_sim, gap
    g_t = np.ascontiguousarray(p.gallery_emb.T)
    if with_gap:
        # identity scores by max over contiguous runs of the pid-sorted face columns
        by_pid = np.argsort(p.gallery_pid_code, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(p.gallery_pid_code[by_pid]) != 0])
    step = _block_rows(block_size, len(p.gallery_rows))
    for s in range(0, n, step):
        q = queries[s:s + step]
        sim = p.query_emb[q] @ g_t                                   # (b, Gf) cosine
        excluded = p.query_cam[q][:, None] == p.gallery_cam[None, :]  # same camera
        if p.query_clothes is not None:                              # same clothes (CC)
            excluded |= p.query_clothes[q][:, None] == p.gallery_clothes[None, :]
        if only_pid is not None:
            excluded |= only_pid[s:s + step][:, None] != p.gallery_pid_code[None, :]
        sim[excluded] = -np.inf
        arg = sim.argmax(axis=1)                                     # ties: lowest index
        top = sim[np.arange(len(q)), arg]
        found = top > -np.inf
        best_index[s:s + step] = np.where(found, p.gallery_rows[arg], -1)
        best_sim[s:s + step] = top
        if with_gap:
            ids = np.maximum.reduceat(sim[:, by_pid], starts, axis=1)  # (b, identities)
            if ids.shape[1] < 2:
                g = np.full(len(q), np.inf, np.float32)
            else:
                two = np.partition(ids, ids.shape[1] - 2, axis=1)[:, -2:]
                with np.errstate(invalid="ignore"):  # no runner-up allowed: x - (-inf) = +inf
                    g = two[:, 1] - two[:, 0]
            g[~found] = np.nan
            gap[s:s + step] = g
    return best_index, best_sim, gap


def best_matches(query_faces: FaceFeatures, gallery_faces: FaceFeatures, query_meta: pd.DataFrame,
                 gallery_meta: pd.DataFrame, *, det_threshold: float | None, clothes_changing: bool,
                 with_gap: bool = False, block_size: int | None = None) -> Matches:
    """Best allowed gallery face of every query (thresholds not applied yet)."""
    p = _problem(query_faces, gallery_faces, query_meta, gallery_meta, det_threshold, clothes_changing)
    return _matches(p, with_gap=with_gap, block_size=block_size)


def _matches(p: _Problem, *, with_gap: bool, block_size: int | None) -> Matches:
    q = len(p.query)
    faces = np.flatnonzero(p.query.has_face)
    idx, sim, gap = _match(p, faces, with_gap=with_gap, block_size=block_size)
    m = Matches(has_face=p.query.has_face.copy(), best_index=np.full(q, -1, np.int64),
                best_similarity=np.full(q, -np.inf, np.float32), identity_gap=np.full(q, np.nan, np.float32))
    m.best_index[faces], m.best_similarity[faces], m.identity_gap[faces] = idx, sim, gap
    return m


def _matched_pid_codes(p: _Problem, m: Matches, matched: np.ndarray) -> np.ndarray:
    """Pid code of each matched query's best gallery face, -1 for the others."""
    code_of_gallery = np.full(len(p.gallery_pids), -1, np.int64)
    code_of_gallery[p.gallery_rows] = p.gallery_pid_code
    codes = np.full(len(matched), -1, np.int64)
    codes[matched] = code_of_gallery[m.best_index[matched]]
    return codes


def _accepted(m: Matches, sim_threshold: float, rank_diff: float) -> np.ndarray:
    ok = m.has_face & (m.best_index >= 0) & (m.best_similarity >= np.float32(sim_threshold))
    if rank_diff > 0:
        with np.errstate(invalid="ignore"):
            ok &= m.identity_gap >= np.float32(rank_diff)
    return ok


# --------------------------------------------------------------------------- tracks
def _track_votes(tracks: np.ndarray, voters: np.ndarray, pid_code: np.ndarray,
                 similarity: np.ndarray) -> pd.DataFrame:
    """Winning pid code per track from its voting frames (frames of ``voters``).

    Majority of votes; ties -> larger summed similarity, then smaller pid. Returns
    one row per track that has votes: ``track``, ``pid_code``, ``anchor`` (the query
    with the highest similarity among those that voted for the winner; ties -> lowest
    query index).
    """
    v = np.flatnonzero(voters)
    if len(v) == 0:
        return pd.DataFrame({"track": tracks[:0], "pid_code": np.zeros(0, np.int64),
                             "anchor": np.zeros(0, np.int64)})
    votes = pd.DataFrame({"track": tracks[v], "pid_code": pid_code[v], "sim": similarity[v].astype(np.float64),
                          "query": v})
    tally = votes.groupby(["track", "pid_code"], sort=False).agg(n=("sim", "size"), total=("sim", "sum")).reset_index()
    tally = tally.sort_values(["n", "total", "pid_code"], ascending=[False, False, True], kind="stable")
    winners = tally.drop_duplicates("track")[["track", "pid_code"]]
    best = votes.merge(winners, on=["track", "pid_code"])
    best = best.sort_values(["sim", "query"], ascending=[False, True], kind="stable").drop_duplicates("track")
    return best.rename(columns={"query": "anchor"})[["track", "pid_code", "anchor"]].reset_index(drop=True)


def _frame_labels(tracks: np.ndarray, winners: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the track's winning pid code and anchor query (-1 where the track has none)."""
    lookup = pd.DataFrame({"track": tracks}).merge(winners, on="track", how="left")
    label = lookup["pid_code"].fillna(-1).to_numpy(np.int64)
    anchor = lookup["anchor"].fillna(-1).to_numpy(np.int64)
    return label, anchor


def _tracks(query_meta: pd.DataFrame) -> np.ndarray:
    tracks = _column(query_meta, "track", "query", "vote_by_track=True")
    if pd.isna(tracks).any():
        raise ValueError(f"query 'track' column has {int(pd.isna(tracks).sum())} missing values: "
                         "every frame needs its track for vote_by_track=True")
    return tracks


def _true_pids(query_meta: pd.DataFrame) -> np.ndarray | None:
    if "pid" not in query_meta.columns or not query_meta["pid"].notna().any():
        return None
    return query_meta["pid"].to_numpy()


def _precision(predicted: np.ndarray, true: np.ndarray | None) -> tuple[int | None, float]:
    if true is None:
        return None, float("nan")
    known = pd.notna(true)
    correct = int(np.sum((predicted == true) & known))
    return correct, (correct / int(known.sum())) if known.any() else float("nan")


# --------------------------------------------------------------------------- public
def enrich_gallery(query_faces: FaceFeatures, gallery_faces: FaceFeatures, query_meta: pd.DataFrame,
                   gallery_meta: pd.DataFrame, *, det_threshold: float | None, sim_threshold: float,
                   clothes_changing: bool, rank_diff: float = 0.0, vote_by_track: bool = False,
                   block_size: int | None = None) -> Enrichment:
    """Enriched samples of docs/METHOD.md section 3 (see the module docstring for conventions).

    ``query_meta``/``gallery_meta``: rows aligned with the face features, columns
    ``pid`` (gallery; query optional, for precision), ``camid``, ``clothes_id`` (with
    ``clothes_changing``), ``track`` (queries, with ``vote_by_track``).
    ``det_threshold``: applied to both sides (None: use the features as given).
    ``block_size``: queries per matrix-product block (None: as many as fit 128 MiB).

    ``vote_by_track``: a frame votes when it matched by itself (face, thresholds
    passed); each track takes the majority pid of its votes, and every frame of the
    track, with or without a face, becomes a sample with that pid. A frame with a face
    is attached to its most similar allowed gallery image *of that pid*; a frame without
    a face (or with no allowed image of that pid) is attached to the gallery match of the
    track's anchor (its highest-similarity frame among those that voted for the winner).
    Tracks without votes give no samples.
    """
    p = _problem(query_faces, gallery_faces, query_meta, gallery_meta, det_threshold, clothes_changing)
    m = _matches(p, with_gap=rank_diff > 0, block_size=block_size)
    matched = _accepted(m, sim_threshold, rank_diff)
    true = _true_pids(query_meta)
    queries = pd.DataFrame({"has_face": m.has_face, "best_gallery_index": m.best_index,
                            "best_similarity": m.best_similarity, "identity_gap": m.identity_gap,
                            "matched": matched})
    own_code = _matched_pid_codes(p, m, matched)

    extra: dict[str, Any] = {}
    if not vote_by_track:
        sel = np.flatnonzero(matched)
        gallery_index = m.best_index[sel]
        similarity = m.best_similarity[sel].astype(np.float64)
        columns: dict[str, Any] = {}
    else:
        tracks = _tracks(query_meta)
        winners = _track_votes(tracks, matched, own_code, m.best_similarity)
        label, anchor = _frame_labels(tracks, winners)
        sel = np.flatnonzero(label >= 0)
        gallery_index = np.full(len(sel), -1, np.int64)
        similarity = np.full(len(sel), np.nan)
        own = matched[sel] & (own_code[sel] == label[sel])
        gallery_index[own] = m.best_index[sel[own]]
        similarity[own] = m.best_similarity[sel[own]]
        # other frames with a face: best allowed gallery image of the track's pid
        redo = ~own & m.has_face[sel]
        idx, sim, _ = _match(p, sel[redo], with_gap=False, block_size=block_size, only_pid=label[sel[redo]])
        gallery_index[redo], similarity[redo] = idx, np.where(idx >= 0, sim, np.nan)
        fallback = gallery_index < 0
        gallery_index[fallback] = m.best_index[anchor[sel[fallback]]]
        columns = {"track": tracks[sel], "own_match": own}
        extra = {"tracks": int(pd.Series(tracks).nunique()), "tracks_labelled": len(winners),
                 "voting_frames": int(matched.sum())}

    samples = pd.DataFrame({"query_index": sel.astype(np.int64), "gallery_index": gallery_index,
                            "pid": p.gallery_pids[gallery_index] if len(sel) else p.gallery_pids[:0],
                            "similarity": similarity, **columns})
    if true is not None:
        samples["true_pid"] = true[sel]
    correct, precision = _precision(samples["pid"].to_numpy(), true[sel] if true is not None else None)
    summary = {"queries": len(query_meta), "queries_with_face": int(m.has_face.sum()),
               "gallery": len(gallery_meta), "gallery_with_face": len(p.gallery_rows),
               "matched": int(matched.sum()), "enriched": len(samples), "correct": correct,
               "precision": precision, "det_threshold": det_threshold, "sim_threshold": sim_threshold,
               "rank_diff": rank_diff, "clothes_changing": clothes_changing, "vote_by_track": vote_by_track,
               **extra}
    return Enrichment(samples=samples, queries=queries, summary=summary)


def enrichment_sweep(query_faces: FaceFeatures, gallery_faces: FaceFeatures, query_meta: pd.DataFrame,
                     gallery_meta: pd.DataFrame, *, det_threshold: float | None, thresholds: Sequence[float],
                     clothes_changing: bool, rank_diff: float = 0.0, vote_by_track: bool = False,
                     block_size: int | None = None) -> pd.DataFrame:
    """Enrichment size and precision for many similarity thresholds at the cost of one.

    The best matches are computed once; each similarity threshold is then a mask. One
    row per threshold: ``threshold``, ``enriched``, ``correct``, ``precision``,
    ``queries_with_face``, ``enriched_fraction`` (of all queries). With
    ``vote_by_track`` the counts are those of :func:`enrich_gallery` (every frame of a
    labelled track), and the predicted pids the same.
    """
    p = _problem(query_faces, gallery_faces, query_meta, gallery_meta, det_threshold, clothes_changing)
    m = _matches(p, with_gap=rank_diff > 0, block_size=block_size)
    true = _true_pids(query_meta)
    tracks = _tracks(query_meta) if vote_by_track else None
    with_face = int(m.has_face.sum())
    rows = []
    for t in thresholds:
        matched = _accepted(m, float(t), rank_diff)
        code = _matched_pid_codes(p, m, matched)
        if vote_by_track:
            label, _ = _frame_labels(tracks, _track_votes(tracks, matched, code, m.best_similarity))
            sel = np.flatnonzero(label >= 0)
            predicted = p.pid_values[label[sel]] if len(sel) else p.gallery_pids[:0]
        else:
            sel = np.flatnonzero(matched)
            predicted = p.gallery_pids[m.best_index[sel]]
        correct, precision = _precision(predicted, true[sel] if true is not None else None)
        rows.append({"threshold": float(t), "enriched": len(sel), "correct": correct, "precision": precision,
                     "queries_with_face": with_face,
                     "enriched_fraction": len(sel) / len(query_meta) if len(query_meta) else float("nan")})
    return pd.DataFrame(rows)
