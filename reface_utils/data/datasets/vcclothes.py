"""VC-Clothes (Wan et al., CVPRW 2020) and its two camera subsets: the parser and three specs.

vcclothes::

    <root>/query/<pid>-<cam>-<clothes>-<n>.jpg      query
    <root>/gallery/<pid>-<cam>-<clothes>-<n>.jpg    gallery
    (<root>/train: optional, not read)

  ``camid = cam - 1``; clothes key is ``<pid><clothes>`` (the two strings joined),
  ranked over query + gallery. ``vcclothes_sc`` keeps cameras 2 and 3 only and
  ``vcclothes_cc`` cameras 3 and 4 (the reference's same-clothes / clothes-changing
  subsets); ids are then ranked within the subset, as the reference does.
"""
from __future__ import annotations

import re
from pathlib import Path

from .common import (Dataset, Report, _files, _folder_loader, _labelled_rows, _match_all, _nonempty, _report_table,
                     _require_dir, _resolve_root, _table)
from .registry import register_dataset
from .spec import DatasetSpec, EnrichmentRules, PaperComparison, published

NAME, SC_NAME, CC_NAME = "vcclothes", "vcclothes_sc", "vcclothes_cc"
EVAL_MODES = ("standard", "CC", "SC")

_VC_NAME = re.compile(r"(\d+)-(\d+)-(\d+)-(\d+)\.jpg")
#: The cameras (1-based, as in the file names) each variant keeps; None: all.
_VC_CAMERAS = {NAME: None, SC_NAME: (2, 3), CC_NAME: (3, 4)}
#: The all-camera rows are GEFF's protocol; CAL's vcclothes_cc (cameras 3 and 4, standard
#: mode) is evaluated beside them (camera ids 0-based).
CAMERA_SUBSETS = (("cameras-3-4", tuple(c - 1 for c in _VC_CAMERAS[CC_NAME])),)


def load_vcclothes(root: Path, name: str = NAME) -> Dataset:
    keep = _VC_CAMERAS[name]
    spec = _SPECS[name]
    layout = spec.layout
    root = _resolve_root(name, root, "query", layout, spec.usual_dirs)
    parsed = []
    report: Report = []
    for folder, role in (("gallery", "gallery"), ("query", "query")):
        d = _require_dir(root / folder, name, layout)
        files = _files(d, (".jpg",), name, role, report)
        _nonempty(files, d, name, layout)
        groups = _match_all(files, _VC_NAME, name, "<pid>-<cam>-<clothes>-<n>.jpg")
        if keep is not None:  # camera subset of the reference's sc/cc variants
            kept = [(f, g) for f, g in zip(files, groups) if int(g[1]) in keep]
            files, groups = [f for f, _ in kept], [g for _, g in kept]
            _nonempty(files, d, name, layout, f"images of cameras {keep}")
        parsed.append((role, files, groups))
    # (pid, camid = cam - 1, clothes key "<pid><clothes>")
    rows = _labelled_rows(parsed, lambda g: (int(g[0]), int(g[1]) - 1, g[0] + g[2]))
    return Dataset(name, root, _table(rows), eval_modes=EVAL_MODES, camera_subsets=spec.camera_subsets,
                   file_report=_report_table(report))


_LAYOUT = "<root>/{query,gallery}/<pid>-<cam>-<clothes>-<n>.jpg"
_USUAL_DIRS = ("VC-Clothes", "vcclothes", "VC_Clothes")
_RULES = EnrichmentRules(False, False, "--CC off (the reference's default)")
_HOW_TO_GET = "Request VC-Clothes from its authors: https://wanfb.github.io/dataset.html"


def _variant(name: str, **facts) -> DatasetSpec:
    return DatasetSpec(name=name, loader=_folder_loader(lambda root: load_vcclothes(root, name)),
                       layout=_LAYOUT, usual_dirs=_USUAL_DIRS, eval_modes=EVAL_MODES, enrichment=_RULES,
                       how_to_get=_HOW_TO_GET, **facts)


SPEC = _variant(
    NAME,
    title="VC-Clothes",
    camera_subsets=CAMERA_SUBSETS,
    paper=PaperComparison(
        rows=(("query", "CC"), ("query", "cameras-3-4")),
        why="GEFF's scripts only evaluate all cameras in CC mode, so the published number is "
            "assumed to be the all-camera CC row; the literature's clothes-changing VC-Clothes "
            "number (CAL's vcclothes_cc: cameras 3 and 4, standard mode) is shown beside it",
        published=published({"ea46015": (94.9, 88.9), "8b5b32e": (86.7, 84.4), "09be7de": (94.9, 88.9),
                             "90717cc": (94.9, 88.9)})),
    # no CAL checkpoint is published for VC-Clothes: reid_checkpoint None
)
SC_SPEC = _variant(SC_NAME, title="VC-Clothes (cameras 2 and 3, same clothes)")
CC_SPEC = _variant(CC_NAME, title="VC-Clothes (cameras 3 and 4, clothes-changing)")
SPECS = (SPEC, SC_SPEC, CC_SPEC)
_SPECS = {spec.name: spec for spec in SPECS}
for _spec in SPECS:
    register_dataset(_spec)
