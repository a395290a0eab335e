"""LTCC (Qian et al., ACCV 2020): its parser and its spec.

ltcc::

    <root>/query/<pid>_<clothes>_c<cam>_<frame>.png    query
    <root>/test/<pid>_<clothes>_c<cam>_<frame>.png     gallery
    (<root>/train: optional, not read)

  ``camid = cam - 1``. The clothes key is the ``<pid>_<clothes>`` prefix as written
  in the file name; ``clothes_id`` is its rank among the sorted keys of query + test.
  The generated ``demo`` dataset uses this layout and this parser.
"""
from __future__ import annotations

import re
from pathlib import Path

from .common import (Dataset, Report, _files, _folder_loader, _labelled_rows, _match_all, _nonempty, _report_table,
                     _require_dir, _resolve_root, _table)
from .registry import register_dataset
from .spec import DatasetSpec, EnrichmentRules, PaperComparison, published

NAME = "ltcc"
EVAL_MODES = ("standard", "CC", "SC")

_LTCC_NAME = re.compile(r"((\d+)_(\d+))_c(\d+)(?:_.*)?\.png")


def load_ltcc(root: Path, name: str = NAME) -> Dataset:
    """The LTCC layout under ``root``; ``name``: the dataset it is read as (the demo reads it too)."""
    layout = SPEC.layout  # LTCC's, whatever name it is read as
    root = _resolve_root(name, root, "query", layout, SPEC.usual_dirs)
    splits = (("test", "gallery"), ("query", "query"))
    parsed = []
    report: Report = []
    for folder, role in splits:
        d = _require_dir(root / folder, name, layout)
        files = _files(d, (".png",), name, role, report)
        _nonempty(files, d, name, layout)
        parsed.append((role, files, _match_all(files, _LTCC_NAME, name,
                                               "<pid>_<clothes>_c<cam>_<frame>.png")))
    # (pid, camid = cam - 1, clothes key "<pid>_<clothes>")
    rows = _labelled_rows(parsed, lambda g: (int(g[1]), int(g[3]) - 1, g[0]))
    return Dataset(name, root, _table(rows), eval_modes=EVAL_MODES, file_report=_report_table(report))


SPEC = DatasetSpec(
    name=NAME,
    loader=_folder_loader(load_ltcc),
    title="LTCC",
    aliases=("LTCC_ReID",),
    layout="<root>/{query,test}/<pid>_<clothes>_c<cam>_<frame>.png",
    usual_dirs=("LTCC_ReID", "ltcc", "LTCC"),
    eval_modes=EVAL_MODES,
    enrichment=EnrichmentRules(True, False, "published command: --CC"),
    paper=PaperComparison(
        rows=(("query", "CC"), ("query", "standard")),
        why="the README says clothes-changing (CC), but 74.8 and 76.3 are close to CAL's and AIM's "
            "general (standard) top-1 and 45.7 to the CC one: both of our rows are shown",
        published=published({"43cc526": (74.8, 48.4), "ea46015": (76.3, 42.3), "8b5b32e": (45.7, 20.3),
                             "09be7de": (76.3, 42.3), "90717cc": (76.3, 42.3)})),
    reid_checkpoint="cal_ltcc",
    how_to_get="Request LTCC from its authors: https://naiq.github.io/LTCC_Perosn_ReID.html",
)
SPECS = (SPEC,)
register_dataset(SPEC)
