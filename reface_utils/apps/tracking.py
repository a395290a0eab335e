"""Person tracks from your own videos: streamed frames -> person boxes -> tracks -> crops.

The first half of "who is who in my video" (:mod:`reface_utils.apps.custom` is the second):

1. **Frames** are streamed from a video file (OpenCV's FFmpeg reader) or a folder of
   frame images, one at a time: a video is never held in memory. :func:`probe_video`
   tells the size, frame rate and frame count up front (for progress bars).
2. **People** are found by a *person detector*: any object with
   ``detect(frame_rgb) -> (boxes, scores)`` (see :class:`PersonDetector`). Two ship here:

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
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np
import pandas as pd

from ..core.progress import progress_bar
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


# --------------------------------------------------------------------------- detectors
@runtime_checkable
class PersonDetector(Protocol):
    """Finds people in one frame.

    ``detect(frame)``: ``frame`` is an H x W x 3 RGB uint8 array; returns ``boxes``
    (K x 4 float32, x1 y1 x2 y2 in frame pixels) and ``scores`` (K float32 in [0, 1],
    higher = surer). The tracker's thresholds are on these scores. Wrap any detector
    you have in a small class with this one method.
    """

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first.

    A box is dropped when its IoU with an already kept, higher-scoring box exceeds
    ``iou_threshold``. Ties keep the lower index.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64).reshape(-1), kind="stable")
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep: list[int] = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(int(i))
        x1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        iou = inter / np.maximum(area[i] + area[rest] - inter, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def _hog_class() -> Callable[[], Any] | None:
    """OpenCV's HOGDescriptor: ``cv2.HOGDescriptor`` (OpenCV 4, opencv-contrib 5), or
    ``cv2.xobjdetect.HOGDescriptor`` (where a contrib build exposes it only there)."""
    if hasattr(cv2, "HOGDescriptor"):
        return cv2.HOGDescriptor
    xobj = getattr(cv2, "xobjdetect", None)
    return getattr(xobj, "HOGDescriptor", None) if xobj is not None else None


def hog_available() -> bool:
    """Whether this OpenCV build has the HOG people detector."""
    return _hog_class() is not None


class HOGPersonDetector:
    """OpenCV's HOG + linear-SVM people detector (offline, no weights).

    Frames taller than ``max_height`` are shrunk first (HOG's window finds people of
    about 100 px and up, and its cost grows with the pixel count). Raw windows are
    merged with non-maximum suppression (``nms_iou``), not OpenCV's rectangle grouping,
    so every box keeps its SVM margin ``m``; the score is ``m / (1 + m)`` and windows
    scoring below ``min_score`` are dropped. ``tighten`` trims the margin that HOG's
    64 x 128 window keeps around the person (the training windows centre a ~96 px tall,
    ~40 px wide person): 20 % off each side, 8 % off the top, 4 % off the bottom, so
    crops and boxes hug the person.
    """

    def __init__(self, *, max_height: int | None = 360, scale: float = 1.05,
                 win_stride: tuple[int, int] = (8, 8), padding: tuple[int, int] = (16, 16),
                 min_score: float = 0.15, nms_iou: float = 0.4, tighten: bool = True) -> None:
        cls = _hog_class()
        if cls is None:
            raise RuntimeError(
                f"OpenCV {cv2.__version__} has no HOG people detector: OpenCV 5 moved HOGDescriptor out of "
                "the main wheels into opencv-contrib. Install an OpenCV 4 build (pip install "
                "'opencv-python<5' 'opencv-python-headless<5') or opencv-contrib-python(-headless), or pass "
                "another detector (e.g. OnnxYoloPersonDetector with your own YOLO weights).")
        if scale <= 1.0:
            raise ValueError(f"scale must be > 1 (the image pyramid step), got {scale}")
        self._hog = cls()
        detector = getattr(cls, "getDefaultPeopleDetector", None) or getattr(cv2, "HOGDescriptor_getDefaultPeopleDetector")
        self._hog.setSVMDetector(detector())
        self.max_height = max_height
        self.scale = float(scale)
        self.win_stride = tuple(win_stride)
        self.padding = tuple(padding)
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.tighten = tighten

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = frame.shape[:2]
        f = 1.0
        if self.max_height is not None and h > self.max_height:
            f = self.max_height / h
            frame = cv2.resize(frame, (max(1, round(w * f)), self.max_height), interpolation=cv2.INTER_AREA)
        # HOG is computed on gradients: RGB vs BGR order does not matter.
        rects, weights = self._hog.detectMultiScale(frame, hitThreshold=0.0, winStride=self.win_stride,
                                                    padding=self.padding, scale=self.scale, groupThreshold=0)
        rects = np.asarray(rects, np.float32).reshape(-1, 4)
        margin = np.asarray(weights, np.float32).reshape(-1)
        scores = np.maximum(margin, 0) / (1 + np.maximum(margin, 0))
        good = scores >= self.min_score
        rects, scores = rects[good], scores[good]
        boxes = np.c_[rects[:, :2], rects[:, :2] + rects[:, 2:]] / f
        if self.tighten and len(boxes):
            bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            boxes += np.c_[0.2 * bw, 0.08 * bh, -0.2 * bw, -0.04 * bh]
        keep = nms(boxes, scores, self.nms_iou)
        return boxes[keep].astype(np.float32), scores[keep].astype(np.float32)


class OnnxYoloPersonDetector:
    """A YOLO COCO detector exported to ONNX (YOLOv5, YOLOv8, YOLO11), people only.

    Give it your own weights, e.g. ``yolov8n.onnx`` made with ultralytics
    (``YOLO("yolov8n.pt").export(format="onnx")``). The input is letterboxed to
    ``input_size`` (grey padding), RGB scaled to 0..1. Outputs understood:
    ``1 x (4 + C) x N`` (v8/11: box cx cy w h, then class scores) and ``1 x N x (5 + C)``
    (v5: box, objectness, class scores), ``C = num_classes`` (80 for COCO). Class
    ``person_class`` (0 in COCO) is kept, boxes below ``min_score`` dropped, then NMS.
    """

    def __init__(self, path: str | os.PathLike, *, input_size: int | None = None, min_score: float = 0.3,
                 nms_iou: float = 0.45, person_class: int = 0, num_classes: int = 80,
                 providers: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        from ..core.runtime import onnx_providers

        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"YOLO ONNX file {self.path} does not exist")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), options,
                                            providers=list(providers) if providers else onnx_providers("auto"))
        inp = self.session.get_inputs()[0]
        self._input = inp.name
        fixed = [d for d in inp.shape[2:] if isinstance(d, int)]
        self.input_size = int(input_size or (fixed[0] if fixed else 640))
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.person_class = int(person_class)
        self.num_classes = int(num_classes)

    def _decode(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.asarray(out, np.float32)
        if out.ndim == 3:
            out = out[0]
        c = self.num_classes
        if out.ndim == 2 and out.shape[0] == 4 + c:      # v8/11: (4 + C) x N
            rows = out.T
            return self._corners(rows[:, :4]), rows[:, 4 + self.person_class]
        if out.ndim == 2 and out.shape[1] == 5 + c:      # v5: N x (5 + C)
            return self._corners(out[:, :4]), out[:, 4] * out[:, 5 + self.person_class]
        if out.ndim == 2 and out.shape[1] == 4 + c:      # v8 layout, transposed
            return self._corners(out[:, :4]), out[:, 4 + self.person_class]
        raise ValueError(f"{self.path}: YOLO output of shape {out.shape} is neither 1 x (4 + {c}) x N (v8/11) "
                         f"nor 1 x N x (5 + {c}) (v5); set num_classes for a model with other classes")

    @staticmethod
    def _corners(xywh: np.ndarray) -> np.ndarray:
        return np.c_[xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2]

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = frame.shape[:2]
        s = self.input_size
        r = min(s / h, s / w)
        nh, nw = max(1, round(h * r)), max(1, round(w * r))
        top, left = (s - nh) // 2, (s - nw) // 2
        canvas = np.full((s, s, 3), 114, np.uint8)
        canvas[top:top + nh, left:left + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        boxes, scores = self._decode(self.session.run(None, {self._input: blob})[0])
        good = scores >= self.min_score
        boxes, scores = boxes[good], scores[good]
        boxes = (boxes - np.array([left, top, left, top], np.float32)) / r
        boxes = np.clip(boxes, 0, [w, h, w, h])
        keep = nms(boxes, scores, self.nms_iou)
        return boxes[keep].astype(np.float32), np.clip(scores[keep], 0, 1).astype(np.float32)


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
