"""PRCC (Yang et al., TPAMI 2019): its parser and its spec.

prcc::

    <root>/rgb/test/A/<pid>/<image>.jpg     gallery, camera A -> camid 0
    <root>/rgb/test/B/<pid>/<image>.jpg     query_same, camera B -> camid 1
    <root>/rgb/test/C/<pid>/<image>.jpg     query_diff, camera C -> camid 2
    (<root>/rgb/train, <root>/rgb/val: optional, not read)

  ``pid`` is the folder name. Cameras A and B show the same clothes, C the other
  outfit: ``clothes_id = 2 * rank(pid) + (1 if camera C else 0)``, where ``rank`` is
  the position of the pid among the sorted pid folders of camera A.
"""
from __future__ import annotations

import os
from pathlib import Path

from .common import (Dataset, DatasetError, Report, _files, _folder_loader, _nonempty, _report_table, _require_dir,
                     _resolve_root, _subdirs, _table)
from .registry import register_dataset
from .spec import DatasetSpec, EnrichmentRules, PaperComparison, published

NAME = "prcc"


def load_prcc(root: Path) -> Dataset:
    name, layout = NAME, SPEC.layout
    root = _resolve_root(name, root, "rgb", layout, SPEC.usual_dirs)
    test = _require_dir(root / "rgb" / "test", name, layout)
    cams = {c: _require_dir(test / c, name, layout, "camera folder") for c in "ABC"}

    report: Report = []
    roles = {"A": "gallery", "B": "query_same", "C": "query_diff"}

    def pid_dirs(cam: str, note: bool = False) -> list[tuple[int, str]]:
        out = []
        for d in _subdirs(cams[cam], name, roles[cam], report if note else None, "<pid> folders"):
            if not os.path.basename(d).isdigit():
                raise DatasetError(f"{name}: folder {d} is not a person id folder "
                                   f"(expected a number). Expected layout: {layout}")
            out.append((int(os.path.basename(d)), d))
        return out

    # Clothes ids are numbered from the pids of the gallery camera A (reference rule).
    label = {pid: i for i, pid in enumerate(sorted(p for p, _ in pid_dirs("A")))}
    rows: dict[str, list] = {k: [] for k in ("path", "pid", "camid", "clothes_id", "role")}
    for camid, (cam, role) in enumerate((("A", "gallery"), ("B", "query_same"), ("C", "query_diff"))):
        n_before = len(rows["path"])
        for pid, d in pid_dirs(cam, note=True):
            if pid not in label:
                raise DatasetError(f"{name}: person {pid} ({d}) has no gallery folder in "
                                   f"{cams['A']}; every test id must appear in camera A")
            files = _files(Path(d), (".jpg",), name, role, report)
            rows["path"] += files
            rows["pid"] += [pid] * len(files)
            rows["camid"] += [camid] * len(files)
            rows["clothes_id"] += [2 * label[pid] + (cam == "C")] * len(files)
            rows["role"] += [role] * len(files)
        _nonempty(rows["path"][n_before:], cams[cam], name, layout)
    return Dataset(name, root, _table(rows), query_roles=("query_same", "query_diff"),
                   eval_modes=SPEC.eval_modes, file_report=_report_table(report))


SPEC = DatasetSpec(
    name=NAME,
    loader=_folder_loader(load_prcc),
    title="PRCC",
    layout="<root>/rgb/test/{A,B,C}/<pid>/<image>.jpg",
    usual_dirs=("prcc", "PRCC"),
    # multi-shot as CAL and GEFF, and single-shot: PRCC's own protocol
    eval_modes=("standard", "single-shot"),
    enrichment=EnrichmentRules(False, False, "no clothes labels in the reference's enrichment: camera exclusion only"),
    paper=PaperComparison(
        rows=(("query_diff", "standard"),),
        why="query set C (clothes-changing), multi-shot as CAL and GEFF",
        published=published({"43cc526": (83.7, 66.7), "ea46015": (81.9, 58.8), "8b5b32e": (82.5, 64.7),
                             "09be7de": (81.9, 58.8), "90717cc": (81.9, 58.8)})),
    reid_checkpoint="cal_prcc",
    how_to_get="Request PRCC from its authors: https://www.isee-ai.cn/~yangqize/clothing.html",
)
SPECS = (SPEC,)
register_dataset(SPEC)
