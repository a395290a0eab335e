"""Per-tracklet identification for video data (CCVID, 42Street), docs/METHOD.md section 5.

For a query tracklet and each gallery identity, the score is the mean over the tracklet's
frames of the frame's best similarity to that identity's gallery frames (GEFF
``Scripts/inference.py``: ``find_best_match`` + ``get_score_all_ids_full_gallery``). ReID
and face scores are fused with alpha, and the predicted identity is the arg-max.

Conventions and where they differ from the reference:

* Exclusions: gallery frames from the query frame's camera (and, with
  ``exclude_same_clothes``, of its clothes) cannot match it. The reference sets them to
  -inf and then calls ``np.nan_to_num``, which turns -inf into -3.4e38, so an identity
  whose frames are all excluded gets a huge negative score (or -inf once the float32 mean
  overflows). Here it is -inf: the same ranking, without the arithmetic accident (with
  alpha = 1 the reference even forms 0 * -inf = NaN for such an identity).
* The reference's face path for CCVID takes the camera and clothes of the *first query
  frame of the whole query set* for every tracklet (``ccvid_face_inference`` passes
  ``face_model.q_camids``, not the tracklet's); the ReID path uses the tracklet's own.
  Both paths here use each frame's own camera/clothes (a tracklet has one camera).
* Faces: frames without a face have zero embeddings, so their similarities are 0 (the
  reference gets 0 too, via NaN rows and ``nan_to_num``). Use
  ``fusion.zero_faceless_rows(embedding, has_face)`` for the face features.
* Ties between identities go to the smallest identity (the reference's ``max`` over a
  dict built from ``set(g_pids)``, which iterates small integers in increasing order).

Enrichment for video (GEFF ``gallery_builder_CCVID``/``_42Street``): query frames given a
label by the face match are appended to the gallery as frames of that identity, with a
camera and clothes of their own (never excluded). CCVID first smooths the labels per
tracklet by majority vote (``enrich.enrich_gallery(..., vote_by_track=True)``, the tie rule
of docs/METHOD.md section 3), so every frame of a voted tracklet is added. ``exclude_self=True`` keeps a tracklet from matching its own appended frames.

Evaluation (GEFF ``evaluate.py``): CCVID, accuracy over tracklets; 42Street, tracklets
with fewer than 10 frames are skipped and the "unknown" identity (12) is not scored (the
caller passes both, from the dataset's spec); accuracy per tracklet and per image
(tracklets weighted by their frames).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.arrays import joint_codes
from ..core.progress import progress_bar

__all__ = [
    "TrackScores",
    "EnrichedFrames",
    "VideoResult",
    "track_identity_scores",
    "fuse_track_scores",
    "evaluate_tracks",
]


@dataclass(eq=False)
class TrackScores:
    """scores[t, p]: mean over tracklet t's frames of the best similarity to identity p.

    tracks (T,) sorted track ids; pids (P,) sorted identities; num_frames (T,);
    track_pids (T,) the tracklets' true identities (None if not given).
    """

    tracks: np.ndarray
    pids: np.ndarray
    scores: np.ndarray
    num_frames: np.ndarray
    track_pids: np.ndarray | None = None

    def predicted(self) -> np.ndarray:
        """(T,) arg-max identity per tracklet (ties: the smallest identity)."""
        if self.scores.shape[1] == 0:
            raise ValueError("no gallery identities to predict from")
        return self.pids[np.argmax(self.scores, axis=1)]

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.scores, index=pd.Index(self.tracks, name="track"), columns=self.pids)
        frame.columns.name = "pid"
        return frame


@dataclass(eq=False)
class EnrichedFrames:
    """Query frames appended to the gallery: ``frame_index`` into the query frames, the
    identity each was given, and the tracklet it comes from (for ``exclude_self``)."""

    frame_index: np.ndarray
    pids: np.ndarray
    source_track: np.ndarray

    def __post_init__(self) -> None:
        self.frame_index = np.asarray(self.frame_index, dtype=np.int64).ravel()
        self.pids = np.asarray(self.pids).ravel()
        self.source_track = np.asarray(self.source_track).ravel()
        if not len(self.frame_index) == len(self.pids) == len(self.source_track):
            raise ValueError("frame_index, pids and source_track must have one entry per enriched frame")

    def __len__(self) -> int:
        return len(self.frame_index)


def track_identity_scores(
    query: np.ndarray,
    query_tracks: np.ndarray,
    gallery: np.ndarray,
    gallery_pids: np.ndarray,
    *,
    query_pids: np.ndarray | None = None,
    query_camids: np.ndarray | None = None,
    gallery_camids: np.ndarray | None = None,
    query_clothes_ids: np.ndarray | None = None,
    gallery_clothes_ids: np.ndarray | None = None,
    exclude_same_clothes: bool = False,
    enriched: EnrichedFrames | None = None,
    enriched_source: np.ndarray | None = None,
    exclude_self: bool = False,
    block_size: int | None = None,
    progress: bool = True,
) -> TrackScores:
    """Per-tracklet identity scores from frame features (ReID, or face with zero rows
    where no face), block-wise over query frames.

    query: (Nq, D) L2-normalised frame features; query_tracks: (Nq,) tracklet id per frame.
    gallery: (Ng, D) features of the gallery frames; gallery_pids: (Ng,).
    query_camids / gallery_camids: exclude same-camera frames when both are given
    (42Street has no cameras: leave them None).
    exclude_same_clothes: the reference's ``--CC`` flag (needs clothes ids).
    enriched: frames appended to the gallery (see ``enriched_frames``); its
    ``frame_index`` points into ``enriched_source`` (default: ``query``), which may hold
    more frames than the query set (42Street's extra-data crops after the query frames).
    """
    query = np.ascontiguousarray(query, dtype=np.float32)
    gallery = np.ascontiguousarray(gallery, dtype=np.float32)
    n_q, n_g = len(query), len(gallery)
    query_tracks = np.asarray(query_tracks).ravel()
    gallery_pids = np.asarray(gallery_pids).ravel()
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query {query.shape} and gallery {gallery.shape} must be 2-D with the same dimension")
    if len(query_tracks) != n_q or len(gallery_pids) != n_g:
        raise ValueError("query_tracks must have one entry per query frame and gallery_pids one per gallery frame")
    use_cams = query_camids is not None and gallery_camids is not None
    if exclude_same_clothes and (query_clothes_ids is None or gallery_clothes_ids is None):
        raise ValueError("exclude_same_clothes needs query_clothes_ids and gallery_clothes_ids")
    n_e = len(enriched) if enriched is not None else 0
    source = query if enriched_source is None else np.ascontiguousarray(enriched_source, dtype=np.float32)
    if source.ndim != 2 or source.shape[1] != query.shape[1]:
        raise ValueError(f"enriched_source {source.shape} must be 2-D with the query's dimension {query.shape[1]}")
    if n_e and (enriched.frame_index.min() < 0 or enriched.frame_index.max() >= len(source)):
        raise ValueError(f"enriched.frame_index must lie in 0..{len(source) - 1}")

    tracks, q_track = np.unique(query_tracks, return_inverse=True)
    q_track = q_track.ravel().astype(np.int64)
    # Source tracklets of appended frames, as query track codes (-2: not a query tracklet,
    # e.g. an extra-data crop, which no query tracklet can be).
    e_track = np.full(n_e, -2, np.int64)
    if n_e and len(tracks):
        e_src = np.asarray(enriched.source_track).ravel()
        pos = np.clip(np.searchsorted(tracks, e_src), 0, len(tracks) - 1)
        found = tracks[pos] == e_src
        e_track[found] = pos[found]
    pids, (g_pid, e_pid) = joint_codes(gallery_pids, enriched.pids if n_e else np.empty(0, gallery_pids.dtype))
    # Group the gallery columns by (identity, camera, clothes, source tracklet): the best
    # similarity per group is one reduceat, and exclusions act on groups, not columns.
    zeros_g, minus_e = np.zeros(n_g, np.int64), np.full(n_e, -1, np.int64)
    if use_cams:
        _, (q_cam, g_cam) = joint_codes(query_camids, gallery_camids)
    else:
        q_cam, g_cam = np.zeros(n_q, np.int64), zeros_g
    if exclude_same_clothes:
        _, (q_clo, g_clo) = joint_codes(query_clothes_ids, gallery_clothes_ids)
    else:
        q_clo, g_clo = np.zeros(n_q, np.int64), zeros_g
    keys = np.stack([
        np.concatenate([g_pid, e_pid]),
        np.concatenate([g_cam, minus_e]),   # appended frames: a camera nobody has
        np.concatenate([g_clo, minus_e]),   # ... and clothes of their own
        np.concatenate([np.full(n_g, -1, np.int64), e_track if exclude_self else minus_e]),
    ], axis=1)
    groups, col_group = np.unique(keys, axis=0, return_inverse=True)
    col_order = np.argsort(col_group.ravel(), kind="stable")
    group_starts = np.searchsorted(col_group.ravel()[col_order], np.arange(len(groups)))
    pid_starts = np.flatnonzero(np.concatenate(([True], groups[1:, 0] != groups[:-1, 0])))
    g_cam_of, g_clo_of, g_src_of = groups[:, 1], groups[:, 2], groups[:, 3]

    width = n_g + n_e
    if block_size is None:
        block_size = int(np.clip((64 << 20) // (4 * max(width, 1)), 8, 1024))
    frame_order = np.argsort(q_track, kind="stable")
    sums = np.zeros((len(tracks), len(pids)))
    sims = np.empty((block_size, width), np.float32)
    grouped = np.empty((block_size, width), np.float32)
    enriched_feats = source[enriched.frame_index] if n_e else None
    for start in progress_bar(range(0, n_q, block_size), desc="tracklet scores", unit="block", disable=not progress):
        idx = frame_order[start:start + block_size]
        nb = len(idx)
        block = query[idx]
        np.matmul(block, gallery.T, out=sims[:nb, :n_g])
        if n_e:
            np.matmul(block, enriched_feats.T, out=sims[:nb, n_g:])
        np.take(sims[:nb], col_order, axis=1, out=grouped[:nb])
        best = np.maximum.reduceat(grouped[:nb], group_starts, axis=1)
        excluded = np.zeros(best.shape, dtype=bool)
        if use_cams:
            excluded |= g_cam_of[None, :] == q_cam[idx][:, None]
        if exclude_same_clothes:
            excluded |= g_clo_of[None, :] == q_clo[idx][:, None]
        if exclude_self and n_e:
            excluded |= g_src_of[None, :] == q_track[idx][:, None]
        best[excluded] = -np.inf
        per_pid = np.maximum.reduceat(best, pid_starts, axis=1).astype(np.float64)
        seg = np.flatnonzero(np.concatenate(([True], q_track[idx][1:] != q_track[idx][:-1])))
        sums[q_track[idx][seg]] += np.add.reduceat(per_pid, seg, axis=0)
    num_frames = np.bincount(q_track, minlength=len(tracks))
    with np.errstate(invalid="ignore"):
        scores = sums / np.maximum(num_frames, 1)[:, None]
    track_pids = None
    if query_pids is not None:
        query_pids = np.asarray(query_pids).ravel()
        if len(query_pids) != n_q:
            raise ValueError("query_pids must have one entry per query frame")
        track_pids = _one_label_per_track(q_track, query_pids, len(tracks), tracks)
    return TrackScores(tracks, pids, scores, num_frames, track_pids)


def _one_label_per_track(track_code: np.ndarray, labels: np.ndarray, n_tracks: int, tracks: np.ndarray) -> np.ndarray:
    _, first = np.unique(track_code, return_index=True)  # codes are 0..n_tracks-1, all present
    out = labels[first]
    if np.any(labels != out[track_code]):
        bad = tracks[np.unique(track_code[labels != out[track_code]])[:5]]
        raise ValueError(f"frames of one tracklet carry different identities (tracklets {list(bad)})")
    return out


def fuse_track_scores(reid: TrackScores, face: TrackScores, alpha: float) -> TrackScores:
    """alpha * reid + (1 - alpha) * face per (tracklet, identity); alpha 1 / 0 give the
    ReID / face scores exactly (no 0 * -inf)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if not (np.array_equal(reid.tracks, face.tracks) and np.array_equal(reid.pids, face.pids)):
        raise ValueError("ReID and face scores must cover the same tracklets and identities")
    if alpha == 1.0:
        scores = reid.scores.copy()
    elif alpha == 0.0:
        scores = face.scores.copy()
    else:
        scores = alpha * reid.scores + (1.0 - alpha) * face.scores
    return TrackScores(reid.tracks, reid.pids, scores, reid.num_frames, reid.track_pids)


@dataclass(frozen=True, eq=False)
class VideoResult:
    """Tracklet accuracy (and image accuracy: tracklets weighted by their frames) over the
    scored tracklets; ``per_track`` has one row per tracklet with its status."""

    track_accuracy: float
    image_accuracy: float
    num_scored: int
    num_correct: int
    num_unknown: int
    num_too_short: int
    per_track: pd.DataFrame

    def as_dict(self) -> dict[str, float | int]:
        return {"track_accuracy": self.track_accuracy, "image_accuracy": self.image_accuracy,
                "scored": self.num_scored, "correct": self.num_correct,
                "unknown": self.num_unknown, "too_short": self.num_too_short}


def evaluate_tracks(scores: TrackScores, *, min_frames: int = 0, unknown_pid=None) -> VideoResult:
    """Accuracy of the arg-max identity. The caller passes the dataset's protocol (its spec's
    ``min_track_frames`` and ``unknown_pid``: 42Street 10 and 12; CCVID the defaults).

    Tracklets shorter than ``min_frames`` are skipped first; then tracklets of the
    unknown identity are counted but not scored. No scored tracklet -> accuracies NaN.
    """
    if scores.track_pids is None:
        raise ValueError("the tracklets' true identities are unknown: pass query_pids to track_identity_scores")
    predicted = scores.predicted()
    short = scores.num_frames < min_frames
    unknown = ~short & (scores.track_pids == unknown_pid) if unknown_pid is not None else np.zeros_like(short)
    scored = ~short & ~unknown
    correct = scored & (predicted == scores.track_pids)
    status = np.where(short, "too short", np.where(unknown, "unknown", np.where(correct, "correct", "wrong")))
    per_track = pd.DataFrame({"track": scores.tracks, "pid": scores.track_pids, "predicted": predicted,
                              "num_frames": scores.num_frames, "status": status})
    n_scored, n_correct = int(scored.sum()), int(correct.sum())
    frames_scored = int(scores.num_frames[scored].sum())
    return VideoResult(
        track_accuracy=n_correct / n_scored if n_scored else float("nan"),
        image_accuracy=int(scores.num_frames[correct].sum()) / frames_scored if frames_scored else float("nan"),
        num_scored=n_scored,
        num_correct=n_correct,
        num_unknown=int(unknown.sum()),
        num_too_short=int(short.sum()),
        per_track=per_track,
    )
