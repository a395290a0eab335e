"""LaST (Shu et al., 2021): its parser and its spec.

last::

    <root>/test/query/<pid>_<...>.jpg             query
    <root>/test/gallery/<pid>/<pid>_<...>.jpg     gallery
    (<root>/train, <root>/val: optional, not read)

  No camera or clothes labels in test: every image is its own camera (query images
  ``camid = 0..Q-1`` in sorted order, gallery images ``Q..Q+G-1``) and
  ``clothes_id = pid``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .common import (Dataset, Report, _files, _folder_loader, _match_all, _nonempty, _note, _report_table,
                     _require_dir, _resolve_root, _subdirs, _table)
from .registry import register_dataset
from .spec import DatasetSpec, EnrichmentRules, PaperComparison, published

NAME = "last"

_LAST_NAME = re.compile(r"(\d+)(?:_.*)?\.jpg")


def load_last(root: Path) -> Dataset:
    name, layout = NAME, SPEC.layout
    root = _resolve_root(name, root, "test", layout, SPEC.usual_dirs)
    test = _require_dir(root / "test", name, layout)
    qdir = _require_dir(test / "query", name, layout)
    gdir = _require_dir(test / "gallery", name, layout)
    report: Report = []
    query = _files(qdir, (".jpg",), name, "query", report)
    _nonempty(query, qdir, name, layout)
    gallery = sorted(f for d in _subdirs(gdir, name, "gallery", report, "<pid> folders")
                     for f in _files(Path(d), (".jpg",), name, "gallery", report))
    _nonempty(gallery, gdir, name, layout, "images in <pid> sub-folders")
    pattern = "<pid>_<...>.jpg"
    q_pid = [int(g[0]) for g in _match_all(query, _LAST_NAME, name, pattern)]
    g_pid = [int(g[0]) for g in _match_all(gallery, _LAST_NAME, name, pattern)]
    for path, pid in zip(gallery, g_pid):
        folder = os.path.basename(os.path.dirname(path))
        if not folder.isdigit() or int(folder) != pid:
            _note(report, path, "gallery", f"its name says person {pid}, its folder {folder!r}; "
                  "labelled by the name, as the reference parser does", action="kept")
    nq = len(query)
    rows = {
        "path": gallery + query,
        "pid": g_pid + q_pid,
        # Every image is its own camera; queries first, as the reference numbers them.
        "camid": list(range(nq, nq + len(gallery))) + list(range(nq)),
        "clothes_id": g_pid + q_pid,  # no clothes labels in LaST test
        "role": ["gallery"] * len(gallery) + ["query"] * nq,
    }
    return Dataset(name, root, _table(rows), eval_modes=SPEC.eval_modes, file_report=_report_table(report))


SPEC = DatasetSpec(
    name=NAME,
    loader=_folder_loader(load_last),
    title="LaST",
    layout="<root>/test/query/<pid>_<...>.jpg and <root>/test/gallery/<pid>/<pid>_<...>.jpg",
    usual_dirs=("last", "LaST"),
    eval_modes=("standard",),
    enrichment=EnrichmentRules(False, False, "no clothes labels in test (clothes id = pid)"),
    paper=PaperComparison(
        rows=(("query", "standard"),),
        why="LaST's test protocol (every image its own camera)",
        published=published({"43cc526": (75.8, 29.6), "ea46015": (78.0, 37.2), "8b5b32e": (78.0, 37.2),
                             "09be7de": (78.0, 37.2), "90717cc": (78.0, 37.2)})),
    reid_checkpoint="cal_last",
    how_to_get="Download LaST from https://github.com/shuxjweb/last",
)
SPECS = (SPEC,)
register_dataset(SPEC)
