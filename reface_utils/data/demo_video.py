"""A generated video of the demo dataset's people, with a labelled gallery and ground truth.

The "your own data" path (:mod:`reface_utils.apps.custom`: person detection, tracking,
identification, gallery enrichment, annotated video) must run for real offline and in
CI. This module draws the 42Street scenario in miniature from the people of
:mod:`reface_utils.data.demo` (real face photos from PyPI wheels on drawn bodies):

- three scenes (three stage backgrounds), people walking across the stage one after
  another, ~10 fps, 640 x 360 pixels, about 180 frames in all;
- people **change clothes between scenes**: the gallery shows each person in the
  scene-1 outfit only, so in scenes 2 and 3 appearance alone cannot find them;
- some walks show the **back** (no face): such a track can only be named through a
  track of the same person in the same outfit whose face *was* seen, i.e. through
  gallery enrichment, which is the paper's point for this scenario;
- one person is **not in the gallery** (a stranger), so "unknown" is exercised.

Layout (cached under ``REFACE_HOME/datasets``, deterministic for a seed, built in a
temporary folder and renamed into place)::

    <root>/demo-video-<version>-seed<seed>/
        video.mp4                     H.264 (libx264) via imageio-ffmpeg
        gallery/<name>/<k>.png        4 crops per gallery person (scene-1 outfit)
        ground_truth.csv              one row per visible person per frame (GT_COLUMNS)

:func:`match_ground_truth` matches predicted tracks to the ground-truth walks and says
which tracks were named correctly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from . import demo
from ..core.files import atomic_folder
from ..core.paths import demo_root
from ..core.video_io import write_video

__all__ = ["DEMO_VIDEO_VERSION", "FRAME_SIZE", "FPS", "GALLERY_PEOPLE", "STRANGER", "GT_COLUMNS",
           "Walk", "DemoVideo", "demo_video_plan", "make_demo_video", "match_ground_truth"]

#: Bump when the drawing or the plan changes: the cache folder name includes it.
# named after this generator and the demo people it draws (demo.DEMO_VERSION): an edited
# generator never serves an older video
DEMO_VIDEO_VERSION = demo.generator_version(__file__, demo.DEMO_VERSION)
FRAME_SIZE = (640, 360)   # (width, height): people ~215-240 px tall, what HOG finds well
FPS = 10
#: People with a gallery folder (demo identity names) and the one who has none.
GALLERY_PEOPLE = ("tom_hanks", "grace_hopper", "t1_face4", "t1_face3")
STRANGER = "t1_face6"
GT_COLUMNS = ("frame", "scene", "walk", "name", "in_gallery", "facing", "outfit", "x1", "y1", "x2", "y2",
              "visible")

_SPEED = 26.0       # px per frame
_STAGGER = 10       # frames between two walks' starts
_GALLERY_CAMERA = 5
_GALLERY_CROPS = 4


@dataclass(frozen=True)
class Walk:
    """One person crossing the stage once: a ground-truth track."""

    walk: int        # global walk id
    scene: int       # 1-based
    name: str        # demo identity name
    facing: str      # "front" (face visible) or "back"
    start: int       # first frame of the walk within the scene
    direction: int   # +1 left -> right, -1 right -> left


# scene -> (camera, walks as (name, facing, direction)); walks start _STAGGER frames apart,
# a person's second walk in a scene starts when their first one has left the stage.
_SCENES: tuple[tuple[int, tuple[tuple[str, str, int], ...]], ...] = (
    (1, (("tom_hanks", "front", 1), ("grace_hopper", "front", 1), ("t1_face4", "front", 1))),
    (2, (("t1_face3", "front", 1), ("tom_hanks", "front", 1), ("t1_face3", "back", 1))),
    (3, (("grace_hopper", "front", -1), ("t1_face4", "front", -1), (STRANGER, "front", -1),
         ("t1_face4", "back", -1))),
)


@dataclass
class DemoVideo:
    """Paths of a generated demo video and its ground truth (:data:`GT_COLUMNS`)."""

    folder: Path
    video: Path
    gallery: Path
    ground_truth: pd.DataFrame
    fps: float
    frame_count: int


def _walk_frames(height: int) -> int:
    width = height // 2
    return int(np.ceil((FRAME_SIZE[0] + width) / _SPEED)) + 1


def demo_video_plan() -> tuple[list[Walk], list[int]]:
    """The walks of the demo video and each scene's first frame (the plan, no drawing)."""
    walks: list[Walk] = []
    scene_starts: list[int] = []
    start = 0
    longest = _walk_frames(240)
    for scene, (_, plan) in enumerate(_SCENES, start=1):
        scene_starts.append(start)
        t, busy_until, end = 0, {}, 0
        for name, facing, direction in plan:
            t0 = max(t, busy_until.get(name, 0))
            walks.append(Walk(len(walks), scene, name, facing, t0, direction))
            busy_until[name] = t0 + longest
            end = max(end, t0 + longest)
            t = t0 + _STAGGER
        start += end + 2  # two empty frames between scenes
    scene_starts.append(start)
    return walks, scene_starts


# Each person's outfit style per scene (scene 1 = the gallery's; a person absent from a
# scene does not wear theirs). Styles are shared between people (in scene 2 t1_face3
# wears grace_hopper's gallery outfit), so appearance alone confuses them; mostly plain
# clothes, because OpenCV's HOG detector loses people in busy patterns.
_WARDROBE: dict[str, tuple[str, str, str]] = {
    "tom_hanks": ("navy suit", "orange jacket", "grey sweater"),
    "grace_hopper": ("red hoodie", "olive jacket", "black dress"),
    "t1_face4": ("white tee + jeans", "yellow tee + shorts", "brown coat"),
    "t1_face3": ("grey sweater", "red hoodie", "white tee + jeans"),
    STRANGER: ("olive jacket", "navy suit", "purple tee"),
}


def _outfits(seed: int) -> dict[tuple[str, int], demo.Outfit]:
    """Each person's outfit per scene: the wardrobe's styles in a per-person shade."""
    styles = {s.style: s for s in demo.OUTFIT_STYLES}
    out = {}
    for name, wardrobe in _WARDROBE.items():
        for scene, style in enumerate(wardrobe, start=1):
            out[(name, scene)] = demo.make_outfit(styles[style], np.random.default_rng([seed, 71, scene, *name.encode()]))
    return out


def _paste(frame: np.ndarray, sprite: np.ndarray, x: int, y: int) -> tuple[int, int, int, int] | None:
    """Blend an RGBA sprite at (x, y) in place, with a dark rim; the box of its opaque pixels."""
    region = demo.blend_sprite(frame, sprite, x, y, rim_shade=0.45)
    if region is None:
        return None
    x0, y0, x1, y1 = region
    ys, xs = np.nonzero(sprite[y0 - y:y1 - y, x0 - x:x1 - x, 3] > 127)
    if len(xs) == 0:
        return None
    return x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1


def _render(folder: Path, seed: int) -> pd.DataFrame:
    people = {i.name: i for i in demo.load_identities()}
    walks, scene_starts = demo_video_plan()
    outfits = _outfits(seed)
    W, H = FRAME_SIZE
    n_frames = scene_starts[-1]
    rng = np.random.default_rng([seed, 72])
    # per walk: body height and feet line (depth), walking cadence
    looks = {w.walk: (int(rng.integers(215, 241)), int(rng.integers(2, 14)), float(rng.uniform(0.07, 0.09)))
             for w in walks}
    backgrounds = [demo.camera_background(cam, (W, H), np.random.default_rng([seed, 73, cam])) for cam, _ in _SCENES]
    rows = []

    def frames():
        for f in range(n_frames):
            scene = int(np.searchsorted(scene_starts, f, side="right"))  # 1-based
            t = f - scene_starts[scene - 1]
            frame = backgrounds[scene - 1].copy()
            for w in walks:
                if w.scene != scene or not (w.start <= t < w.start + _walk_frames(240)):
                    continue
                height, lift, cadence = looks[w.walk]
                sprite = demo.person_layer(people[w.name], outfits[(w.name, scene)], height, facing=w.facing,
                                           walk_phase=((t - w.start) * cadence) % 1.0)
                sw = sprite.shape[1]
                dx = (t - w.start) * _SPEED - sw
                x = int(round(dx if w.direction > 0 else W - dx - sw))
                y = H - height - lift
                box = _paste(frame, sprite, x, y)
                if box is None:
                    continue
                full = sw * height
                vis = (min(W, x + sw) - max(0, x)) * height / full
                rows.append((f, scene, w.walk, w.name, w.name in GALLERY_PEOPLE, w.facing,
                             outfits[(w.name, scene)].style, *box, round(float(vis), 3)))
            yield frame

    write_video(folder / "video.mp4", frames(), fps=FPS, total=n_frames, desc="demo video", progress=False)
    gt = pd.DataFrame(rows, columns=list(GT_COLUMNS))
    # the gallery: a few crops of each gallery person in the scene-1 outfit, another background
    for name in GALLERY_PEOPLE:
        (folder / "gallery" / name).mkdir(parents=True, exist_ok=True)
        for k in range(_GALLERY_CROPS):
            crop = demo.render_person(people[name], outfits[(name, 1)], np.random.default_rng([seed, 75, k]),
                                      view="back" if k == _GALLERY_CROPS - 1 else "front",
                                      camera=_GALLERY_CAMERA)
            cv2.imwrite(str(folder / "gallery" / name / f"{k}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    gt.to_csv(folder / "ground_truth.csv", index=False)
    return gt


def _is_complete(folder: Path) -> bool:
    return ((folder / "ground_truth.csv").is_file() and (folder / "video.mp4").is_file()
            and all(len(list((folder / "gallery" / n).glob("*.png"))) == _GALLERY_CROPS for n in GALLERY_PEOPLE))


def make_demo_video(root: str | os.PathLike | None = None, seed: int = 0, *, force: bool = False) -> DemoVideo:
    """Generate (or reuse) the demo video, its gallery folder and its ground truth.

    The folder is ``<root or paths.demo_root()>/demo-video-<version>-seed<seed>``; it is
    written to a temporary sibling and renamed into place. A few seconds on a CPU.
    """
    parent = Path(root).expanduser() if root is not None else demo_root()
    folder = parent / f"demo-video-{DEMO_VIDEO_VERSION}-seed{seed}"
    atomic_folder(folder, lambda tmp: _render(tmp, seed), is_complete=_is_complete, force=force)
    gt = pd.read_csv(folder / "ground_truth.csv")
    _, scene_starts = demo_video_plan()
    return DemoVideo(folder=folder, video=folder / "video.mp4", gallery=folder / "gallery", ground_truth=gt,
                     fps=float(FPS), frame_count=int(scene_starts[-1]))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two N x 4 box arrays."""
    x1, y1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x2, y2 = np.minimum(a[:, 2], b[:, 2]), np.minimum(a[:, 3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def match_ground_truth(tracks: pd.DataFrame, detections: pd.DataFrame, ground_truth: pd.DataFrame, *,
                    min_iou: float = 0.3) -> pd.DataFrame:
    """Which ground-truth walk each predicted track follows, and whether it was named right.

    A track's boxes are compared with the ground-truth boxes of the same frames; the
    walk it overlaps (IoU >= ``min_iou``) in most frames is its walk (``gt_walk`` -1 and
    ``gt_name`` ``""`` when none). ``expected`` is the walk's person, or ``"unknown"``
    for the stranger; ``correct`` compares it with the track's ``identity``.
    """
    det = detections[["track_id", "frame", "x1", "y1", "x2", "y2"]]
    gt = ground_truth[["frame", "walk", "name", "in_gallery", "x1", "y1", "x2", "y2"]]
    pairs = det.merge(gt, on="frame", suffixes=("", "_gt"))
    pairs["iou"] = _iou(pairs[["x1", "y1", "x2", "y2"]].to_numpy(float),
                        pairs[["x1_gt", "y1_gt", "x2_gt", "y2_gt"]].to_numpy(float))
    hits = pairs[pairs["iou"] >= min_iou]
    votes = hits.groupby(["track_id", "walk", "name", "in_gallery"]).size().rename("frames").reset_index()
    votes = votes.sort_values(["track_id", "frames"], ascending=[True, False]).drop_duplicates("track_id")
    out = tracks[["track_id", "num_frames", "identity"]].merge(votes, on="track_id", how="left")
    out["gt_walk"] = out["walk"].fillna(-1).astype(int)
    out["gt_name"] = out["name"].fillna("")
    out["overlap"] = (out["frames"].fillna(0) / out["num_frames"]).round(3)
    in_gallery = out["in_gallery"].fillna(False).astype(bool)
    out["expected"] = np.where(in_gallery, out["gt_name"], np.where(out["gt_walk"] >= 0, "unknown", ""))
    out["correct"] = (out["expected"] != "") & (out["identity"] == out["expected"])
    return out[["track_id", "num_frames", "gt_walk", "gt_name", "overlap", "expected", "identity", "correct"]]
