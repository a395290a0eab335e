"""Small generated datasets in each real layout (PRCC, LTCC, LaST, CCVID, VC-Clothes, 42Street).

The demo (:mod:`reface_utils.data.demo`) is one dataset in the LTCC layout. The notebooks and
the pipeline also have a branch per dataset: PRCC's two query sets, LaST's
one-camera-per-image rule, CCVID's tracklets and per-track vote, VC-Clothes' camera
numbering, 42Street's tracklet folders, unknown identity and extra data. Each generator
here writes a tree of a few hundred images exactly as that dataset's authors lay it out,
with the demo's people, outfits, cameras and face rules, so the real parser reads it and
every branch runs end to end offline::

    make_layout_dataset("prcc")     # -> <REFACE_HOME>/datasets/prcc-<version>-seed0/rgb/test/{A,B,C}/...

Every tree has a ``demo_manifest.csv`` (:data:`reface_utils.data.demo.MANIFEST_COLUMNS`): one
row per image with its true identity (``pid``: the demo person drawn; 42Street writes
its own labels into the file names), outfit, camera and view. The parsers never read it.

One more, ``manifest``, is not a tree but a CSV (:mod:`reface_utils.data.datasets.manifest`) that
describes the demo dataset's own images (same ids, cameras, outfits, roles and order as
``load_dataset("demo")``) by paths relative to the CSV's folder::

    make_layout_dataset("manifest")  # -> <REFACE_HOME>/datasets/manifest-<version>-seed0/manifest.csv
                                     #    rows "../demo-<demo version>-seed0/test/001_1_c1_000000.png,1,0,0,gallery"

The demo is generated (or reused) next to it; the CSV is written into a folder of its own,
never into the demo's folder.

The writers stay here rather than in each dataset's module
(``reface_utils.data.datasets.<name>``): they draw with the demo generator's people and
image assets, which the parsers must not import.

What each tree holds (per person of the demo's nine, unless said otherwise):

==========  ===================================================================
prcc        ``rgb/test/A`` gallery (outfit 1), ``B`` same clothes, ``C`` outfit 2;
            ``rgb/train``, ``rgb/val`` with two faceless people (not read)
ltcc        ``test`` gallery (outfits 1, 2), ``query`` outfit 1 in another camera and
            outfit 3; ``train`` (not read)
last        ``test/gallery/<pid>/`` (outfit 1), ``test/query`` (outfits 1 and 2);
            ``train``, ``val`` (not read)
ccvid       ``session{1,2,3}/<pid>_<cam>/`` tracklets of 6 frames; ``gallery.txt``
            (outfit 1, two cameras), ``query.txt`` (outfit 1 in a third camera, outfit
            2 in session 3); ``train.txt`` (not read)
vcclothes   ``{gallery,query}/<pid>-<cam>-<clothes>-<n>.jpg``: cameras 1-3 show outfit
            1, camera 4 outfit 2 (as the reference's sc/cc camera subsets assume)
street42    ``gallery/`` (eight people in their first costume + the "unknown" class
            12), ``test/tracklets/<video>/<pid>_<n>/`` in the second costume (12
            frames; one short tracklet that the protocol skips), ``test/vids/`` (the
            videos, not read), ``extra_data/`` (unlabelled crops in the second costume
            with faces: only extra data can teach the gallery the new costume for the
            people whose tracklets never show a face)
==========  ===================================================================
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from . import demo
from .datasets import dataset_spec, load_dataset
from .datasets.manifest import MANIFEST_FILE, manifest_text
from ..core.files import atomic_write_text
from ..core.paths import demo_root

__all__ = ["LAYOUT_NAMES", "LAYOUT_VERSION", "layout_plan", "make_layout_dataset"]

LAYOUT_NAMES = ("prcc", "ltcc", "last", "ccvid", "vcclothes", "street42", "manifest")
# Like the demo's, the folder name follows the generators' source, so an edited generator
# never serves trees drawn by an older one.
LAYOUT_VERSION = demo.generator_version(__file__, demo.DEMO_VERSION)

#: Frames of a video tracklet; 42Street scores tracklets of at least 10 frames (its spec's
#: min_track_frames), and its "unknown person" label is its spec's unknown_pid.
_CCVID_FRAMES = 6
_STREET42_FRAMES = 12
_STREET42_UNKNOWN = dataset_spec("street42").unknown_pid


class _Plan:
    """Rows of a layout's manifest, added group by group with the demo's face rule: about
    a third of each group shows no usable face (back / small / occluded, in turn)."""

    def __init__(self, seed: int, layout: str) -> None:
        self.rng = np.random.default_rng([seed, 7, LAYOUT_NAMES.index(layout)])
        self.rows: list[dict] = []

    def views(self, n: int, hidden: int, shuffle: bool = True) -> list[str]:
        start = int(self.rng.integers(3))
        views = ["front"] * (n - hidden) + [demo.VIEWS[1 + (start + k) % 3] for k in range(hidden)]
        if shuffle:
            self.rng.shuffle(views)
        return views

    def add(self, file: Callable[[int, int], str], split: str, role: str, person: demo.Identity | int,
            clothes: int, style: str, cameras: Sequence[int], views: Sequence[str]) -> None:
        """One image per view; ``file(k, frame)`` names the k-th (``frame`` numbers all images)."""
        pid = person if isinstance(person, int) else person.pid
        name = f"train_{pid}" if isinstance(person, int) else person.name
        for k, view in enumerate(views):
            frame = len(self.rows)
            self.rows.append({"file": file(k, frame), "split": split, "role": role, "pid": pid, "name": name,
                              "clothes": clothes, "camera": int(cameras[k % len(cameras)]), "frame": frame,
                              "style": style, "view": view, "face_visible": view == "front"})

    def styles(self, n: int) -> list[str]:
        return [demo.OUTFIT_STYLES[i].style for i in self.rng.choice(len(demo.OUTFIT_STYLES), n, replace=False)]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)[list(demo.MANIFEST_COLUMNS)]


def _prcc(plan: _Plan, people: Sequence[demo.Identity]) -> None:
    for p in people:
        s = plan.styles(2)
        for cam, role, clothes, n, hidden in (("A", "gallery", 1, 6, 2), ("B", "query_same", 1, 3, 1),
                                               ("C", "query_diff", 2, 4, 1)):
            scene = "ABC".index(cam) + 1
            plan.add(lambda k, f, cam=cam: f"rgb/test/{cam}/{p.pid:03d}/cropped_rgb{f:04d}.jpg", "test", role, p,
                     clothes, s[clothes - 1], [scene], plan.views(n, hidden))
    for pid, split in ((101, "train"), (102, "val")):  # not read by the test parser
        s = plan.styles(1)
        plan.add(lambda k, f, pid=pid, split=split: f"rgb/{split}/{pid:03d}/{'AB'[k % 2]}_{f:04d}.jpg", split,
                 split, pid, 1, s[0], [1, 2], plan.views(2, 2))


def _ltcc(plan: _Plan, people: Sequence[demo.Identity]) -> None:
    def name(split: str, pid: int, clothes: int, cams: Sequence[int]):
        return lambda k, f: f"{split}/{pid:03d}_{clothes}_c{cams[k % len(cams)]}_{f:06d}.png"

    for p in people:
        s = plan.styles(3)
        cams = [int(c) for c in plan.rng.permutation(6) + 1]
        for split, role, clothes, cs, n, hidden in (("test", "gallery", 1, cams[0:2], 6, 2),
                                                   ("test", "gallery", 2, cams[2:4], 6, 2),
                                                   ("query", "query", 1, cams[4:5], 2, 1),
                                                   ("query", "query", 3, cams[4:6], 4, 1)):
            plan.add(name(split, p.pid, clothes, cs), split, role, p, clothes, s[clothes - 1], cs,
                     plan.views(n, hidden))
    s = plan.styles(1)
    plan.add(name("train", 101, 1, [1, 2]), "train", "train", 101, 1, s[0], [1, 2], plan.views(4, 4))


def _last(plan: _Plan, people: Sequence[demo.Identity]) -> None:
    for p in people:
        s = plan.styles(2)
        cams = [int(c) for c in plan.rng.permutation(6) + 1]
        plan.add(lambda k, f: f"test/gallery/{p.pid:06d}/{p.pid:06d}_{f:06d}_1.jpg", "test", "gallery", p, 1, s[0],
                 cams[:3], plan.views(6, 2))
        plan.add(lambda k, f: f"test/query/{p.pid:06d}_{f:06d}_1.jpg", "test", "query", p, 1, s[0], cams[3:4],
                 plan.views(2, 1))
        plan.add(lambda k, f: f"test/query/{p.pid:06d}_{f:06d}_2.jpg", "test", "query", p, 2, s[1], cams[4:6],
                 plan.views(4, 1))
    s = plan.styles(2)
    for pid, split, path in ((101, "train", "train/{pid:06d}/{pid:06d}_{f:06d}_1.jpg"),
                             (102, "val", "val/query/{pid:06d}_{f:06d}_1.jpg")):
        plan.add(lambda k, f, pid=pid, path=path: path.format(pid=pid, f=f), split, split, pid, 1, s[0], [1],
                 plan.views(2, 2))


def _ccvid(plan: _Plan, people: Sequence[demo.Identity]) -> list[tuple[str, str, int, str]]:
    """Adds the frames; returns the list-file lines (list, tracklet, pid, clothes label)."""
    lines = []

    def tracklet(list_name: str, session: int, p: demo.Identity | int, cam: int, clothes: int, style: str,
                 faces: int) -> None:
        pid = p if isinstance(p, int) else p.pid
        folder = f"session{session}/{pid:03d}_{cam:02d}"
        label = f"u{clothes}_l{clothes}_s1_c1_a1"  # CCVID writes the outfit as a clothes-attribute label
        # A tracklet is one walk: the face shows in its first frames (or not at all).
        views = ["front"] * faces + plan.views(_CCVID_FRAMES - faces, _CCVID_FRAMES - faces, shuffle=False)
        role = {"gallery": "gallery", "query": "query"}.get(list_name, "train")
        plan.add(lambda k, f: f"{folder}/{k + 1:05d}.jpg", list_name, role, p, clothes, style, [cam], views)
        lines.append((list_name, folder, pid, label))

    for i, p in enumerate(people):
        s = plan.styles(2)
        cams = [int(c) for c in plan.rng.permutation(6) + 1]
        tracklet("gallery", 1, p, cams[0], 1, s[0], 4)
        tracklet("gallery", 2, p, cams[1], 1, s[0], 3)
        tracklet("query", 1, p, cams[2], 1, s[0], 3)              # same clothes, another camera
        tracklet("query", 3, p, cams[3], 2, s[1], 3 if i % 3 else 0)  # clothes-changing (session 3)
    tracklet("train", 1, 101, 1, 1, plan.styles(1)[0], 0)
    return lines


def _vcclothes(plan: _Plan, people: Sequence[demo.Identity]) -> None:
    for p in people:
        s = plan.styles(2)
        for split in ("gallery", "query"):
            for cam in (1, 2, 3, 4):
                clothes = 1 if cam < 4 else 2
                n = 2 if split == "gallery" else 1
                plan.add(lambda k, f, split=split, cam=cam, clothes=clothes:
                         f"{split}/{p.pid:04d}-{cam}-{clothes:02d}-{f:04d}.jpg", split, split, p, clothes,
                         s[clothes - 1], [cam], plan.views(n, int(split == "gallery")))
    s = plan.styles(1)
    plan.add(lambda k, f: f"train/0101-1-01-{f:04d}.jpg", "train", "train", 101, 1, s[0], [1], plan.views(2, 2))


def _street42(plan: _Plan, people: Sequence[demo.Identity]) -> list[tuple[str, list[str]]]:
    """Adds the images; returns the videos (name, frame files) for ``test/vids``."""
    label = {p.pid: (p.pid - 1 if p is not people[-1] else _STREET42_UNKNOWN) for p in people}
    videos: dict[str, list[str]] = {"part1_s000_e200": [], "part2_s200_e400": []}
    stage_costume = {}
    for i, p in enumerate(people):
        s = plan.styles(2)  # costume 1 in the annotated gallery, costume 2 on stage
        stage_costume[p.pid] = s[1]
        plan.add(lambda k, f: f"gallery/{label[p.pid]:03d}_c1_{f:06d}.png", "gallery", "gallery", p, 1, s[0],
                 [1, 2], plan.views(6, 2))
        for j, video in enumerate(videos):
            # Every third person never shows the face on stage: only extra data can help.
            faces = 0 if i % 3 == 0 else 4
            views = ["front"] * faces + plan.views(_STREET42_FRAMES - faces, _STREET42_FRAMES - faces, shuffle=False)
            folder = f"test/tracklets/{video}/{label[p.pid]:03d}_{j:03d}"
            plan.add(lambda k, f, folder=folder, video=video: f"{folder}/v_{video}_f{k}.png", "test", "query", p, 2,
                     s[1], [3 + j], views)
            videos[video] += [r["file"] for r in plan.rows[-len(views):]]
        if i < len(people) - 1:  # unannotated crops of the known people in costume 2, faces visible
            plan.add(lambda k, f: f"extra_data/crop_{f:06d}.png", "extra", "extra", p, 2, s[1], [5],
                     plan.views(3, 0))
    # A tracklet shorter than 10 frames: present in the data, skipped by the protocol.
    p = people[1]
    plan.add(lambda k, f: f"test/tracklets/part1_s000_e200/{label[p.pid]:03d}_009/v_part1_s000_e200_f{k}.png",
             "test", "query", p, 2, stage_costume[p.pid], [3], plan.views(4, 2))
    return list(videos.items())


def layout_plan(layout: str, seed: int = 0) -> pd.DataFrame:
    """The manifest of the ``layout`` tree: one row per image, nothing drawn (``manifest``:
    the demo's test images, ``file`` relative to the CSV's folder)."""
    return _plan(layout, seed)[0]


def _plan(layout: str, seed: int):
    if layout not in LAYOUT_NAMES:
        raise ValueError(f"unknown layout {layout!r}; one of {', '.join(LAYOUT_NAMES)}")
    if layout == "manifest":
        table = demo.demo_plan(seed)
        table = table[table["role"] != "train"].reset_index(drop=True)
        table["file"] = [f"../demo-{demo.DEMO_VERSION}-seed{seed}/{f}" for f in table["file"]]
        return table, None
    plan = _Plan(seed, layout)
    people = demo.load_identities()
    extra = {"prcc": _prcc, "ltcc": _ltcc, "last": _last, "ccvid": _ccvid, "vcclothes": _vcclothes,
             "street42": _street42}[layout](plan, people)
    return plan.table(), extra


def _write_ccvid_lists(folder: Path, lines: list[tuple[str, str, int, str]]) -> None:
    for list_name in ("train", "query", "gallery"):
        text = "".join(f"{t}\t{pid}\t{label}\n" for name, t, pid, label in lines if name == list_name)
        (folder / f"{list_name}.txt").write_text(text)


def _write_videos(folder: Path, videos: list[tuple[str, list[str]]]) -> None:
    import imageio.v3 as iio  # the H.264 writer that ships with imageio-ffmpeg

    (folder / "test" / "vids").mkdir(parents=True, exist_ok=True)
    for name, files in videos:
        frames = np.stack([iio.imread(folder / f) for f in files])
        iio.imwrite(folder / "test" / "vids" / f"{name}.mp4", frames, fps=10, codec="libx264",
                    macro_block_size=16)


def make_layout_dataset(layout: str, root: str | os.PathLike | None = None, seed: int = 0, *,
                        force: bool = False) -> Path:
    """Generate (or reuse) the small ``layout`` tree and return the dataset folder to pass
    as ``data_root`` (``<root or paths.demo_root()>/<layout>-<LAYOUT_VERSION>-seed<seed>``).

    Built atomically (:func:`reface_utils.data.demo.build_folder`); deterministic for a seed.
    ``manifest`` returns the CSV (``.../manifest-<LAYOUT_VERSION>-seed<seed>/manifest.csv``),
    which is ``data_root`` for ``dataset="manifest"``.
    """
    table, extra = _plan(layout, seed)
    parent = Path(root).expanduser() if root is not None else demo_root()
    folder = parent / f"{layout}-{LAYOUT_VERSION}-seed{seed}"
    if layout == "manifest":
        return _make_manifest(folder, parent, seed, force)

    def write(tmp: Path) -> None:
        demo.render_plan(table, tmp, seed)
        if layout == "ccvid":
            _write_ccvid_lists(tmp, extra)
        elif layout == "street42":
            _write_videos(tmp, extra)

    return demo.build_folder(folder, write, force=force)


def _make_manifest(folder: Path, parent: Path, seed: int, force: bool) -> Path:
    """The demo (generated or reused under ``parent``) described by ``folder/manifest.csv``;
    the CSV is rewritten (atomically) only when its text would change."""
    images = load_dataset("demo", demo.make_demo_dataset(parent, seed)).images
    csv = folder / MANIFEST_FILE
    text = manifest_text(images, folder)
    if force or not csv.is_file() or csv.read_text() != text:
        atomic_write_text(csv, text)
    return csv


if __name__ == "__main__":  # python -m reface_utils.data.demo_layouts <layout> [root] (also: reface demo-layout): prints the folder (manifest: the CSV)
    import sys

    if len(sys.argv) not in (2, 3) or sys.argv[1] not in LAYOUT_NAMES:
        raise SystemExit(f"usage: python -m reface_utils.data.demo_layouts {{{','.join(LAYOUT_NAMES)}}} [root]")
    print(make_layout_dataset(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None))
