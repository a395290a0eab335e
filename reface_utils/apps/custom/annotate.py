"""Annotated videos: each tracked box drawn with its identity, track id and match score, in
a stable colour per identity (:func:`annotate_video`, frames streamed)."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ..tracking import iter_frames, probe_video, write_video
from .identify import UNKNOWN

__all__ = ["annotate_video"]


def _colour(identity: str) -> tuple[int, int, int]:
    """A stable, saturated RGB colour per identity name (grey for unknown)."""
    if identity == UNKNOWN:
        return (160, 160, 160)
    hue = (sum(ord(c) * (i + 1) for i, c in enumerate(identity)) * 37) % 180
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def _draw(frame: np.ndarray, boxes: pd.DataFrame) -> np.ndarray:
    out = frame.copy()
    thick = max(1, round(frame.shape[0] / 240))
    font_scale = max(0.4, frame.shape[0] / 720)
    for row in boxes.itertuples(index=False):
        colour = _colour(row.identity)
        p1, p2 = (int(row.x1), int(row.y1)), (int(row.x2), int(row.y2))
        cv2.rectangle(out, p1, p2, colour, thick, cv2.LINE_AA)
        label = f"{row.identity} #{row.track_id}" + ("" if row.identity == UNKNOWN else f" {row.match_score:.2f}")
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        y = max(th + base, p1[1])
        cv2.rectangle(out, (p1[0], y - th - base), (p1[0] + tw + 2, y), colour, -1)
        cv2.putText(out, label, (p1[0] + 1, y - base), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def annotate_video(source: str | os.PathLike, boxes: pd.DataFrame, path: str | os.PathLike, *,
                   fps: float | None = None, progress: bool = True) -> Path:
    """Write ``source`` again with boxes and names drawn (H.264 mp4 at ``path``).

    ``boxes``: rows with ``frame``, ``track_id``, ``x1 y1 x2 y2``, ``identity``,
    ``match_score`` for this video (the label is ``"<identity> #<track id> <match_score>"``). Frames are streamed (one in memory at a time); the output
    has exactly the frames of the input.
    """
    info = probe_video(source, fps=fps)
    by_frame = {f: g for f, g in boxes.groupby("frame")}
    empty = boxes.iloc[:0]
    frames = (_draw(frame, by_frame.get(i, empty)) for i, frame in iter_frames(info.path))
    return write_video(path, frames, fps=info.fps, total=info.frame_count or None,
                       desc=f"annotating {info.name}", progress=progress)

