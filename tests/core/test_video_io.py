"""core.video_io: frames streamed from a video file or a frames folder, H.264 mp4 written and read back."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import decoded_frame_count, write_png
from reface_utils.core.images import UnreadableImagesWarning
from reface_utils.core.video_io import VideoError, iter_frames, probe_video, video_name, write_video


def _flat_frames(n: int, size=(32, 48)) -> list[np.ndarray]:
    """``n`` flat frames, each a distinct grey level and tinted red, so order and colour survive H.264."""
    frames = []
    for k in range(n):
        f = np.full((*size, 3), 40 + 20 * k, np.uint8)
        f[..., 0] = np.uint8(min(255, 120 + 20 * k))
        frames.append(f)
    return frames


def test_frames_folder_streams_in_natural_order_and_skips_unreadable(tmp_path):
    folder = tmp_path / "clip"
    for i in (1, 2, 10):  # natural order: 1, 2, 10 (not 1, 10, 2)
        write_png(folder / f"frame_{i}.png", np.full((24, 32, 3), i, np.uint8))
    (folder / "frame_3.png").write_bytes(b"broken")
    info = probe_video(folder, fps=5)
    assert (info.kind, info.frame_count, info.width, info.height, info.fps) == ("frames", 4, 32, 24, 5.0)
    with pytest.warns(UnreadableImagesWarning, match="frame_3.png"):
        got = [(i, int(f[0, 0, 0])) for i, f in iter_frames(folder)]
    assert got == [(0, 1), (1, 2), (3, 10)]  # index 2 (frame_3) skipped
    write_png(folder / "frame_11.png", np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(VideoError, match=r"frame_11\.png is 10x10"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableImagesWarning)
        list(iter_frames(folder))


def test_write_video_is_h264_readable_with_every_frame(tmp_path):
    ramp = np.linspace(0, 120, 63)[None, :, None]
    frames = [np.broadcast_to(ramp + 7 * k, (45, 63, 3)).astype(np.uint8) for k in range(17)]  # odd sides
    path = write_video(tmp_path / "v.mp4", iter(frames), fps=12, progress=False)
    assert decoded_frame_count(path) == 17
    info = probe_video(path)
    assert (info.width, info.height) == (64, 46)  # padded to even sides for yuv420p
    assert info.fps == pytest.approx(12)
    back = [f for _, f in iter_frames(path)]
    assert len(back) == 17
    assert np.abs(back[5][:45, :63].astype(int) - frames[5]).mean() < 4  # the content (lossy), in order
    assert np.all(np.diff([f.mean() for f in back]) > 5)
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "none.mp4", iter([]), fps=10, progress=False)


def test_written_frames_read_back_in_order_as_rgb(tmp_path):
    frames = _flat_frames(5)
    path = write_video(tmp_path / "out" / "clip.mp4", frames, fps=10, progress=False)  # the folder is created
    assert path == tmp_path / "out" / "clip.mp4" and path.stat().st_size > 0
    info = probe_video(path)
    assert (info.kind, info.name, info.width, info.height) == ("file", "clip", 48, 32)
    assert info.fps == pytest.approx(10) and info.frame_count == 5
    assert probe_video(path, fps=3).fps == 3  # an explicit frame rate wins
    back = list(iter_frames(path))
    assert [i for i, _ in back] == [0, 1, 2, 3, 4]
    for (_, got), want in zip(back, frames):
        assert got.shape == want.shape and got.dtype == np.uint8
        assert np.abs(got.astype(int) - want).mean() < 3  # lossy, but the same picture
        assert got[..., 0].mean() > got[..., 2].mean()  # RGB, not BGR


def test_write_video_refuses_frames_it_cannot_encode(tmp_path):
    with pytest.raises(ValueError, match=r"frames must be H x W x 3 RGB, got shape \(8, 8\)"):
        write_video(tmp_path / "grey.mp4", [np.zeros((8, 8), np.uint8)], fps=5, progress=False)
    with pytest.raises(ValueError, match=r"frame of shape \(8, 10, 3\) after frames of shape \(8, 8, 3\)"):
        write_video(tmp_path / "sizes.mp4", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)],
                    fps=5, progress=False)


def test_frames_folder_with_an_unreadable_first_frame_is_named(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "0001.jpg").write_bytes(b"not a jpeg")
    write_png(folder / "0002.png", np.zeros((8, 8, 3), np.uint8))
    (folder / "notes.txt").write_text("not a frame")  # ignored, not counted
    with pytest.raises(VideoError, match=r"first frame of .*clip is unreadable: .*0001\.jpg"):
        probe_video(folder)


def test_video_errors_are_value_errors_naming_the_input(tmp_path):
    assert issubclass(VideoError, ValueError)
    with pytest.raises(ValueError, match=rf"video {tmp_path}/gone\.mkv does not exist"):
        list(iter_frames(tmp_path / "gone.mkv"))
    (tmp_path / "clip").write_bytes(b"")
    with pytest.raises(VideoError, match=r"unsupported video format '\(no suffix\)'"):
        probe_video(tmp_path / "clip")


def test_video_name_is_the_stem_or_the_folder_name(tmp_path):
    assert video_name(tmp_path / "street.cam1.mp4") == "street.cam1"
    (tmp_path / "frames.v2").mkdir()
    assert video_name(tmp_path / "frames.v2") == "frames.v2"  # a folder keeps its whole name
