"""Person detectors: anything with ``detect(frame_rgb) -> (boxes, scores)``.

:class:`HOGPersonDetector` (OpenCV's HOG + linear SVM, no weights, the offline default)
and :class:`OnnxYoloPersonDetector` (any YOLOv5/v8/11 COCO model exported to ONNX, class 0
kept), with greedy :func:`nms`. The trackers that link their boxes over frames are in
:mod:`reface_utils.apps.tracking`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np


__all__ = ["PersonDetector", "HOGPersonDetector", "OnnxYoloPersonDetector", "hog_available", "nms"]


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
