"""The method steps on a dataset's features: gallery enrichment, evaluation of every config
in every mode (and the subset protocols: single-shot, camera subsets; video tracklets),
the sweeps, and per-query scores for the browser.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .. import paper
from ..cluster import check_engine
from ...data.datasets import Dataset, dataset_spec
from ...method.enrich import Enrichment, enrich_gallery, enrichment_sweep
from ...method.fusion import apply_enrichment, face_distance, fuse, reid_distance, zero_faceless_rows
from ...method.metrics import MODES
from ...method.protocols import single_shot_galleries, subset_enrichment, take_rows
from ...method.rerank import combine_results, rerank_configs, rerank_retrieval
from ...method.retrieval import EnrichedGallery, RetrievalConfig, RetrievalResult, default_configs, run_retrieval
from ...method.tracklets import EnrichedFrames, evaluate_tracks, fuse_track_scores, track_identity_scores
from .settings import Settings
from .features import DatasetFeatures, _queries, query_sets


def _enrichment_inputs(dataset: Dataset, features: DatasetFeatures, settings: Settings) -> dict[str, Any]:
    """The arguments enrichment and its threshold sweep share: the sources are every query
    set (PRCC: B and C) followed by the extra images when used; extra images have no
    known identity (NaN ``pid``: left out of the precision)."""
    source_roles = _queries(dataset) + tuple(dataset.extra_roles)
    s_idx, g_idx = features.rows(source_roles), features.rows("gallery")
    source_meta = features.images.iloc[s_idx].reset_index(drop=True)
    is_extra = source_meta["role"].isin(dataset.extra_roles).to_numpy()
    if is_extra.any():
        source_meta["pid"] = source_meta["pid"].where(~is_extra)
    labelled = bool((dataset.images["clothes_id"] >= 0).all())
    # None: a dataset without rules of its own (enrichment_rules): decided from the data
    wanted = labelled if settings.clothes_changing is None else bool(settings.clothes_changing)
    vote = dataset.is_video if settings.vote_by_track is None else bool(settings.vote_by_track)
    return dict(query_faces=features.faces.subset(s_idx), gallery_faces=features.faces.subset(g_idx),
                query_meta=source_meta, gallery_meta=features.images.iloc[g_idx].reset_index(drop=True),
                det_threshold=settings.enrich_det_threshold, clothes_changing=wanted and labelled,
                rank_diff=settings.rank_diff, vote_by_track=vote)


def run_enrichment(dataset: Dataset, features: DatasetFeatures, settings: Settings) -> Enrichment:
    """Gallery enrichment from all query sets together (PRCC: B and C) and, for 42Street,
    the extra-data crops when used (docs/METHOD.md section 3), with the dataset's
    reference defaults (its spec's enrichment rules) unless the settings override them.

    ``query_index`` counts over the concatenated source rows
    (``features.rows(query_roles + extra_roles)``); ``source`` says ``query`` or
    ``extra``. The detection threshold is ``settings.enrich_det_threshold``.
    """
    inputs = _enrichment_inputs(dataset, features, settings)
    enrichment = enrich_gallery(**inputs, sim_threshold=settings.sim_threshold)
    source = np.where(inputs["query_meta"]["role"].isin(dataset.extra_roles), "extra", "query")
    enrichment.samples["source"] = source[enrichment.samples["query_index"].to_numpy()]
    if dataset.extra_roles:
        enrichment.summary["extra_images"] = int((source == "extra").sum())
        enrichment.summary["enriched_from_extra"] = int((enrichment.samples["source"] == "extra").sum())
    return enrichment


@dataclass(eq=False)
class Evaluation:
    """table: one row per (query set, config, mode) with top-1/5/10/20 and mAP as
    fractions (:func:`percent` for display).
    retrieval[query_set]: the RetrievalResult (CMC curves, top-k lists) for image data."""

    table: pd.DataFrame
    retrieval: dict[str, RetrievalResult] = field(default_factory=dict)
    settings: Settings | None = None
    unreadable: list[str] = field(default_factory=list)  # images left out (could not be read)
    too_small: list[str] = field(default_factory=list)   # images under MIN_PERSON_SIDE px (ranked)


def _configs(settings: Settings, with_enrichment: bool, alpha: float | None = None) -> list[RetrievalConfig]:
    return default_configs(settings.alpha if alpha is None else alpha,
                           enrichment=settings.enrichment if with_enrichment else None)


def evaluate(dataset: Dataset, features: DatasetFeatures, enrichment: Enrichment | None,
             settings: Settings, *, configs: list[RetrievalConfig] | None = None,
             progress: bool = True, engine: str | None = None, ray_address: str | None = None,
             protocols: bool = True) -> Evaluation:
    """Every config (ReID only, face only, fused, fused + enriched) in every mode.

    With ``protocols``, also the dataset's subset protocols (:func:`_subset_protocols`):
    PRCC's single-shot rows, VC-Clothes' cameras-3-4 rows.

    ``engine="ray"`` runs the query blocks of image datasets as Ray tasks (same numbers,
    bit for bit); video datasets are scored in-process either way. ``engine`` and
    ``ray_address`` default to the settings'.
    """
    engine, ray_address = engine or settings.engine, ray_address or settings.ray_address
    retrieve = run_retrieval
    if check_engine(engine) == "ray":
        from ..cluster import run_retrieval_ray
        retrieve = functools.partial(run_retrieval_ray, address=ray_address)
    if dataset.is_video:
        return _evaluate_video(dataset, features, enrichment, settings)
    gallery = features.feature_set("gallery", settings.det_threshold)
    queries = features.feature_set(_queries(dataset), settings.det_threshold)
    tables, results = [], {}
    for role, query, offset in query_sets(dataset, features, settings.det_threshold):
        enriched = None
        if enrichment is not None and len(enrichment.samples):
            enriched = EnrichedGallery.from_table(enrichment.samples, queries, gallery,
                                                  query_offset=offset, num_queries=len(query))
        run_configs = configs or _configs(settings, enriched is not None)
        modes = [m for m in dataset.eval_modes if m in MODES]
        result = retrieve(query, gallery, run_configs, modes=modes, enriched=enriched,
                          topk=settings.topk, progress=progress)
        if settings.rerank and configs is None:  # k-reciprocal re-ranking rows (docs/METHOD.md), in-process
            result = combine_results(result, rerank_retrieval(
                query, gallery, rerank_configs(settings.alpha, enrichment="min" if enriched is not None
                                               and settings.enrichment == "min" else None),
                modes=modes, enriched=enriched, k1=settings.rerank_k1, k2=settings.rerank_k2,
                lambda_value=settings.rerank_lambda, topk=settings.topk, progress=progress))
        for config in run_configs:  # saved ranks number appended samples by enrichment-table row
            if config.enrichment == "append" and enriched is not None and config.name in result.topk:
                result.topk[config.name] = enriched.columns_by_table_row(result.topk[config.name], len(gallery))
        table = result.table.copy()
        table.insert(0, "query_set", role)
        tables.append(table)
        results[role] = result
    if protocols:
        tables += _subset_protocols(dataset, features, enrichment, settings, configs, retrieve)
    table = pd.concat(tables, ignore_index=True)
    return Evaluation(_mark_not_evaluated(table, dataset.camera_subsets), results, settings,
                      features.unreadable_paths, features.too_small_paths)


#: PRCC single-shot: draws of one gallery image per identity, from a fixed seed, averaged.
SINGLE_SHOT_DRAWS, SINGLE_SHOT_SEED = 10, 0


_METRICS = ("top1", "top5", "top10", "top20", "mAP")


def _subset_protocols(dataset: Dataset, features: DatasetFeatures, enrichment: Enrichment | None,
                      settings: Settings, configs: list[RetrievalConfig] | None, retrieve) -> list[pd.DataFrame]:
    """Rows of the protocols evaluated on part of the split (docs/METHOD.md section 5):
    ``single-shot`` (one random gallery image per identity, ``SINGLE_SHOT_DRAWS`` draws,
    metrics averaged) and each of ``dataset.camera_subsets`` (queries and gallery of those
    cameras, standard mode), for every query set, with the same configs as the full rows."""
    single_shot = "single-shot" in dataset.eval_modes
    if not single_shot and not dataset.camera_subsets:
        return []
    t = settings.det_threshold
    gallery, sources = features.feature_set("gallery", t), features.feature_set(_queries(dataset), t)
    samples = enrichment.samples if enrichment is not None and len(enrichment.samples) else None
    draws = single_shot_galleries(gallery.pids, SINGLE_SHOT_DRAWS, SINGLE_SHOT_SEED) if single_shot else []
    tables = []
    for role, query, offset in query_sets(dataset, features, t):
        everyone = np.arange(len(query))
        runs = [("single-shot", everyone, draws, True)] if single_shot else []
        runs += [(name, np.flatnonzero(np.isin(query.camids, cams)), [np.flatnonzero(np.isin(gallery.camids, cams))],
                  False) for name, cams in dataset.camera_subsets]
        for mode, q_rows, galleries, by_identity in runs:
            per_gallery = []
            for g_rows in galleries:
                enriched = None if samples is None else subset_enrichment(
                    samples, sources, gallery, gallery_rows=g_rows, query_rows=offset + q_rows, by_identity=by_identity)
                result = retrieve(take_rows(query, q_rows), take_rows(gallery, g_rows),
                                  configs or _configs(settings, enriched is not None), modes=["standard"],
                                  enriched=enriched, topk=1, progress=False)
                per_gallery.append(result.table.reset_index(drop=True))
            table = per_gallery[0].copy()
            for metric in _METRICS:  # the mean over the draws (one gallery: itself)
                if metric in table:
                    table[metric] = np.mean([t_[metric].to_numpy(float) for t_ in per_gallery], axis=0)
            table["mode"] = mode
            table.insert(0, "query_set", role)
            tables.append(table)
    return tables


#: Why a mode can leave every query unevaluated (the metric is then undefined, not 0).
_NO_MATCH = {"standard": "has a correct match in the gallery from another camera",
             "single-shot": "has a correct match in the gallery from another camera",
             "CC": "has a correct match in the gallery in other clothes (clothes-changing)",
             "SC": "has a correct match in the gallery in the same clothes",
             "tracklet": "could be scored (too short or an unknown person)"}


def _cameras(camids: tuple[int, ...]) -> str:
    names = [str(c + 1) for c in camids]  # as the datasets number their cameras
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _mark_not_evaluated(table: pd.DataFrame, camera_subsets: tuple = ()) -> pd.DataFrame:
    """Rows where no query was evaluated: metrics NaN ("n/a" in the CSV), and a ``note``
    (``camera_subsets``: the dataset's, whose modes say which cameras)."""
    no_match = {**_NO_MATCH, **{mode: f"has a correct match from another of the cameras {_cameras(cams)}"
                                for mode, cams in camera_subsets}}
    table = table.copy()
    none = (table["evaluated"] == 0).to_numpy()
    metrics = [c for c in ("top1", "top5", "top10", "top20", "mAP", "image_accuracy") if c in table]
    table.loc[none, metrics] = np.nan
    total = (table["evaluated"] + (table["skipped"] if "skipped" in table else 0)).astype(str)
    reason = table["mode"].map(no_match).fillna("could be evaluated in this mode")
    table["note"] = np.where(none, "not evaluated: none of the " + total + " queries " + reason, "")
    return table


def _track_protocol(dataset: Dataset) -> dict[str, Any]:
    """The dataset's tracklet protocol from its spec: tracklets under ``min_frames`` frames are
    skipped and ``unknown_pid`` is not scored (42Street: 10 and 12); none for a dataset the
    registry does not know (a :class:`Dataset` built by hand)."""
    try:
        spec = dataset_spec(dataset.name)
    except ValueError:
        return {}
    return dict(min_frames=spec.min_track_frames, unknown_pid=spec.unknown_pid)


def _evaluate_video(dataset: Dataset, features: DatasetFeatures, enrichment: Enrichment | None,
                    settings: Settings) -> Evaluation:
    """Per-tracklet identification (CCVID, 42Street), docs/METHOD.md section 5.

    Enriched frames (query frames, and 42Street extra-data crops when used) are appended
    to the gallery with the identity enrichment gave them. With extra data there are two
    enriched rows, as the paper reports them: ``fused+enriched`` (query frames only) and
    ``fused+enriched+extra``.
    """
    q_idx, g_idx = features.rows(_queries(dataset)), features.rows("gallery")
    s_idx = features.rows(_queries(dataset) + tuple(dataset.extra_roles))  # enrichment's sources
    q_meta, g_meta = features.images.iloc[q_idx], features.images.iloc[g_idx]
    threshold = settings.det_threshold
    faces = {name: features.faces.subset(idx).thresholded(threshold)
             for name, idx in (("query", q_idx), ("gallery", g_idx), ("source", s_idx))}
    face = {name: zero_faceless_rows(f.embedding, f.has_face) for name, f in faces.items()}
    common = dict(query_tracks=q_meta["track"].to_numpy(), gallery_pids=g_meta["pid"].to_numpy(),
                  query_pids=q_meta["pid"].to_numpy(), query_camids=q_meta["camid"].to_numpy(),
                  gallery_camids=g_meta["camid"].to_numpy(), progress=False)
    evaluation = _track_protocol(dataset)
    source_tracks = features.images["track"].to_numpy()[s_idx]

    def enriched_frames(samples: pd.DataFrame) -> EnrichedFrames:
        # With vote_by_track the samples already hold every frame of each voted tracklet
        # with the tracklet's majority label (GEFF's CCVID smoothing); otherwise each
        # frame (or extra crop) carries its own face match.
        index = samples["query_index"].to_numpy()
        return EnrichedFrames(index, samples["pid"].to_numpy(), source_tracks[index])

    def scores(enriched: EnrichedFrames | None):
        extra = dict(enriched=enriched, exclude_self=False) if enriched is not None else {}
        reid = track_identity_scores(features.reid[q_idx], gallery=features.reid[g_idx], **common, **extra,
                                     enriched_source=features.reid[s_idx] if enriched is not None else None)
        face_scores = track_identity_scores(face["query"], gallery=face["gallery"], **common, **extra,
                                            enriched_source=face["source"] if enriched is not None else None)
        return reid, face_scores

    plain = scores(None)
    variants = [("reid", 1.0, plain), ("face", 0.0, plain), ("fused", settings.alpha, plain)]
    if enrichment is not None and len(enrichment.samples):
        samples = enrichment.samples
        from_query = samples[samples["source"] == "query"] if "source" in samples else samples
        if len(from_query):
            variants.append(("fused+enriched", settings.alpha, scores(enriched_frames(from_query))))
        if len(from_query) < len(samples):
            variants.append(("fused+enriched+extra", settings.alpha, scores(enriched_frames(samples))))
    rows = []
    for name, alpha, (reid, face_scores) in variants:
        result = evaluate_tracks(fuse_track_scores(reid, face_scores, alpha), **evaluation)
        rows.append({"query_set": "query", "config": name, "alpha": alpha, "mode": "tracklet",
                     "top1": result.track_accuracy, "image_accuracy": result.image_accuracy,
                     "evaluated": result.num_scored, "skipped": result.num_too_short + result.num_unknown})
    return Evaluation(_mark_not_evaluated(pd.DataFrame(rows)), {}, settings, features.unreadable_paths,
                      features.too_small_paths)


def paper_table(dataset: str, evaluation: Evaluation | pd.DataFrame, settings: Settings | None = None) -> pd.DataFrame:
    """Our rows that the paper's numbers correspond to, next to every published version of
    them, saying whether this run is the paper's setting (:func:`reface_utils.apps.paper.paper_table`)."""
    table = evaluation.table if isinstance(evaluation, Evaluation) else evaluation
    if settings is None and isinstance(evaluation, Evaluation):
        settings = evaluation.settings
    return paper.paper_table(dataset, table, settings)


def alpha_sweep(dataset: Dataset, features: DatasetFeatures, enrichment: Enrichment | None,
                settings: Settings, alphas=np.linspace(0, 1, 11), *, role: str | None = None,
                mode: str | None = None) -> pd.DataFrame:
    """top-1 and mAP against alpha for the fused (and fused + enriched) distance."""
    role = role or paper.paper_rows(dataset.name)[0][0]
    mode = mode or paper.paper_rows(dataset.name)[0][1]
    configs = []
    for a in alphas:
        configs.append(RetrievalConfig(f"fused@{a:.2f}", float(a)))
        if enrichment is not None and len(enrichment.samples):
            configs.append(RetrievalConfig(f"fused+enriched@{a:.2f}", float(a), settings.enrichment))
    evaluation = evaluate(dataset, features, enrichment, settings, configs=configs, progress=False, protocols=False)
    t = evaluation.table
    t = t[(t["query_set"] == role) & (t["mode"] == mode)].copy()
    t["config"] = t["config"].str.split("@").str[0]
    return t[["config", "alpha", "top1", "mAP"]].reset_index(drop=True)


def threshold_sweep(dataset: Dataset, features: DatasetFeatures, settings: Settings,
                    thresholds=np.round(np.arange(0.2, 0.81, 0.05), 2)) -> pd.DataFrame:
    """Enrichment size and precision against the face similarity threshold (the same
    sources and rules as :func:`run_enrichment`)."""
    return enrichment_sweep(**_enrichment_inputs(dataset, features, settings), thresholds=list(thresholds))


class QueryScores(NamedTuple):
    """One query's distances to every gallery image (G,), and where an enriched sample set the ReID one."""

    fused: np.ndarray
    via_enriched: np.ndarray
    reid: np.ndarray
    face: np.ndarray


def query_scorer(dataset: Dataset, features: DatasetFeatures, enrichment: Enrichment | None,
                 settings: Settings, role: str = "query"):
    """``score(q, alpha, enriched) -> QueryScores`` (fused, via_enriched, reid, face) for one query of
    ``role``: the fused distance of docs/METHOD.md section 4, computed for that query alone (the
    interactive browser calls it on every slider move)."""
    t = settings.det_threshold
    gallery = features.feature_set("gallery", t)
    if role not in dataset.query_roles:
        raise ValueError(f"role {role!r} is not a query set of {dataset.name}: one of {list(dataset.query_roles)}")
    query, offset = next((q, o) for r, q, o in query_sets(dataset, features, t) if r == role)
    enriched = None
    if enrichment is not None and len(enrichment.samples):
        enriched = EnrichedGallery.from_table(enrichment.samples, features.feature_set(_queries(dataset), t),
                                              gallery, query_offset=offset, num_queries=len(query))

    def score(q: int, alpha: float, use_enrichment: bool) -> QueryScores:
        rows = slice(q, q + 1)
        reid = reid_distance(query.reid[rows], gallery.reid)
        via = np.zeros(len(gallery), bool)
        if use_enrichment and enriched is not None:
            lowered = apply_enrichment(reid, reid_distance(query.reid[rows], enriched.reid),
                                       enriched.gallery_index)
            via = lowered[0] < reid[0]
            reid = lowered
        face = face_distance(query.face[rows], gallery.face, query.has_face[rows], gallery.has_face,
                             query.camids[rows], gallery.camids)
        return QueryScores(fuse(reid, face, alpha)[0], via, reid[0], face[0])

    return score
