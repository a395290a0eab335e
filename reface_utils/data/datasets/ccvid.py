"""CCVID (Gu et al., CVPR 2022): its parser and its spec.

ccvid::

    <root>/query.txt      lines "<session>/<tracklet> <pid> <clothes label>"
    <root>/gallery.txt    same format
    <root>/<session>/<tracklet>/<frame files>
    (<root>/train.txt: optional, not read)

  One row per frame; ``track`` is the tracklet path as written in the list.
  ``camid = int(<tracklet>.split("_")[1])``, plus 12 for ``session3``. The clothes key
  is ``"<pid>_<clothes label>"``; ``clothes_id`` is its rank among the sorted keys of
  query + gallery.
"""
from __future__ import annotations

from pathlib import Path

from .common import (COLUMNS, Dataset, DatasetError, DatasetNotFoundError, Report, _files, _folder_loader, _missing,
                     _rank, _report_table, _resolve_root, _table)
from .registry import register_dataset
from .spec import DatasetSpec, EnrichmentRules, PaperComparison, published

NAME = "ccvid"


def _read_list(path: Path, name: str, layout: str) -> list[tuple[str, str, str, int]]:
    """CCVID list file -> (tracklet, pid, clothes label, line number)."""
    if not path.is_file():
        raise _missing("list file", path, name, layout)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{name}: cannot read list file {path}: {err}") from err
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or not fields[1].isdigit():
            raise DatasetError(f"{name}: {path} line {n}: expected '<session>/<tracklet> <pid> "
                               f"<clothes label>', got {line.strip()!r}")
        out.append((fields[0], fields[1], fields[2], n))
    if not out:
        raise DatasetError(f"{name}: list file {path} is empty (no tracklets). "
                           f"Expected layout: {layout}")
    return out


def _ccvid_camid(tracklet: str, where: str) -> int:
    # Reference rule: the camera is the 2nd "_" field of the tracklet path; session3
    # cameras are shifted by 12 so that they never equal session1/2 cameras.
    parts = tracklet.split("_")
    if len(parts) < 2 or not parts[1].isdigit():
        raise DatasetError(f"{NAME}: {where}: tracklet {tracklet!r} does not match "
                           "'<session>/<pid>_<cam>' (cannot read its camera)")
    cam = int(parts[1])
    return cam + 12 if tracklet.split("/")[0] == "session3" else cam


#: CCVID frame files (the reference globs every file of a tracklet; its frames are .jpg).
_FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def load_ccvid(root: Path) -> Dataset:
    name, layout = NAME, SPEC.layout
    root = _resolve_root(name, root, "query.txt", layout, SPEC.usual_dirs)
    lists = {role: _read_list(root / f"{role}.txt", name, layout) for role in ("gallery", "query")}
    clothes = _rank(f"{pid}_{c}" for entries in lists.values() for _, pid, c, _ in entries)
    rows: dict[str, list] = {k: [] for k in COLUMNS}
    report: Report = []
    for role, entries in lists.items():
        list_file = root / f"{role}.txt"
        for tracklet, pid, clothes_label, n in entries:
            where = f"{list_file} line {n}"
            camid = _ccvid_camid(tracklet, where)
            folder = root / tracklet
            if not folder.is_dir():
                raise DatasetNotFoundError(f"{NAME}: {where}: tracklet folder {folder} does not "
                                           f"exist. Expected layout: {layout}")
            frames = _files(folder, _FRAME_SUFFIXES, name, role, report)
            if not frames:
                raise DatasetError(f"{NAME}: {where}: tracklet folder {folder} holds no frames "
                                   f"({'/'.join(_FRAME_SUFFIXES)} files)")
            k = len(frames)
            rows["path"] += frames
            rows["pid"] += [int(pid)] * k
            rows["camid"] += [camid] * k
            rows["clothes_id"] += [clothes[f"{pid}_{clothes_label}"]] * k
            rows["role"] += [role] * k
            rows["track"] += [tracklet] * k
    return Dataset(name, root, _table(rows), eval_modes=SPEC.eval_modes, is_video=True,
                   file_report=_report_table(report))


SPEC = DatasetSpec(
    name=NAME,
    loader=_folder_loader(load_ccvid),
    title="CCVID",
    layout=("<root>/{query,gallery}.txt with lines '<session>/<tracklet> <pid> <clothes label>',"
            " frames in <root>/<session>/<tracklet>/"),
    usual_dirs=("CCVID", "ccvid"),
    eval_modes=("tracklet",),
    enrichment=EnrichmentRules(False, True, "majority vote per tracklet (gallery_builder_CCVID)"),
    paper=PaperComparison(
        rows=(("query", "tracklet"),),
        why="tracklet accuracy (CCVID has no mAP in the README)",
        published=published({"43cc526": (89.2, None), "ea46015": (89.2, None), "8b5b32e": (90.5, None),
                             "09be7de": (89.2, None), "90717cc": (89.2, None)})),
    reid_checkpoint="cal_ccvid",
    how_to_get="Download CCVID as described at https://github.com/guxinqian/Simple-CCReID",
)
SPECS = (SPEC,)
register_dataset(SPEC)
