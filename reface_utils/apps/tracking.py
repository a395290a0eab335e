"""Person tracks from your own videos: streamed frames -> person boxes -> tracks -> crops.

The first half of "who is who in my video" (:mod:`reface_utils.apps.custom` is the second):

1. **Frames** are streamed from a video file (OpenCV's FFmpeg reader) or a folder of
   frame images, one at a time: a video is never held in memory. :func:`probe_video`
   tells the size, frame rate and frame count up front (for progress bars).
2. **People** are found by a *person detector*: any object with
   ``detect(frame_rgb) -> (boxes, scores)`` (see :class:`PersonDetector`). Two ship in
   :mod:`reface_utils.models.detectors` (re-exported here):

   - :class:`HOGPersonDetector`, the offline default: OpenCV's built-in HOG + linear SVM
     people detector (Dalal & Triggs), no weights to download. It is weak: upright,
     mostly unoccluded people roughly 100-300 px tall; it misses sitting, partial and
     small people and fires on some pole-like textures. OpenCV 5 moved it out of the
     main wheels into opencv-contrib: ``cv2.HOGDescriptor`` exists in OpenCV 4
     (``opencv-python<5``) and in ``opencv-contrib-python`` 5, not in
     ``opencv-python`` 5; without it a clear error says what to install.
   - :class:`OnnxYoloPersonDetector`, the stronger one when you have weights: any
     YOLOv5 / YOLOv8 / YOLO11 COCO model exported to ONNX (e.g. with ultralytics:
     ``YOLO("yolov8n.pt").export(format="onnx")``), run with onnxruntime, class 0
     ("person") kept.

3. **Tracks** come from a maintained multi-object tracker, Roboflow's ``trackers``
   library (ByteTrack by default; OC-SORT, SORT, BoT-SORT by name), fed
   ``supervision.Detections``. Boxes that the tracker has not confirmed yet (its
   ``tracker_id`` is -1) are not part of any track.
4. **Crops** of every tracked box are written as JPEG files under
   ``<out_dir>/crops/<video>/<track id>/<frame>.jpg`` as the video streams by, so the
   identification step reads files (and the feature cache can serve them) and memory
   stays bounded whatever the video's length.

The result of :func:`track_video` is one table with a row per tracked box
(:data:`DETECTION_COLUMNS`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pandas as pd

from ..core.progress import progress_bar
from ..models.detectors import HOGPersonDetector, OnnxYoloPersonDetector, PersonDetector, hog_available, nms
from ..core.video_io import (FRAME_SUFFIXES, VIDEO_SUFFIXES, VideoError, VideoInfo, iter_frames, probe_video,
                              video_name, write_video)

__all__ = [
    "VIDEO_SUFFIXES", "FRAME_SUFFIXES", "DETECTION_COLUMNS", "TRACKERS",
    "VideoError", "VideoInfo", "probe_video", "iter_frames", "video_name", "write_video",
    "PersonDetector", "HOGPersonDetector", "OnnxYoloPersonDetector", "hog_available", "nms",
    "make_tracker", "track_video",
]

#: Columns of :func:`track_video`'s table, one row per tracked box.
DETECTION_COLUMNS = ("video", "frame", "track_id", "x1", "y1", "x2", "y2", "det_score", "crop")


# --------------------------------------------------------------------------- tracking
def _tracker_classes() -> dict[str, Any]:
    import trackers
    return {"bytetrack": trackers.ByteTrackTracker, "ocsort": trackers.OCSORTTracker,
            "sort": trackers.SORTTracker, "botsort": trackers.BoTSORTTracker}


#: Tracker names accepted by :func:`make_tracker` (Roboflow ``trackers`` classes).
TRACKERS = ("bytetrack", "ocsort", "sort", "botsort")

# Defaults tuned for HOG's scores (m / (1 + m): people mostly 0.3-0.75, false windows
# mostly below 0.45) on the demo video; the library's own defaults assume a CNN
# detector's 0.6-0.9 confidences. Boxes under high_conf_det_threshold only extend
# existing tracks (ByteTrack's second association), they never start one.
_TRACKER_DEFAULTS: dict[str, dict[str, Any]] = {
    "bytetrack": {"track_activation_threshold": 0.5, "high_conf_det_threshold": 0.5,
                  "minimum_consecutive_frames": 2, "minimum_iou_threshold": 0.1, "lost_track_buffer": 30},
    "ocsort": {"high_conf_det_threshold": 0.5, "minimum_consecutive_frames": 2, "minimum_iou_threshold": 0.1,
               "lost_track_buffer": 30},
    "sort": {"track_activation_threshold": 0.5, "minimum_consecutive_frames": 2, "minimum_iou_threshold": 0.1,
             "lost_track_buffer": 30},
    "botsort": {"track_activation_threshold": 0.5, "high_conf_det_threshold": 0.5,
                "minimum_consecutive_frames": 2, "lost_track_buffer": 30},
}


def make_tracker(kind: str = "bytetrack", fps: float = 25.0, **options: Any) -> Any:
    """A fresh ``trackers`` tracker (``bytetrack``, ``ocsort``, ``sort``, ``botsort``).

    ``options`` override this module's defaults (tuned for HOG scores) and go to the
    class's constructor; see the ``trackers`` documentation for each parameter.
    """
    key = kind.lower().replace("-", "").replace("_", "")
    classes = _tracker_classes()
    if key not in classes:
        raise ValueError(f"unknown tracker {kind!r}; choose one of {TRACKERS} or pass a callable "
                         "fps -> tracker")
    params = {**_TRACKER_DEFAULTS[key], "frame_rate": float(fps), **options}
    return classes[key](**params)


def _save_crop(frame: np.ndarray, box: np.ndarray, path: Path, quality: int) -> bool:
    h, w = frame.shape[:2]
    x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x2 - x1 < 4 or y2 - y1 < 8:
        return False
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame[y1:y2, x1:x2], cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())
    return True


def _clear_crops(folder: Path) -> None:
    """Remove the crops an earlier run left in ``folder`` (``<track id>/<frame>.jpg``), nothing else."""
    if not folder.is_dir():
        return
    for track in folder.iterdir():
        if track.is_dir() and track.name.isdigit():
            for crop in track.glob("*.jpg"):
                crop.unlink()
            if not any(track.iterdir()):
                track.rmdir()


def track_video(source: str | os.PathLike, *, detector: PersonDetector | None = None,
                tracker: str | Callable[[float], Any] = "bytetrack", tracker_options: dict | None = None,
                crops_dir: str | os.PathLike | None = None, crop_every: int = 1, jpeg_quality: int = 95,
                name: str | None = None, fps: float | None = None, progress: bool = True) -> pd.DataFrame:
    """Detect and track the people of one video; one row per tracked box.

    ``source``: a video file or a folder of frame images (``fps`` sets its frame rate).
    ``detector``: a :class:`PersonDetector` (default :class:`HOGPersonDetector`).
    ``tracker``: a :data:`TRACKERS` name (``tracker_options`` go to :func:`make_tracker`)
    or a callable ``fps -> tracker`` returning any ``trackers``-style object with
    ``update(supervision.Detections) -> Detections`` (``tracker_id`` set).
    ``crops_dir``: where crops go, as ``<crops_dir>/<track id>/<frame>.jpg`` (crops of an
    earlier run there are removed first, so a re-run never mixes in stale ones; nothing
    else is touched); ``None`` saves none.
    Every ``crop_every``-th box of a track is saved (the ``crop`` column is ``""``
    for the others).

    Returns :data:`DETECTION_COLUMNS`: ``video`` (the name), ``frame`` (0-based index),
    ``track_id`` (the tracker's id, unique within the video), box ``x1 y1 x2 y2``
    (frame pixels, clipped to the frame), ``det_score`` (the detector's score; NaN
    when the tracker gave the box without a score), ``crop`` (path or ``""``).
    """
    import supervision as sv

    if crop_every < 1:
        raise ValueError(f"crop_every must be >= 1, got {crop_every}")
    info = probe_video(source, fps=fps)
    name = name or info.name
    detector = detector if detector is not None else HOGPersonDetector()
    if not callable(getattr(detector, "detect", None)):
        raise TypeError(f"detector must have a detect(frame_rgb) -> (boxes, scores) method, got {type(detector)}")
    if isinstance(tracker, str):
        tracker_obj = make_tracker(tracker, info.fps, **(tracker_options or {}))
    else:
        tracker_obj = tracker(info.fps)
    wants_frame = type(tracker_obj).__name__.lower().startswith("botsort")  # camera-motion compensation
    out = Path(crops_dir) if crops_dir is not None else None
    if out is not None:
        _clear_crops(out)
    rows: list[tuple] = []
    seen: dict[int, int] = {}
    bar = progress_bar(total=info.frame_count or None, desc=f"tracking {name}", unit="frame", disable=not progress)
    try:
        for index, frame in iter_frames(info.path):
            boxes, scores = detector.detect(frame)
            boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
            scores = np.asarray(scores, np.float32).reshape(-1)
            dets = sv.Detections(xyxy=boxes, confidence=scores, class_id=np.zeros(len(boxes), int))
            tracked = tracker_obj.update(dets, np.ascontiguousarray(frame[:, :, ::-1])) if wants_frame \
                else tracker_obj.update(dets)
            ids = np.asarray(tracked.tracker_id if tracked.tracker_id is not None else [], int)
            conf = tracked.confidence if tracked.confidence is not None else np.full(len(ids), np.nan)
            h, w = frame.shape[:2]
            for box, tid, score in zip(np.asarray(tracked.xyxy, np.float32), ids, conf):
                if tid < 0:                    # not (yet) a confirmed track
                    continue
                box = np.clip(box, 0, [w, h, w, h])
                if box[2] - box[0] < 4 or box[3] - box[1] < 8:
                    continue
                crop = ""
                k = seen.get(int(tid), 0)
                seen[int(tid)] = k + 1
                if out is not None and k % crop_every == 0:
                    path = out / f"{int(tid):04d}" / f"{index:06d}.jpg"
                    if _save_crop(frame, box, path, jpeg_quality):
                        crop = str(path)
                rows.append((name, index, int(tid), *map(float, box), float(score), crop))
            bar.update(1)
    finally:
        bar.close()
    table = pd.DataFrame(rows, columns=list(DETECTION_COLUMNS))
    return table.astype({"frame": np.int64, "track_id": np.int64}).sort_values(
        ["track_id", "frame"], kind="stable").reset_index(drop=True)
