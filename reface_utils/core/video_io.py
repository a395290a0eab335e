"""Video in and out: stream frames from a video file or a folder of frames, write H.264 mp4.

A video is never held in memory: :func:`iter_frames` yields one RGB frame at a time,
:func:`probe_video` tells the size, frame rate and frame count up front, and
:func:`write_video` consumes any iterable of frames.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from .images import UnreadableImageError, read_rgb, warn_unreadable
from .progress import progress_bar

__all__ = ["VIDEO_SUFFIXES", "FRAME_SUFFIXES", "VideoError", "VideoInfo", "probe_video", "iter_frames",
           "video_name", "write_video"]

#: Video containers accepted (decoded by the FFmpeg inside the OpenCV wheel).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
#: Frame images accepted in a folder-of-frames video.
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

class VideoError(ValueError):
    """A video input that cannot be used: missing, unsupported format, undecodable, empty."""


# --------------------------------------------------------------------------- frames
@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns about a video before streaming it.

    ``frame_count`` is the container's own count for files (exact for the usual
    mp4/avi files, an estimate for some streams) and the number of image files for a
    frames folder.
    """

    path: Path
    name: str
    kind: str            # "file" or "frames"
    fps: float
    frame_count: int
    width: int
    height: int


def video_name(source: str | os.PathLike) -> str:
    """A short name for a video: the file's stem, or the frames folder's name."""
    path = Path(source)
    return path.name if path.is_dir() else path.stem


def _natural_key(path: Path) -> list[Any]:
    # frame_2 before frame_10: compare digit runs as numbers
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _frame_files(folder: Path) -> list[Path]:
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES),
                   key=_natural_key)
    if not files:
        raise VideoError(f"frames folder {folder} has no frame images ({', '.join(FRAME_SUFFIXES)}); "
                         "pass a video file or a folder of numbered frame images")
    return files


def _check_source(source: str | os.PathLike) -> Path:
    path = Path(source).expanduser()
    if not path.exists():
        raise VideoError(f"video {path} does not exist")
    if path.is_file() and path.suffix.lower() not in VIDEO_SUFFIXES:
        raise VideoError(f"{path}: unsupported video format {path.suffix or '(no suffix)'!r}; "
                         f"use one of {', '.join(VIDEO_SUFFIXES)} or a folder of frame images")
    return path


def _open_capture(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"cannot open video {path}: OpenCV/FFmpeg could not read it (a damaged file, "
                         "or a codec this build lacks; converting it with ffmpeg to H.264 mp4 usually helps)")
    return cap


def probe_video(source: str | os.PathLike, *, fps: float | None = None) -> VideoInfo:
    """Size, frame rate and frame count of a video file or a frames folder.

    ``fps`` sets the frame rate of a frames folder (default 25) or overrides a file's
    (some containers report 0). A file is opened and its first frame decoded, so an
    undecodable file fails here with a :class:`VideoError` naming it.
    """
    path = _check_source(source)
    if path.is_dir():
        files = _frame_files(path)
        try:
            first = read_rgb(files[0])
        except UnreadableImageError as e:
            raise VideoError(f"first frame of {path} is unreadable: {e}") from None
        return VideoInfo(path, path.name, "frames", float(fps or 25.0), len(files), first.shape[1], first.shape[0])
    cap = _open_capture(path)
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError(f"video {path} has no decodable frame (empty or damaged file)")
        rate = float(fps or cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not np.isfinite(rate) or rate <= 0:
            warnings.warn(f"{path} reports no frame rate; assuming 25 fps (pass fps=...)", stacklevel=2)
            rate = 25.0
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return VideoInfo(path, path.stem, "file", rate, max(count, 0), frame.shape[1], frame.shape[0])
    finally:
        cap.release()


def iter_frames(source: str | os.PathLike) -> Iterator[tuple[int, np.ndarray]]:
    """Stream ``(frame index, RGB uint8 frame)`` from a video file or a frames folder.

    One frame is decoded at a time. In a frames folder, unreadable images are skipped
    (their index is not yielded; one warning at the end names them) and a frame of
    another size than the first is an error naming the file.
    """
    path = _check_source(source)
    if path.is_dir():
        skipped: list[str] = []
        size = None
        for index, file in enumerate(_frame_files(path)):
            try:
                frame = read_rgb(file)
            except UnreadableImageError:
                skipped.append(str(file))
                continue
            if size is None:
                size = frame.shape
            elif frame.shape != size:
                raise VideoError(f"frame {file} is {frame.shape[1]}x{frame.shape[0]} but the first frame of "
                                 f"{path} is {size[1]}x{size[0]}: all frames of a video must have one size")
            yield index, frame
        warn_unreadable(skipped, f"frames of {path}")
        return
    cap = _open_capture(path)
    try:
        index = 0
        while True:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
        if index == 0:
            raise VideoError(f"video {path} has no decodable frame (empty or damaged file)")
    finally:
        cap.release()


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], *, fps: float,
                total: int | None = None, quality: float = 7, desc: str = "writing video",
                progress: bool = True) -> Path:
    """Encode RGB frames (any iterable, consumed one at a time) to an H.264 mp4.

    The encoder is the ffmpeg binary shipped by imageio-ffmpeg: libx264, yuv420p, so
    the file plays in browsers and notebooks. The size is the first frame's; H.264 needs
    even sides, so an odd width or height gets one replicated pixel row/column. Every
    frame must have the first frame's size. Returns ``path``.
    """
    import imageio_ffmpeg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    size = None
    try:
        for frame in progress_bar(frames, total=total, desc=desc, unit="frame", leave=False, disable=not progress):
            frame = np.asarray(frame)
            if frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"{path}: frames must be H x W x 3 RGB, got shape {frame.shape}")
            if size is None:
                size = frame.shape
                h, w = size[0] + size[0] % 2, size[1] + size[1] % 2
                writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=float(fps), codec="libx264",
                                                     quality=quality, pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
                                                     macro_block_size=2, ffmpeg_log_level="error")
                writer.send(None)
            elif frame.shape != size:
                raise ValueError(f"{path}: frame of shape {frame.shape} after frames of shape {size}")
            if size[0] % 2 or size[1] % 2:
                frame = np.pad(frame, ((0, size[0] % 2), (0, size[1] % 2), (0, 0)), mode="edge")
            writer.send(np.ascontiguousarray(frame, dtype=np.uint8))
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError(f"{path}: no frames to write")
    return path
