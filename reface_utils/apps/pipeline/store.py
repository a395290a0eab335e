"""The saved artefacts of a run (results/<dataset>/): enrichment and results written
atomically with the key of the run that made them, and read back only by that run.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ...core.files import atomic_savez, atomic_write_text
from ...core.image_sizes import MIN_PERSON_SIDE
from .. import paper
from ...data.datasets import Dataset
from ...method.enrich import Enrichment
from .settings import PARAMETERS, Settings
from .features import DatasetFeatures, uses_extra_data
from .steps import Evaluation, evaluate, run_enrichment


def _run_key(dataset: Dataset, settings: Settings, names: Sequence[str]) -> str:
    """Fingerprint of what a saved step depends on: the settings ``names`` and the
    dataset's images (paths, sizes, mtimes), so a saved file never serves another run."""
    from ...core.cache import fingerprint

    key = {name: getattr(settings, name) for name in names}
    key["dataset"], key["extra_data_used"] = dataset.name, uses_extra_data(dataset, settings)
    files = [f for f in (settings.reid_features, settings.face_features) if f]  # their sizes and mtimes count too
    return fingerprint(key, dataset.images["path"].tolist() + files)


_ENRICHMENT_SETTINGS = ("face_model", "face_features", "enrich_det_threshold", "sim_threshold", "rank_diff", "clothes_changing",
                        "vote_by_track", "extra_data")


def save_enrichment(enrichment: Enrichment, out_dir: str | os.PathLike, dataset: Dataset,
                    settings: Settings) -> list[Path]:
    """``enrichment.csv`` (the samples, an index) and ``enrichment.json`` (summary and the
    key of the run that made it), so later notebooks read it instead of recomputing."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv, js = _write_enrichment_table(enrichment, out), out / "enrichment.json"
    atomic_write_text(js, json.dumps({"key": _run_key(dataset, settings, _ENRICHMENT_SETTINGS),
                                      "summary": _summary(enrichment)}, indent=2, default=str))
    return [csv, js]


def _summary(enrichment: Enrichment) -> dict[str, Any]:
    """The enrichment's summary with numpy scalars as Python numbers (for JSON)."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in enrichment.summary.items()}


def _write_enrichment_table(enrichment: Enrichment, out: Path) -> Path:
    path = out / "enrichment.csv"
    atomic_write_text(path, enrichment.samples.to_csv(index=False, float_format="%.6f"))
    return path


def _saved_payload(path: Path, key: str) -> dict[str, Any] | None:
    """The JSON a step saved at ``path`` when the run ``key`` made it, else None (missing,
    unreadable, or another run's)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) and saved.get("key") == key else None


def _enrichment_key(dataset: Dataset, settings: Settings) -> str:
    return _run_key(dataset, settings, _ENRICHMENT_SETTINGS)


def load_enrichment(out_dir: str | os.PathLike, dataset: Dataset, settings: Settings) -> Enrichment | None:
    """The enrichment saved by :func:`save_enrichment` for this very run, else None
    (missing, unreadable, or made with other settings or images)."""
    out = Path(out_dir)
    saved = _saved_payload(out / "enrichment.json", _enrichment_key(dataset, settings))
    if saved is None:
        return None
    try:
        samples = pd.read_csv(out / "enrichment.csv", keep_default_na=False, na_values=[""])
        summary = saved["summary"]
    except (OSError, ValueError, KeyError):
        return None
    if "track" in samples:
        samples["track"] = samples["track"].astype(str)
    return Enrichment(samples=samples, queries=pd.DataFrame(), summary=summary)


def enrichment_for(dataset: Dataset, features: DatasetFeatures, settings: Settings,
                   out_dir: str | os.PathLike) -> Enrichment:
    """The saved enrichment of this run if there is one, else :func:`run_enrichment` (saved)."""
    saved = load_enrichment(out_dir, dataset, settings)
    if saved is not None:
        return saved
    enrichment = run_enrichment(dataset, features, settings)
    save_enrichment(enrichment, out_dir, dataset, settings)
    return enrichment


@dataclass(eq=False)
class SavedResults:
    """What :func:`save_results` wrote, read back: the table (fractions), the top-k
    gallery indices per query set and config, the CMC curves per (query set, config, mode)."""

    table: pd.DataFrame
    ranks: dict[str, dict[str, np.ndarray]]
    cmc: dict[tuple[str, str, str], np.ndarray]


def save_results(evaluation: Evaluation, out_dir: str | os.PathLike, *,
                 enrichment: Enrichment | None = None, extra: Mapping[str, Any] | None = None,
                 dataset: Dataset | None = None) -> list[Path]:
    """results.csv / results.json, the enrichment (unless this run's is there: the enrich
    step saves it), the CMC curves and the top-k lists (npz). With ``dataset``, results.json carries the run's key, so that
    :func:`load_results` serves them to later notebooks of the same run only."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    csv = out / "results.csv"
    # a metric over zero queries is undefined: "n/a" in the CSV, null in the JSON (see "note")
    atomic_write_text(csv, evaluation.table.to_csv(index=False, float_format="%.6f", na_rep="n/a"))
    payload = {"settings": evaluation.settings.to_dict() if evaluation.settings else None,
               "paper_setting": paper.setting_summary(evaluation.settings) if evaluation.settings else None,
               "results": json.loads(evaluation.table.to_json(orient="records")),
               "unreadable_images": {"count": len(evaluation.unreadable), "paths": list(evaluation.unreadable),
                                     "note": "left out of enrichment, ranking and evaluation "
                                             "(as queries and as gallery entries)"},
               "too_small_images": {"count": len(evaluation.too_small), "paths": list(evaluation.too_small),
                                    "min_side": MIN_PERSON_SIDE,
                                    "note": f"readable, but under {MIN_PERSON_SIDE} px on a side: too small to hold "
                                            "a person; ranked like every other image (the protocol ranks all)"},
               **(extra or {})}
    if dataset is not None and evaluation.settings is not None:
        payload["key"] = _run_key(dataset, evaluation.settings, tuple(PARAMETERS))
    if enrichment is not None:
        payload["enrichment"] = _summary(enrichment)
        settings = evaluation.settings
        if dataset is None or settings is None:  # no run key: the table alone
            written.append(_write_enrichment_table(enrichment, out))
        elif not ((out / "enrichment.csv").is_file()  # the enrich step saved this run's already
                  and _saved_payload(out / "enrichment.json", _enrichment_key(dataset, settings))):
            written += save_enrichment(enrichment, out, dataset, settings)
    cmc = {f"{role}|{config}|{mode}": res.cmc[:50] for role, result in evaluation.retrieval.items()
           for (config, mode), res in result.results.items()}
    if cmc:
        path = out / "cmc.npz"
        atomic_savez(path, cmc, compressed=True)
        written.append(path)
    for role, result in evaluation.retrieval.items():
        if result.topk:
            path = out / f"ranks_{role}.npz"
            atomic_savez(path, {name.replace(" ", "_"): v for name, v in result.topk.items()}, compressed=True)
            written.append(path)
    js = out / "results.json"  # last: its key vouches for the files above
    atomic_write_text(js, json.dumps(payload, indent=2, default=str))
    return [csv, js] + written


def load_results(out_dir: str | os.PathLike, dataset: Dataset, settings: Settings) -> SavedResults | None:
    """The results :func:`save_results` wrote for this very run, else None."""
    out = Path(out_dir)
    if _saved_payload(out / "results.json", _run_key(dataset, settings, tuple(PARAMETERS))) is None:
        return None
    try:
        table = pd.read_csv(out / "results.csv")
        cmc = {}
        if (out / "cmc.npz").is_file():
            with np.load(out / "cmc.npz") as z:
                cmc = {tuple(name.split("|")): z[name] for name in z.files}
        ranks = {}
        for role in dataset.query_roles:
            path = out / f"ranks_{role}.npz"
            if path.is_file():
                with np.load(path) as z:
                    ranks[role] = {name.replace("_", " "): z[name] for name in z.files}
    except (OSError, ValueError, KeyError):
        return None
    return SavedResults(table, ranks, cmc)


def results_for(dataset: Dataset, features: DatasetFeatures, enrichment: Enrichment | None, settings: Settings,
                out_dir: str | os.PathLike) -> SavedResults:
    """The saved results of this run if there are any, else :func:`evaluate` (saved)."""
    saved = load_results(out_dir, dataset, settings)
    if saved is None:
        save_results(evaluate(dataset, features, enrichment, settings, progress=False), out_dir,
                     enrichment=enrichment, dataset=dataset)
        saved = load_results(out_dir, dataset, settings)
    return saved
