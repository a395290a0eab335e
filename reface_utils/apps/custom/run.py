"""The custom-video app's whole path: :func:`identify_people` checks everything, tracks the
videos (here or on Ray), extracts features, identifies the tracks and writes every output
(:class:`VideoIdentification`); a failed run leaves nothing behind."""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ...core.files import atomic_write_text
from ...core.paths import results_dir
from ..tracking import PersonDetector, VideoError, probe_video, track_video, video_name
from .annotate import annotate_video
from .gallery import load_gallery
from .identify import TRACK_COLUMNS, UNKNOWN, identify_tracks, select_crops
from .settings import VideoSettings, video_settings

__all__ = ["VideoIdentification", "identify_people"]


@dataclass
class VideoIdentification:
    """What :func:`identify_people` found and wrote.

    ``tracks``: one row per track (:data:`TRACK_COLUMNS`); ``detections``: one row per
    tracked box of those tracks, with ``identity``, ``score`` and ``match_score``; ``scores``: fused
    score per track (rows ``"<video>/<track_id>"``) and identity; ``enrichment``: one
    row per enriched track; ``gallery``: the :func:`load_gallery` table.
    """

    tracks: pd.DataFrame
    detections: pd.DataFrame
    scores: pd.DataFrame
    enrichment: pd.DataFrame
    gallery: pd.DataFrame
    out_dir: Path
    tracks_csv: Path
    annotated_videos: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def _as_list(videos: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    out = [Path(v).expanduser() for v in videos]
    if not out:
        raise VideoError("no video given: pass a video file, a frames folder, or a list of them")
    return out


def _unique_names(paths: Sequence[Path]) -> list[str]:
    names, seen = [], {}
    for p in paths:
        base = video_name(p)
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def _face_model(model: Any, **options: Any) -> Any:
    if isinstance(model, str):
        from ...models.face import load_face_model
        return load_face_model(model, **options)
    return model


def _reid_model(model: Any, checkpoint: Any, device: str) -> Any:
    if isinstance(model, str):
        from ...models.reid import load_reid_model
        return load_reid_model(model, checkpoint=checkpoint, device=device)
    return model


def identify_people(gallery_root: str | os.PathLike, videos: str | os.PathLike | Sequence[str | os.PathLike], *,
                    name: str = "custom", out_dir: str | os.PathLike | None = None,
                    settings: VideoSettings | None = None, detector: PersonDetector | None = None,
                    annotate: bool = True, progress: bool = True, **parameters: Any) -> VideoIdentification:
    """Who is who in ``videos``, given a labelled ``gallery_root`` (see :mod:`reface_utils.apps.custom`).

    ``settings`` (:class:`VideoSettings`) and/or its fields as keyword arguments
    (``alpha=0.8, det_threshold=0.7, ...``), all checked before any work.
    ``detector``: a :class:`~reface_utils.models.detectors.PersonDetector` (default HOG);
    ``tracker``/``tracker_options``: see :func:`~reface_utils.apps.tracking.make_tracker`.
    Everything goes to ``out_dir`` (default ``results/<name>``). ``engine="ray"``: each
    video is detected, tracked and cropped by its own Ray task (cluster at ``ray_address``;
    ``out_dir`` on a file system the workers share), the rest runs here.
    """
    s = video_settings(settings, **parameters)
    started = time.perf_counter()
    # Everything is checked before the first frame is read: settings (above), gallery,
    # videos, detector, and the models themselves (loading them finds missing weights).
    gallery = load_gallery(gallery_root)
    sources = _as_list(videos)
    for source in sources:
        probe_video(source, fps=s.fps)
    if detector is not None and not callable(getattr(detector, "detect", None)):
        raise ValueError(f"detector must be a PersonDetector (an object with .detect(frame)), got {detector!r}")
    fm = _face_model(s.face_model)
    rm = _reid_model(s.reid_model, s.reid_checkpoint, s.device)
    out = Path(out_dir) if out_dir is not None else results_dir(name)
    names = _unique_names(sources)
    # what this run creates goes again if it fails: a failed run leaves nothing behind
    created = [p for p in (out, out / "crops", *(out / "crops" / v for v in names)) if not p.exists()]
    try:
        return _identify(gallery, sources, names, out, s, fm, rm, detector, annotate, progress, started)
    except BaseException:
        for folder in reversed(created):
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _identify(gallery: pd.DataFrame, sources: list[Path], names: list[str], out: Path, s: VideoSettings,
              fm: Any, rm: Any, detector: PersonDetector | None, annotate: bool, progress: bool,
              started: float) -> VideoIdentification:
    """identify_people's work, once everything is checked."""
    out.mkdir(parents=True, exist_ok=True)

    jobs = [dict(source=source, detector=detector, tracker=s.tracker, tracker_options=dict(s.tracker_options or {}),
                 crops_dir=out / "crops" / vname, crop_every=s.crop_every, name=vname, fps=s.fps, progress=progress)
            for source, vname in zip(sources, names)]
    if s.engine == "ray":
        from ..cluster import track_videos_ray
        tables = track_videos_ray(jobs, address=s.ray_address, progress=progress)
    else:
        tables = [track_video(**job) for job in jobs]
    detections = pd.concat(tables, ignore_index=True)
    crops = select_crops(detections, min_track_frames=s.min_track_frames, max_crops_per_track=s.max_crops_per_track)
    if crops.empty:
        found = detections.groupby(["video", "track_id"]).ngroups
        raise ValueError(f"no person track of at least {s.min_track_frames} frames in {', '.join(map(str, sources))} "
                         f"({found} shorter track(s) found): lower min_track_frames, or use a stronger "
                         "detector (see reface_utils.apps.tracking)")
    t_tracked = time.perf_counter()

    crop_paths = crops["crop"].tolist()
    # Decode in this process (num_workers=0): the tracking above ran OpenCV's thread pool,
    # and a forked DataLoader worker that touches OpenCV's threading (reid's worker_init
    # calls cv2.setNumThreads) can deadlock. Decoding is a small part of the ReID time.
    # Crops are new files each run: caching their features would only fill the cache.
    crop_reid = rm.extract(crop_paths, cache_dir=None, num_workers=0, progress=progress)
    crop_faces = fm.extract(crop_paths, cache_dir=None, progress=progress).thresholded(s.det_threshold)
    gallery_reid = rm.extract(gallery["path"].tolist(), num_workers=0, progress=progress)
    gallery_faces = fm.extract(gallery["path"].tolist(), progress=progress).thresholded(s.det_threshold)
    t_features = time.perf_counter()

    per_track, scores, enrichment = identify_tracks(
        crops.reset_index(drop=True), gallery, crop_reid=crop_reid, crop_faces=crop_faces,
        gallery_reid=gallery_reid, gallery_faces=gallery_faces, alpha=s.alpha,
        unknown_threshold=s.unknown_threshold, enrich=s.enrich, enrich_threshold=s.sim_threshold,
        leave_own_track_out=s.leave_own_track_out)

    det = detections.assign(track_key=detections["video"].astype(str) + "/" + detections["track_id"].astype(str))
    det = det[det["track_key"].isin(per_track.index)]
    spans = det.groupby("track_key").agg(video=("video", "first"), track_id=("track_id", "first"),
                                         first_frame=("frame", "min"), last_frame=("frame", "max"),
                                         num_frames=("frame", "size"))
    tracks = spans.join(per_track)
    tracks["crops_dir"] = [str(out / "crops" / v / f"{t:04d}") for v, t in zip(tracks["video"], tracks["track_id"])]
    order = {v: i for i, v in enumerate(names)}  # videos in the order given
    tracks = tracks.assign(_video=tracks["video"].map(order)).sort_values(["_video", "track_id"])
    tracks = tracks[list(TRACK_COLUMNS)].reset_index(drop=True)
    det = det.merge(per_track[["identity", "score", "match_score"]], left_on="track_key", right_index=True)
    det = det.drop(columns="track_key").sort_values(["video", "frame", "track_id"], kind="stable").reset_index(drop=True)

    # dropped (short) tracks leave no crops behind
    kept = set(per_track.index)
    for key in set(detections["video"].astype(str) + "/" + detections["track_id"].astype(str)) - kept:
        vname, tid = key.rsplit("/", 1)
        folder = out / "crops" / vname / f"{int(tid):04d}"
        if folder.is_dir():
            for f in folder.iterdir():
                f.unlink()
            folder.rmdir()

    tracks_csv = out / "tracks.csv"
    atomic_write_text(tracks_csv, tracks.to_csv(index=False))
    atomic_write_text(out / "detections.csv", det.to_csv(index=False))
    atomic_write_text(out / "track_scores.csv", scores.to_csv())
    atomic_write_text(out / "enrichment.csv", enrichment.to_csv(index=False))

    annotated: dict[str, Path] = {}
    if annotate:
        for source, vname in zip(sources, names):
            annotated[vname] = annotate_video(source, det[det["video"] == vname], out / "annotated" / f"{vname}.mp4",
                                              fps=s.fps, progress=progress)
    finished = time.perf_counter()
    summary = {
        "videos": len(sources), "tracks": len(tracks),
        "short_tracks_dropped": int(detections.groupby(["video", "track_id"]).ngroups - len(tracks)),
        "identified": int((tracks["identity"] != UNKNOWN).sum()), "unknown": int((tracks["identity"] == UNKNOWN).sum()),
        "enriched_tracks": int(tracks["enriched"].sum()), "gallery_images": len(gallery),
        "gallery_identities": int(gallery["pid"].nunique()), "scored_crops": len(crops),
        "settings": s.to_dict(),
        "seconds": {"tracking": round(t_tracked - started, 2), "features": round(t_features - t_tracked, 2),
                    "total": round(finished - started, 2)},
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return VideoIdentification(tracks=tracks, detections=det, scores=scores, enrichment=enrichment,
                               gallery=gallery, out_dir=out, tracks_csv=tracks_csv, annotated_videos=annotated,
                               summary=summary)
