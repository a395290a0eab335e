"""Track identification maths: which crops score a track (:func:`select_crops`), and the
per-track identity from ReID and face features (:func:`identify_tracks`: scores, gallery
enrichment from the video's own tracks, the match score, "unknown"). Steps 3-5 of
:mod:`reface_utils.apps.custom`; also the vocabulary of its output (:data:`UNKNOWN`,
:data:`TRACK_COLUMNS`)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["UNKNOWN", "TRACK_COLUMNS", "select_crops", "identify_tracks"]

#: The identity given to tracks that no gallery identity matches well enough.
UNKNOWN = "unknown"

#: Columns of ``tracks.csv`` / :attr:`~reface_utils.apps.custom.VideoIdentification.tracks`, one row per track.
TRACK_COLUMNS: dict[str, str] = {
    "video": "video name (file stem, or frames folder name)",
    "track_id": "the tracker's id, unique within the video",
    "first_frame": "first frame index (0-based) where the track has a box",
    "last_frame": "last frame index where the track has a box",
    "num_frames": "number of frames with a box",
    "identity": f"predicted gallery identity, or '{UNKNOWN}' when match_score < unknown_threshold",
    "score": "fused score of the best identity: alpha * reid_score + (1 - alpha) * face_score",
    "match_score": ("what unknown_threshold is compared with: alpha * reid_score + (1 - alpha) * the face "
                    "score over the crops with a face; reid_score alone when no face was seen"),
    "reid_score": "ReID score of the best identity (after enrichment)",
    "face_score": "face score of the best identity (crops without a face count 0)",
    "best_identity": "the best-scoring gallery identity, even when identity is unknown",
    "runner_up": "the second-best identity ('' with a one-identity gallery)",
    "runner_up_score": "its fused score (NaN when there is none)",
    "face_seen": "whether any scored crop of the track had an accepted face",
    "face_crops": "number of scored crops with an accepted face",
    "scored_crops": "number of crops the scores average over (<= max_crops_per_track)",
    "enriched": "whether the track's crops were added to the gallery (its faces matched an identity)",
    "enriched_identity": "the identity its faces voted for ('' when not enriched)",
    "identity_before_enrichment": "the prediction from the original gallery alone",
    "crops_dir": "folder of the track's saved crops",
}


def select_crops(detections: pd.DataFrame, *, min_track_frames: int = 10,
                 max_crops_per_track: int | None = 32) -> pd.DataFrame:
    """The crops that score each track: tracks with >= ``min_track_frames`` boxes, and up
    to ``max_crops_per_track`` saved crops per track, evenly spaced over the track.

    Adds ``track_key`` (``"<video>/<track_id>"``). Keeps the input's row index.
    """
    det = detections.copy()
    det["track_key"] = det["video"].astype(str) + "/" + det["track_id"].astype(str)
    length = det.groupby("track_key")["frame"].transform("size")
    saved = det[(length >= min_track_frames) & (det["crop"] != "")]
    if max_crops_per_track is None or saved.empty:
        return saved
    if max_crops_per_track < 1:
        raise ValueError(f"max_crops_per_track must be >= 1 or None, got {max_crops_per_track}")
    rank = saved.groupby("track_key").cumcount().to_numpy()
    count = saved.groupby("track_key")["frame"].transform("size").to_numpy()
    # evenly spaced picks: position k * count / m for k = 0..m-1, i.e. a crop is kept when
    # floor(rank * m / count) moves to a new value
    m = np.minimum(count, max_crops_per_track)
    slot = (rank * m) // count
    keep = np.r_[True, (slot[1:] != slot[:-1]) | (rank[1:] == 0)]
    return saved[keep]


def _second_best(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and value of the second-best column per row (-1 / NaN with one column)."""
    if scores.shape[1] < 2:
        return np.full(len(scores), -1), np.full(len(scores), np.nan)
    order = np.argsort(-scores, axis=1, kind="stable")
    idx = order[:, 1]
    return idx, scores[np.arange(len(scores)), idx]


def identify_tracks(crops: pd.DataFrame, gallery: pd.DataFrame, *, crop_reid: np.ndarray,
                    crop_faces: Any, gallery_reid: np.ndarray, gallery_faces: Any, alpha: float = 0.75,
                    unknown_threshold: float = 0.75, enrich: bool = True, enrich_threshold: float = 0.5,
                    leave_own_track_out: bool = False,
                    progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-track identities from features (the numeric core of :func:`~reface_utils.apps.custom.identify_people`).

    ``crops``: :func:`select_crops` rows (``track_key``), aligned with ``crop_reid``
    (N x D) and ``crop_faces`` (:class:`~reface_utils.models.face.FaceFeatures`, detection
    threshold already applied); ``gallery``: :func:`~reface_utils.apps.custom.load_gallery` rows aligned with
    ``gallery_reid`` and ``gallery_faces``.

    Returns ``(per_track, fused_scores, enrichment)``: per track (index ``track_key``)
    the columns of :data:`TRACK_COLUMNS` that come from scores; the fused score per
    track and identity; one row per enriched track (``track_key``, ``identity``,
    ``votes``: crops whose face matched it, ``crops_added``, ``mean_similarity``).
    """
    from ...method.enrich import enrich_gallery
    from ...method.fusion import zero_faceless_rows
    from ...method.tracklets import EnrichedFrames, fuse_track_scores, track_identity_scores

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if len(crops) == 0:
        raise ValueError("no track has enough crops to identify (see min_track_frames)")
    names = gallery.drop_duplicates("pid").set_index("pid")["identity"].sort_index()
    keys = crops["track_key"].to_numpy()
    g_pid = gallery["pid"].to_numpy()
    face_q = zero_faceless_rows(crop_faces.embedding, crop_faces.has_face)
    face_g = zero_faceless_rows(gallery_faces.embedding, gallery_faces.has_face)

    def scores(enriched: Any = None):
        reid = track_identity_scores(crop_reid, keys, gallery_reid, g_pid, enriched=enriched,
                                     exclude_self=leave_own_track_out, progress=progress)
        face = track_identity_scores(face_q, keys, face_g, g_pid, progress=progress)
        return reid, face, fuse_track_scores(reid, face, alpha)

    reid0, face0, fused0 = scores()
    before = names.loc[fused0.pids].to_numpy()[np.argmax(fused0.scores, axis=1)]

    enrichment = pd.DataFrame(columns=["track_key", "identity", "votes", "crops_added", "mean_similarity"])
    enriched_ids = pd.Series(dtype=object)
    reid, face, fused = reid0, face0, fused0
    if enrich:
        query_meta = pd.DataFrame({"camid": np.ones(len(crops), int), "track": keys})
        gallery_meta = pd.DataFrame({"pid": g_pid, "camid": np.zeros(len(gallery), int)})
        result = enrich_gallery(crop_faces, gallery_faces, query_meta, gallery_meta, det_threshold=None,
                                sim_threshold=enrich_threshold, clothes_changing=False, vote_by_track=True)
        samples = result.samples
        if len(samples):
            frames = EnrichedFrames(samples["query_index"].to_numpy(), samples["pid"].to_numpy(),
                                    samples["track"].to_numpy())
            reid, face, fused = scores(frames)
            enrichment = (samples.assign(identity=names.loc[samples["pid"]].to_numpy())
                          .groupby("track", sort=True)
                          .agg(identity=("identity", "first"), votes=("own_match", "sum"),
                               crops_added=("query_index", "size"), mean_similarity=("similarity", "mean"))
                          .reset_index().rename(columns={"track": "track_key"}))
            enrichment["votes"] = enrichment["votes"].astype(int)
            enriched_ids = enrichment.set_index("track_key")["identity"]

    ids = names.loc[fused.pids].to_numpy()
    t = np.arange(len(fused.tracks))
    best = np.argmax(fused.scores, axis=1)
    second, second_score = _second_best(fused.scores)
    best_score = fused.scores[t, best]
    face_crops = pd.Series(crop_faces.has_face.astype(int)).groupby(keys).sum().reindex(fused.tracks).to_numpy()
    reid_best, face_best = reid.scores[t, best], face.scores[t, best]
    # face score over the crops that had a face (face_best averages over all crops, 0 without a face)
    face_where_seen = face_best * fused.num_frames / np.maximum(face_crops, 1)
    match = np.where(face_crops > 0, alpha * reid_best + (1 - alpha) * face_where_seen, reid_best)
    per_track = pd.DataFrame({
        "identity": np.where(match >= unknown_threshold, ids[best], UNKNOWN),
        "score": best_score,
        "match_score": match,
        "reid_score": reid_best,
        "face_score": face_best,
        "best_identity": ids[best],
        "runner_up": np.where(second >= 0, ids[np.maximum(second, 0)], ""),
        "runner_up_score": second_score,
        "face_seen": face_crops > 0,
        "face_crops": face_crops,
        "scored_crops": fused.num_frames,
        "enriched": pd.Index(fused.tracks).isin(enriched_ids.index),
        "enriched_identity": enriched_ids.reindex(fused.tracks).fillna("").to_numpy(),
        "identity_before_enrichment": before,
    }, index=pd.Index(fused.tracks, name="track_key"))
    table = pd.DataFrame(fused.scores, index=per_track.index, columns=pd.Index(ids, name="identity"))
    return per_track, table, enrichment

