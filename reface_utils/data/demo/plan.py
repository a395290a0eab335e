"""The demo dataset itself: which images it has (:func:`demo_plan`), drawing them
(:func:`render_plan`), and the cached folder (:func:`make_demo_dataset`).

Layout (the LTCC layout, so that the demo goes through a real parser)::

    <root>/demo-<version>-seed<seed>/
        train/<pid>_<clothes>_c<cam>_<frame>.png    2 extra identities (no face)
        query/<pid>_<clothes>_c<cam>_<frame>.png
        test/<pid>_<clothes>_c<cam>_<frame>.png     the gallery
        demo_manifest.csv                           one row per image (see MANIFEST_COLUMNS)

Generation is deterministic for a seed and takes a few seconds; the folder is written
to a temporary sibling and renamed into place, and regenerated if incomplete.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pandas as pd

from ...core.paths import demo_root
from ...core.progress import progress_bar
from .folders import MANIFEST_NAME, build_folder, generator_version
from .people import OUTFIT_STYLES, Identity, Outfit, load_identities, make_outfit
from .scenes import DEFAULT_SIZE, VIEWS, render_person

__all__ = ["DEMO_VERSION", "MANIFEST_COLUMNS", "demo_plan", "render_plan", "make_demo_dataset", "read_manifest"]

# The whole package's source (people, sprite, scenes, this plan, ...): an edit to any
# module that draws the demo changes the cached folder's name.
DEMO_VERSION = generator_version(Path(__file__).parent)
MANIFEST_COLUMNS = ("file", "split", "role", "pid", "name", "clothes", "camera", "frame",
                    "style", "view", "face_visible")


def demo_plan(seed: int = 0) -> pd.DataFrame:
    """Which images the demo has: one row per image (the manifest without rendering).

    Per identity (pids 1..9), four outfits and six cameras:
    gallery (``test/``): outfit 1 in two cameras and outfit 2 in two others, 12 each;
    query: outfit 1 in a third camera (3, same-clothes queries), outfits 3 and 4 in
    two cameras each (5 each, clothes-changing queries: never in that person's
    gallery). About a third of each group shows no usable face (back / small /
    occluded, in turn). Two extra identities (pids 101, 102, no face) form ``train/``.
    """
    rng = np.random.default_rng([seed, 1])
    rows = []

    def group(split: str, pid: int, name: str, clothes: int, style: str, cameras: Sequence[int],
              n: int, hidden: int) -> None:
        start = int(rng.integers(3))  # back / small / occluded in turn, from a random one
        hidden_views = [VIEWS[1 + (start + k) % 3] for k in range(hidden)]
        views = np.array(["front"] * (n - hidden) + hidden_views, dtype=object)
        rng.shuffle(views)
        for k in range(n):
            rows.append({"split": split, "pid": pid, "name": name, "clothes": clothes,
                         "camera": int(cameras[k % len(cameras)]), "style": style,
                         "view": views[k]})

    n_styles = len(OUTFIT_STYLES)
    for identity in load_identities():
        styles = rng.choice(n_styles, size=4, replace=False)
        cams = rng.permutation(6) + 1
        st = [OUTFIT_STYLES[i].style for i in styles]
        p, nm = identity.pid, identity.name
        group("test", p, nm, 1, st[0], cams[[0, 1]], 12, 4)
        group("test", p, nm, 2, st[1], cams[[2, 3]], 12, 4)
        group("query", p, nm, 1, st[0], cams[[1]], 3, 1)
        group("query", p, nm, 3, st[2], cams[[4, 5]], 5, 2)
        group("query", p, nm, 4, st[3], cams[[0, 3]], 5, 2)
    for pid in (101, 102):
        styles = rng.choice(n_styles, size=2, replace=False)
        cams = rng.permutation(6) + 1
        for clothes, s in enumerate(styles, start=1):
            group("train", pid, f"train_{pid}", clothes, OUTFIT_STYLES[s].style, cams[:2], 4, 4)

    plan = pd.DataFrame(rows)
    plan["frame"] = np.arange(len(plan))
    plan["role"] = plan["split"].map({"test": "gallery", "query": "query", "train": "train"})
    plan["face_visible"] = plan["view"] == "front"
    plan["file"] = [f"{r.split}/{r.pid:03d}_{r.clothes}_c{r.camera}_{r.frame:06d}.png"
                    for r in plan.itertuples()]
    return plan[list(MANIFEST_COLUMNS)]


def _train_identity(pid: int) -> Identity:
    r = np.random.default_rng(pid)
    hair = tuple(int(v) for v in r.integers(20, 120, 3))
    skin = tuple(int(v) for v in r.integers(120, 220, 3))
    return Identity(pid, f"train_{pid}", None, (0.0, 0.0), skin, hair, bool(r.random() < 0.5))


def render_plan(plan: pd.DataFrame, folder: Path, seed: int, size: tuple[int, int] = DEFAULT_SIZE) -> None:
    """Draw every row of ``plan`` (manifest columns) to ``folder / row.file`` (PNG or JPEG
    by the file's suffix) and write the manifest. One shade of a style per (person,
    outfit), one random stream per frame: the same plan and seed give the same images."""
    people = {i.pid: i for i in load_identities()}
    style_by_name = {s.style: s for s in OUTFIT_STYLES}
    outfits: dict[tuple[int, int], Outfit] = {}
    for row in progress_bar(plan.itertuples(), total=len(plan), desc="demo images", leave=False):
        person = people.get(row.pid) or _train_identity(row.pid)
        key = (row.pid, row.clothes)
        if key not in outfits:  # one shade of the style per (person, outfit)
            outfits[key] = make_outfit(style_by_name[row.style], np.random.default_rng([seed, 2, *key]))
        rng = np.random.default_rng([seed, 3, row.frame])
        img = render_person(person, outfits[key], rng, size, view=row.view, camera=row.camera)
        target = folder / row.file
        ok, data = cv2.imencode(target.suffix, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError(f"could not encode demo image {row.file}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.tobytes())
    plan.to_csv(folder / MANIFEST_NAME, index=False)


def make_demo_dataset(root: str | os.PathLike | None = None, seed: int = 0,
                      size: tuple[int, int] = DEFAULT_SIZE, *, force: bool = False) -> Path:
    """Generate (or reuse) the demo dataset and return its folder.

    The folder is ``<root or paths.demo_root()>/demo-<DEMO_VERSION>-seed<seed>``
    (``-<w>x<h>`` appended for a non-default size), built by :func:`.folders.build_folder`.
    """
    parent = Path(root).expanduser() if root is not None else demo_root()
    suffix = "" if tuple(size) == DEFAULT_SIZE else f"-{size[0]}x{size[1]}"
    folder = parent / f"demo-{DEMO_VERSION}-seed{seed}{suffix}"

    def write(tmp: Path) -> None:
        for split in ("train", "query", "test"):
            (tmp / split).mkdir(parents=True, exist_ok=True)
        render_plan(demo_plan(seed), tmp, seed, tuple(size))

    return build_folder(folder, write, force=force)


def read_manifest(folder: str | os.PathLike) -> pd.DataFrame:
    """The demo's manifest with an absolute ``path`` column added."""
    folder = Path(folder)
    df = pd.read_csv(folder / MANIFEST_NAME)
    df["path"] = [str((folder / f).absolute()) for f in df["file"]]
    return df
