"""The paper's published numbers, every version of them, and an honest comparison with a run.

The reference README (bar371/GEFF) changed its results table five times; no version names
the ReID backbone behind each number (the code gained AIM and CTL beside CAL in the version
that added VC-Clothes). So every published number is kept with the date and commit that
published it, and a comparison says which of our rows it is set against, which models ran,
and, when they are not the paper's (CAL with the dataset's checkpoint, insightface
buffalo_l faces, fp32), that the comparison is not of the paper's setting.
docs/METHOD.md section 7 says what is uncertain. The numbers and the rows they are set
against live in each dataset's spec (``reface_utils.data.datasets.<name>``, its ``paper``).
"""
from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from ..data.datasets import BUILT_IN_SPECS, DatasetSpec, dataset_spec

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


def _published_rows(spec: DatasetSpec) -> list[dict[str, Any]]:
    """The spec's published numbers, with their README version: by variant (first seen first),
    then in README_VERSIONS' order."""
    if spec.paper is None:
        return []
    versions = {v["commit"]: (i, v) for i, v in enumerate(README_VERSIONS.to_dict("records"))}
    unknown = sorted({p.commit for p in spec.paper.published} - set(versions))
    if unknown:
        raise ValueError(f"dataset {spec.name!r}: published numbers of README version(s) {unknown}, which "
                         f"README_VERSIONS does not list ({', '.join(versions)})")
    variants = list(dict.fromkeys(p.variant for p in spec.paper.published))
    ordered = sorted(spec.paper.published, key=lambda p: (variants.index(p.variant), versions[p.commit][0]))
    return [{"dataset": spec.name, "variant": p.variant, **versions[p.commit][1], "top1": p.top1, "mAP": p.mAP}
            for p in ordered]


#: Every published number: dataset, variant, commit, date, title, top1 and mAP in % (from
#: the datasets' specs; "All numbers are clothes-changing", says every README version).
PAPER_RESULTS = pd.DataFrame.from_records([row for spec in BUILT_IN_SPECS for row in _published_rows(spec)])

#: Which of our rows each published number is set against: (query set, mode), and why (from
#: the datasets' specs). LTCC shows the standard rows too (docs/METHOD.md section 7).
PAPER_ROWS: dict[str, dict[str, Any]] = {
    spec.name: {"rows": list(spec.paper.rows), "why": spec.paper.why} for spec in BUILT_IN_SPECS if spec.paper}


def _spec(dataset: str) -> DatasetSpec | None:
    try:
        return dataset_spec(dataset)
    except ValueError:  # a dataset this process has not registered
        return None


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
    spec = _spec(dataset)
    note = setting_summary(settings)["statement"] if settings is not None else ""
    rows = []
    for role, mode in paper_rows(dataset):
        ours = table[(table["query_set"] == role) & (table["mode"] == mode)]
        rows += [{"source": f"ours: {r['config']}", "query_set": role, "mode": mode, "top1": r["top1"],
                  "mAP": r.get("mAP", _NAN), "note": note} for _, r in ours.iterrows()]
    for r in (_published_rows(spec) if spec is not None else []):
        variant = f", {r['variant']}" if r["variant"] else ""
        rows.append({"source": f"paper: README {r['date']} ({r['commit']}){variant}", "query_set": "", "mode": "",
                     "top1": r["top1"] / 100, "mAP": r["mAP"] / 100, "note": r["title"]})
    out = pd.DataFrame(rows, columns=["source", "query_set", "mode", "top1", "mAP", "note"])
    out.attrs["why"] = spec.paper.why if spec is not None and spec.paper is not None else ""
    return out


def paper_rows(dataset: str) -> Sequence[tuple[str, str]]:
    """The (query set, mode) rows the paper's number corresponds to (first: the headline one;
    the dataset's spec says, default: query, standard)."""
    spec = _spec(dataset)
    return list(spec.paper_rows) if spec is not None else [("query", "standard")]

