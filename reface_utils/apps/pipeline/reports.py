"""What the notebooks show: tables (styled, with their text), summaries and figures.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import paper, visualise
from ..tables import ShownTable
from ...data.datasets import Dataset
from ...method.enrich import Enrichment
from .settings import FEATURES_MODEL, Settings
from .features import DatasetFeatures, _queries
from .steps import Evaluation, paper_table, query_scorer
from .store import SavedResults


def describe_features(features: DatasetFeatures, settings: Settings) -> str:
    """One line on what was extracted (for the notebooks)."""
    inference = features.faces.thresholded(settings.det_threshold).has_face.sum()
    enriching = features.faces.thresholded(settings.enrich_det_threshold).has_face.sum()
    reid = f"from {Path(settings.reid_features).name}" if settings.reid_model == FEATURES_MODEL else settings.reid_model
    face = f"from {Path(settings.face_features).name}" if settings.face_features else settings.face_model
    return (f"{len(features.images)} images: ReID features {features.reid.shape[1]}-d ({reid}); "
            f"faces ({face}) in {int(inference)} at detection >= {settings.det_threshold} "
            f"(inference), {int(enriching)} at >= {settings.enrich_det_threshold} (enrichment)")


def enrichment_report(enrichment: Enrichment) -> ShownTable:
    """The enrichment summary as a two-column table (counts, precision, the rules used)."""
    keys = ("queries", "queries_with_face", "gallery", "gallery_with_face", "matched", "enriched", "correct",
            "precision", "extra_images", "enriched_from_extra", "tracks_labelled")
    rows = [(k, enrichment.summary[k]) for k in keys if k in enrichment.summary]
    return ShownTable(pd.DataFrame({"": [k for k, _ in rows],
                                    "value": [f"{v:.3f}" if isinstance(v, float) else str(v) for _, v in rows]}),
                      percent=())


def results_table(table: pd.DataFrame, dataset: str, decimals: int = 1) -> ShownTable:
    """The results table as the notebooks show it: metrics in %, and highlighted the row
    that corresponds to the paper's headline number (fused + enriched at the paper's query
    set and mode, :data:`reface_utils.apps.paper.PAPER_ROWS`)."""
    columns = [c for c in ("query_set", "config", "mode", "top1", "top5", "top10", "mAP", "image_accuracy",
                           "evaluated", "skipped") if c in table]
    role, mode = paper.paper_rows(dataset)[0]
    highlight = ((table["query_set"] == role) & (table["mode"] == mode)
                 & (table["config"] == "fused+enriched")).to_numpy()
    return ShownTable(table[columns], highlight=highlight, decimals=decimals)


def paper_comparison(dataset: str, evaluation: Evaluation | pd.DataFrame, settings: Settings) -> ShownTable:
    """:func:`paper_table` for display: its caption says which models ran and whether that is
    the paper's setting, and which of our rows the published numbers are set against."""
    compared = paper_table(dataset, evaluation, settings)
    statement = paper.setting_summary(settings)["statement"]
    caption = f"This run: {statement}. Compared rows: {compared.attrs.get('why', '')}."
    return ShownTable(compared.drop(columns="note"), caption=caption,
                      highlight=(compared["source"] == "ours: fused+enriched").to_numpy())


def model_gain(table: pd.DataFrame, settings: Settings) -> ShownTable:
    """Your ReID model alone next to your model + ReFace (fused + enriched), in every mode
    of the query set the paper reports: what ReFace adds to *this* model."""
    model = (f"your features ({Path(settings.reid_features).name})" if settings.reid_model == FEATURES_MODEL
             else settings.reid_model)
    role = paper.paper_rows(settings.dataset)[0][0]
    names = {"reid": f"{model} alone", "fused+enriched": f"{model} + ReFace"}
    rows = table[(table["query_set"] == role) & table["config"].isin(list(names))].copy()
    rows["with_reface"] = rows["config"] == "fused+enriched"
    rows.insert(0, "model", rows.pop("config").map(names))
    rows = rows.sort_values(["mode", "with_reface"], kind="stable")  # per mode: alone, then + ReFace
    columns = [c for c in ("model", "mode", "top1", "top5", "mAP", "image_accuracy") if c in rows]
    return ShownTable(rows[columns], caption=f"query set {role}", highlight=rows["with_reface"].to_numpy())


def results_report(table: pd.DataFrame, decimals: int = 1) -> pd.DataFrame:
    """The results table for reading: metrics in %, the columns that matter."""
    columns = [c for c in ("query_set", "config", "mode", "top1", "top5", "top10", "mAP", "image_accuracy",
                           "evaluated", "skipped") if c in table]
    return percent(table[columns]).round(decimals)


def _boxes(features: DatasetFeatures, rows: np.ndarray, det_threshold: float) -> np.ndarray:
    faces = features.faces.subset(rows).thresholded(det_threshold)
    return visualise.visible_boxes(faces.has_face, faces.bbox)


def enriched_examples_figure(dataset: Dataset, features: DatasetFeatures, enrichment: Enrichment,
                             settings: Settings, n: int = 8):
    """The ``n`` most similar enriched samples: the source image over the gallery image it joined."""
    s_idx = features.rows(_queries(dataset) + tuple(dataset.extra_roles))
    g_idx = features.rows("gallery")
    paths = features.images["path"].to_numpy()
    return visualise.show_enriched_examples(
        enrichment.samples, paths[s_idx].tolist(), paths[g_idx].tolist(), n=n,
        query_boxes=_boxes(features, s_idx, settings.enrich_det_threshold),
        gallery_boxes=_boxes(features, g_idx, settings.enrich_det_threshold))


def retrieval_figure(dataset: Dataset, features: DatasetFeatures, enrichment: Enrichment | None,
                     settings: Settings, results: SavedResults, role: str, *, num_queries: int = 6, k: int = 8):
    """The saved top-k of one query per identity (clothes-changing queries first), with
    pid / camera / clothes in the titles and "E" where an enriched sample set the distance."""
    q_idx, g_idx = features.rows(role), features.rows("gallery")
    query, gallery = features.images.iloc[q_idx], features.images.iloc[g_idx]
    ranks = results.ranks[role]
    config = "fused+enriched" if "fused+enriched" in ranks else "fused"
    enriched = config == "fused+enriched" and enrichment is not None
    chosen = visualise.pick_queries(query, gallery, num_queries)
    appended = via = None
    if enriched and settings.enrichment == "append":
        s_idx = features.rows(_queries(dataset))
        appended = visualise.appended_samples(enrichment.samples, features.images.iloc[s_idx],
                                              _boxes(features, s_idx, settings.det_threshold))
    elif enriched:
        score = query_scorer(dataset, features, enrichment, settings, role)
        top = ranks[config][chosen, :k]
        via = np.stack([score(int(q), settings.alpha, True)[1][top[i]] for i, q in enumerate(chosen)]) \
            if len(chosen) else None
    return visualise.show_ranks(
        ranks[config], query, gallery, chosen, k=k, appended=appended,
        query_boxes=_boxes(features, q_idx, settings.det_threshold),
        gallery_boxes=_boxes(features, g_idx, settings.det_threshold), via_enriched=via,
        suptitle=f"{settings.dataset} {role}: {config}, alpha={settings.alpha}")


def retrieval_browser(dataset: Dataset, features: DatasetFeatures, enrichment: Enrichment | None,
                      settings: Settings, role: str, *, k: int = 8) -> "visualise.RetrievalBrowser":
    """The interactive browser over one query set (needs a live kernel to react): queries
    listed by pid / camera / clothes / face / enriched, each result with its fused, ReID and
    face distance, and the query's own enriched match under the controls."""
    q_idx, g_idx = features.rows(role), features.rows("gallery")
    query, gallery = features.images.iloc[q_idx], features.images.iloc[g_idx]
    q_pid, g_pid = query["pid"].to_numpy(), gallery["pid"].to_numpy()
    has_face = features.faces.subset(q_idx).thresholded(settings.det_threshold).has_face
    matches: dict[int, tuple[int, float]] = {}
    if enrichment is not None and len(enrichment.samples):
        # enrichment rows count over all query sets (then extra images): this set's offset
        offset = sum(len(features.rows(r)) for r in dataset.query_roles[:dataset.query_roles.index(role)])
        s = enrichment.samples
        mine = s[(s["query_index"] >= offset) & (s["query_index"] < offset + len(q_idx))]
        matches = {int(r.query_index) - offset: (int(r.gallery_index), float(r.similarity)) for r in mine.itertuples()}
    labels = [f"pid {r.pid} / cam {r.camid} / clothes {r.clothes_id}" + (" / face" if f else "")
              + (" / enriched" if i in matches else "")
              for i, (r, f) in enumerate(zip(query.itertuples(), has_face))]

    def notes(q: int) -> str:
        if q not in matches:
            return "not enriched: " + ("no face match above the threshold" if has_face[q] else "no face")
        j, sim = matches[q]
        return (f"enriched: attached to gallery image {j} (pid {g_pid[j]}, camera {gallery['camid'].iloc[j]}), "
                f"face similarity {sim:.2f}; {'right' if g_pid[j] == q_pid[q] else 'WRONG'} person")

    return visualise.RetrievalBrowser(
        query_scorer(dataset, features, enrichment, settings, role),
        lambda q, idx: g_pid[idx] == q_pid[q], query["path"].tolist(), gallery["path"].tolist(),
        query_boxes=_boxes(features, q_idx, settings.det_threshold),
        gallery_boxes=_boxes(features, g_idx, settings.det_threshold),
        query_titles=[f"query {i}: pid {r.pid}\ncam {r.camid} cl {r.clothes_id}" for i, r in enumerate(query.itertuples())],
        query_labels=labels, query_notes=notes, alpha=settings.alpha, k=k)


METRIC_COLUMNS = ("top1", "top5", "top10", "top20", "mAP", "image_accuracy")


def percent(table: pd.DataFrame) -> pd.DataFrame:
    """A copy with the metric columns (fractions everywhere in ReFace) in %, for display."""
    out = table.copy()
    for col in METRIC_COLUMNS:
        if col in out:
            out[col] = 100 * out[col]
    return out
