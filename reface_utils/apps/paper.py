"""The paper's published numbers, every version of them, and an honest comparison with a run.

The reference README (bar371/GEFF) changed its results table five times; no version names
the ReID backbone behind each number (the code gained AIM and CTL beside CAL in the version
that added VC-Clothes). So every published number is kept with the date and commit that
published it, and a comparison says which of our rows it is set against, which models ran,
and, when they are not the paper's (CAL with the dataset's checkpoint, insightface
buffalo_l faces, fp32), that the comparison is not of the paper's setting.
docs/METHOD.md section 7 says what is uncertain.
"""
from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

__all__ = ["README_VERSIONS", "PAPER_RESULTS", "PAPER_ROWS", "paper_table", "paper_rows", "setting_summary"]

#: The reference README versions that changed the results table: commit, date, title.
README_VERSIONS = pd.DataFrame.from_records([
    {"commit": "43cc526", "date": "2023-04-28", "title": "ReFace (first results)"},
    {"commit": "ea46015", "date": "2023-09-22", "title": "ReFace (+ VC-Clothes; AIM and CTL added to the code)"},
    {"commit": "8b5b32e", "date": "2023-11-25", "title": "GEFF"},
    {"commit": "09be7de", "date": "2024-04-27", "title": "ReFace (ea46015's numbers again, + 42Street)"},
    {"commit": "90717cc", "date": "2024-04-28", "title": "ReFace (42Street with extra data corrected)"},
])

_NAN = float("nan")
# (dataset, variant) -> top-1 / mAP in % per README version, in README_VERSIONS' order
# (None: not in that version). "All numbers are clothes-changing", says every version.
_PUBLISHED: dict[tuple[str, str], list[tuple[float, float] | None]] = {
    ("prcc", ""): [(83.7, 66.7), (81.9, 58.8), (82.5, 64.7), (81.9, 58.8), (81.9, 58.8)],
    ("ltcc", ""): [(74.8, 48.4), (76.3, 42.3), (45.7, 20.3), (76.3, 42.3), (76.3, 42.3)],
    ("last", ""): [(75.8, 29.6), (78.0, 37.2), (78.0, 37.2), (78.0, 37.2), (78.0, 37.2)],
    ("ccvid", ""): [(89.2, _NAN), (89.2, _NAN), (90.5, _NAN), (89.2, _NAN), (89.2, _NAN)],
    ("vcclothes", ""): [None, (94.9, 88.9), (86.7, 84.4), (94.9, 88.9), (94.9, 88.9)],
    ("street42", ""): [None, None, None, (75.0, _NAN), (75.0, _NAN)],
    ("street42", "with extra data"): [None, None, None, (80.7, _NAN), (92.2, _NAN)],
}

#: Every published number: dataset, variant, commit, date, title, top1 and mAP in %.
PAPER_RESULTS = pd.DataFrame.from_records([
    {"dataset": dataset, "variant": variant, **version, "top1": numbers[0], "mAP": numbers[1]}
    for (dataset, variant), values in _PUBLISHED.items()
    for version, numbers in zip(README_VERSIONS.to_dict("records"), values) if numbers is not None
])

#: Which of our rows each published number is set against: (query set, mode, config of
#: the "with extra data" variant), and why. LTCC shows the standard rows too (section 7).
PAPER_ROWS: dict[str, dict[str, Any]] = {
    "prcc": {"rows": [("query_diff", "standard")], "why": "query set C (clothes-changing), multi-shot as CAL and GEFF"},
    "ltcc": {"rows": [("query", "CC"), ("query", "standard")],
             "why": "the README says clothes-changing (CC), but 74.8 and 76.3 are close to CAL's and AIM's "
                    "general (standard) top-1 and 45.7 to the CC one: both of our rows are shown"},
    "last": {"rows": [("query", "standard")], "why": "LaST's test protocol (every image its own camera)"},
    "ccvid": {"rows": [("query", "tracklet")], "why": "tracklet accuracy (CCVID has no mAP in the README)"},
    "vcclothes": {"rows": [("query", "CC"), ("query", "cameras-3-4")],
                  "why": "GEFF's scripts only evaluate all cameras in CC mode, so the published number is "
                         "assumed to be the all-camera CC row; the literature's clothes-changing VC-Clothes "
                         "number (CAL's vcclothes_cc: cameras 3 and 4, standard mode) is shown beside it"},
    "street42": {"rows": [("query", "tracklet")], "why": "tracklet accuracy; 'with extra data' is the "
                                                         "fused+enriched+extra row"},
    "demo": {"rows": [("query", "CC"), ("query", "standard")], "why": "the demo has LTCC's layout (no paper numbers)"},
}


def setting_summary(settings: Any) -> dict[str, Any]:
    """Which models ran and whether that is the paper's setting (for results.json and the notebooks)."""
    differences = list(settings.paper_setting)
    return {"face_model": settings.face_model, "reid_model": settings.reid_model,
            "reid_checkpoint": settings.reid_checkpoint, "amp": settings.amp,
            "is_paper_setting": not differences, "differences": differences,
            "statement": ("the paper's setting (CAL with the dataset's checkpoint, insightface buffalo_l, fp32)"
                          if not differences else "not the paper's setting: " + "; ".join(differences))}


def paper_table(dataset: str, table: pd.DataFrame, settings: Any | None = None) -> pd.DataFrame:
    """Our rows that the paper's numbers correspond to, then every published number
    (fractions). Columns: ``source`` (ours: config, or the README version), ``query_set``,
    ``mode``, ``top1``, ``mAP``, ``note``. With ``settings``, our rows' note says whether
    the run is the paper's setting (:func:`setting_summary`)."""
    spec = PAPER_ROWS.get(dataset, {"rows": [("query", "standard")], "why": ""})
    note = setting_summary(settings)["statement"] if settings is not None else ""
    rows = []
    for role, mode in spec["rows"]:
        ours = table[(table["query_set"] == role) & (table["mode"] == mode)]
        rows += [{"source": f"ours: {r['config']}", "query_set": role, "mode": mode, "top1": r["top1"],
                  "mAP": r.get("mAP", _NAN), "note": note} for _, r in ours.iterrows()]
    for r in PAPER_RESULTS[PAPER_RESULTS["dataset"] == dataset].itertuples():
        variant = f", {r.variant}" if r.variant else ""
        rows.append({"source": f"paper: README {r.date} ({r.commit}){variant}", "query_set": "", "mode": "",
                     "top1": r.top1 / 100, "mAP": r.mAP / 100, "note": r.title})
    out = pd.DataFrame(rows, columns=["source", "query_set", "mode", "top1", "mAP", "note"])
    out.attrs["why"] = spec["why"]
    return out


def paper_rows(dataset: str) -> Sequence[tuple[str, str]]:
    """The (query set, mode) rows the paper's number corresponds to (first: the headline one)."""
    return PAPER_ROWS.get(dataset, {"rows": [("query", "standard")]})["rows"]

