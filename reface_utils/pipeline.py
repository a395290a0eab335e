"""The ReFace pipeline for one dataset, as the notebooks run it.

features -> gallery enrichment -> retrieval (ReID only, face only, fused, fused +
enriched) -> one results table next to the paper's numbers. Each step is a function
that takes data and returns data; the notebooks (``notebooks/*.ipynb``) narrate and call
them, and every expensive step goes through the feature cache, so running
``enrich_gallery``, ``infer`` and ``visualise`` one after the other extracts features once.
"""
from __future__ import annotations

import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from . import checkpoints
from .cluster import check_engine
from .datasets import Dataset, DatasetError, load_dataset
from .enrich import Enrichment, enrich_gallery, enrichment_sweep
from .face import FaceFeatures, load_face_model
from .fusion import apply_enrichment, face_distance, fuse, reid_distance, zero_faceless_rows
from .reid import load_reid_model
from .retrieval import EnrichedGallery, FeatureSet, RetrievalConfig, RetrievalResult, default_configs, run_retrieval
from .video import (
    STREET42_MIN_FRAMES,
    STREET42_UNKNOWN_PID,
    EnrichedFrames,
    evaluate_tracks,
    fuse_track_scores,
    track_identity_scores,
)

__all__ = ["Settings", "DatasetFeatures", "Evaluation", "PAPER_RESULTS", "settings_for",
           "compute_features", "run_enrichment", "evaluate", "paper_table", "alpha_sweep",
           "threshold_sweep", "save_results", "project_root", "DEFAULT_THRESHOLDS", "query_scorer",
           "check_requirements"]

#: Face thresholds per backend. insightface: the reference's LTCC settings (SCRFD
#: detection score 0.8, ArcFace cosine 0.5). sface: YuNet scores and SFace cosines live
#: on other scales; measured on real photos (same person >= 0.5 for 90% of pairs,
#: different people <= 0.31) and on the demo (YuNet 0.78-0.94 on visible faces).
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "insightface": {"det_threshold": 0.8, "sim_threshold": 0.5},
    "sface": {"det_threshold": 0.6, "sim_threshold": 0.45},
}

#: Clothes-changing headline numbers (METHOD.md section 7): top-1 / mAP in %.
PAPER_RESULTS = pd.DataFrame.from_records([
    {"dataset": "prcc", "source": "ReFace README (v1)", "top1": 83.7, "mAP": 66.7},
    {"dataset": "prcc", "source": "GEFF README", "top1": 81.9, "mAP": 58.8},
    {"dataset": "ltcc", "source": "ReFace README (v1)", "top1": 74.8, "mAP": 48.4},
    {"dataset": "ltcc", "source": "GEFF README", "top1": 76.3, "mAP": 42.3},
    {"dataset": "last", "source": "ReFace README (v1)", "top1": 75.8, "mAP": 29.6},
    {"dataset": "last", "source": "GEFF README", "top1": 78.0, "mAP": 37.2},
    {"dataset": "ccvid", "source": "ReFace README (v1)", "top1": 89.2, "mAP": float("nan")},
    {"dataset": "ccvid", "source": "GEFF README", "top1": 89.2, "mAP": float("nan")},
])

#: Which of our rows the paper's clothes-changing number corresponds to.
_PAPER_ROW = {"prcc": ("query_diff", "standard"), "ltcc": ("query", "CC"),
              "last": ("query", "standard"), "ccvid": ("query", "tracklet"),
              "vcclothes": ("query", "CC"), "demo": ("query", "CC")}


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The ReFace checkout containing ``start`` (default: the working directory), or
    ``start`` itself outside a checkout. Notebooks run from ``notebooks/`` in Jupyter and
    from the repository root under papermill; results land in one place either way."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "reface_utils").is_dir() and (folder / "pyproject.toml").is_file():
            return folder
    return here


@dataclass
class Settings:
    """Every parameter of a run (the notebooks' parameters cell, checked)."""

    dataset: str = "demo"
    data_root: str | None = None
    reid_model: str | None = None        # None: "mobilenetv2-imagenet" for demo, else "cal"
    reid_checkpoint: str | None = None   # None: the registry's CAL checkpoint for the dataset
    face_model: str = "sface"
    alpha: float = 0.75
    det_threshold: float | None = None   # None: DEFAULT_THRESHOLDS[face_model]
    sim_threshold: float | None = None
    rank_diff: float = 0.0
    clothes_changing: bool = True        # enrichment ignores gallery images in the query's clothes
    enrichment: str = "min"              # "min" (GEFF) or "append" (ReFace v1)
    device: str = "auto"
    batch_size: int = 64
    num_workers: int | None = None
    results_root: str | None = None      # None: <checkout>/results
    topk: int = 10

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1] (1 = ReID only, 0 = face only), got {self.alpha}")
        if self.face_model not in DEFAULT_THRESHOLDS:
            raise ValueError(f"face_model must be one of {sorted(DEFAULT_THRESHOLDS)}, got {self.face_model!r}")
        defaults = DEFAULT_THRESHOLDS[self.face_model]
        if self.det_threshold is None:
            self.det_threshold = defaults["det_threshold"]
        if self.sim_threshold is None:
            self.sim_threshold = defaults["sim_threshold"]
        if self.reid_model is None:
            self.reid_model = "mobilenetv2-imagenet" if self.dataset == "demo" else "cal"
        if self.reid_model == "cal" and self.reid_checkpoint is None:
            self.reid_checkpoint = checkpoints.default_reid_checkpoint(self.dataset)
            if self.reid_checkpoint is None:
                raise ValueError(f"no CAL checkpoint is registered for {self.dataset!r}: pass "
                                 "reid_checkpoint=<path to a .pth.tar> (e.g. the LTCC one)")
        if self.enrichment not in ("min", "append"):
            raise ValueError(f"enrichment must be 'min' or 'append', got {self.enrichment!r}")

    @property
    def results_dir(self) -> Path:
        base = Path(self.results_root) if self.results_root else project_root() / "results"
        out = base / self.dataset
        out.mkdir(parents=True, exist_ok=True)
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def settings_for(**parameters: Any) -> Settings:
    """Settings from notebook parameters; unknown names are an error, not ignored."""
    known = set(Settings.__dataclass_fields__)
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise TypeError(f"unknown parameter(s) {unknown}; known: {sorted(known)}")
    return Settings(**parameters)


@dataclass(eq=False)
class DatasetFeatures:
    """ReID features and face features for every image of ``images`` (same row order)."""

    images: pd.DataFrame
    reid: np.ndarray
    faces: FaceFeatures

    def rows(self, role: str | tuple[str, ...]) -> np.ndarray:
        roles = (role,) if isinstance(role, str) else role
        return np.flatnonzero(self.images["role"].isin(roles).to_numpy())

    def feature_set(self, role: str | tuple[str, ...], det_threshold: float) -> FeatureSet:
        idx = self.rows(role)
        meta = self.images.iloc[idx]
        faces = self.faces.subset(idx).thresholded(det_threshold)
        return FeatureSet(self.reid[idx], meta["pid"].to_numpy(), meta["camid"].to_numpy(),
                          meta["clothes_id"].to_numpy(), faces.embedding, faces.has_face)


_REID_WEIGHTS = {"mobilenetv2-imagenet": "mobilenetv2_imagenet"}
_FACE_WEIGHTS = {"sface": ("yunet_int8bq", "sface_int8bq"), "insightface": ("buffalo_l",)}


def check_requirements(settings: Settings, *, download: bool = True) -> pd.DataFrame:
    """One row per thing the run needs (ReID weights, face model, dataset): ``status``
    "ok" or "missing", and ``detail`` (where it is, or exactly how to get it).

    With ``download`` the registry fetches what it can (verified by SHA-256); the
    datasets themselves are only checked, never downloaded.
    """
    rows = []

    def weights(what: str, name: str | None) -> None:
        if name is None:
            rows.append({"what": what, "name": "(random init)", "status": "ok",
                         "detail": "no checkpoint: random weights, for speed tests only"})
            return
        try:
            path = checkpoints.resolve(name, allow_download=download)
            rows.append({"what": what, "name": name, "status": "ok", "detail": str(path)})
        except (checkpoints.CheckpointError, KeyError) as exc:
            rows.append({"what": what, "name": name, "status": "missing", "detail": str(exc)})

    if settings.reid_model == "cal":
        weights("reid weights", settings.reid_checkpoint)
    elif settings.reid_model in _REID_WEIGHTS:
        weights("reid weights", _REID_WEIGHTS[settings.reid_model])
    elif settings.reid_checkpoint is not None:
        weights("reid weights", settings.reid_checkpoint)
    for name in _FACE_WEIGHTS[settings.face_model]:
        weights("face model", name)
    try:
        ds = load_dataset(settings.dataset, settings.data_root)
        counts = ", ".join(f"{role}: {int((ds.images['role'] == role).sum())}" for role in ds.roles)
        rows.append({"what": "dataset", "name": settings.dataset, "status": "ok", "detail": f"{ds.root} ({counts})"})
    except (DatasetError, FileNotFoundError) as exc:
        rows.append({"what": "dataset", "name": settings.dataset, "status": "missing",
                     "detail": f"{exc}\n  {checkpoints.dataset_instructions(settings.dataset)}"})
    return pd.DataFrame(rows, columns=["what", "name", "status", "detail"])


def compute_features(dataset: Dataset, settings: Settings, *, progress: bool = True, engine: str = "local",
                     ray_address: str | None = None, ray_options: Mapping[str, Any] | None = None) -> DatasetFeatures:
    """ReID and face features of every image (cached on disk: a second call is cheap).

    ``engine="ray"``: extracted by Ray actors on the cluster at ``ray_address`` (default
    ``$RAY_ADDRESS``, else a Ray on this machine), into the same cache; ``ray_options`` go
    to :func:`reface_utils.cluster.ray_cached_features` (workers, threads_per_worker, ...).
    """
    paths = dataset.images["path"].tolist()
    if check_engine(engine) == "ray":
        from .cluster import FeatureModelSpec, face_features_ray, reid_features_ray
        options = {"address": ray_address, "progress": progress, **(ray_options or {})}
        reid_spec = FeatureModelSpec("reid", settings.reid_model, {"checkpoint": settings.reid_checkpoint,
                                                                   "device": settings.device},
                                     batch_size=settings.batch_size, num_workers=settings.num_workers)
        # both jobs at once: the cluster runs face and ReID actors side by side
        with ThreadPoolExecutor(1, thread_name_prefix="reface-faces") as pool:
            faces = pool.submit(face_features_ray, FeatureModelSpec("face", settings.face_model), paths, **options)
            reid_features = reid_features_ray(reid_spec, paths, **options)
            return DatasetFeatures(dataset.images.reset_index(drop=True), reid_features, faces.result())
    reid = load_reid_model(settings.reid_model, checkpoint=settings.reid_checkpoint, device=settings.device)
    reid_features = reid.extract(paths, batch_size=settings.batch_size, num_workers=settings.num_workers,
                                 progress=progress)
    face = load_face_model(settings.face_model)
    faces = face.extract(paths, progress=progress)
    return DatasetFeatures(dataset.images.reset_index(drop=True), reid_features, faces)


def _queries(dataset: Dataset) -> tuple[str, ...]:
    return tuple(dataset.query_roles)


def run_enrichment(dataset: Dataset, features: DatasetFeatures, settings: Settings) -> Enrichment:
    """Gallery enrichment from all query sets together (PRCC: B and C), METHOD.md section 3.

    ``query_index`` counts over the concatenated query rows (``features.rows(query_roles)``);
    video datasets smooth the labels per tracklet by majority vote.
    """
    q_idx, g_idx = features.rows(_queries(dataset)), features.rows("gallery")
    clothes_changing = settings.clothes_changing and bool((dataset.images["clothes_id"] >= 0).all())
    return enrich_gallery(features.faces.subset(q_idx), features.faces.subset(g_idx),
                          features.images.iloc[q_idx].reset_index(drop=True),
                          features.images.iloc[g_idx].reset_index(drop=True),
                          det_threshold=settings.det_threshold, sim_threshold=settings.sim_threshold,
                          clothes_changing=clothes_changing, rank_diff=settings.rank_diff,
                          vote_by_track=dataset.is_video)


@dataclass(eq=False)
class Evaluation:
    """table: one row per (query set, config, mode) with top-1/5/10/20 and mAP in %.
    retrieval[query_set]: the RetrievalResult (CMC curves, top-k lists) for image data."""

    table: pd.DataFrame
    retrieval: dict[str, RetrievalResult] = field(default_factory=dict)
    settings: Settings | None = None


def _configs(settings: Settings, with_enrichment: bool, alpha: float | None = None) -> list[RetrievalConfig]:
    return default_configs(settings.alpha if alpha is None else alpha,
                           enrichment=settings.enrichment if with_enrichment else None)


def evaluate(dataset: Dataset, features: DatasetFeatures, enrichment: Enrichment | None,
             settings: Settings, *, configs: list[RetrievalConfig] | None = None,
             progress: bool = True, engine: str = "local", ray_address: str | None = None) -> Evaluation:
    """Every config (ReID only, face only, fused, fused + enriched) in every mode.

    ``engine="ray"`` runs the query blocks of image datasets as Ray tasks (same numbers,
    bit for bit); video datasets are scored in-process either way.
    """
    retrieve = run_retrieval
    if check_engine(engine) == "ray":
        from .cluster import run_retrieval_ray
        retrieve = functools.partial(run_retrieval_ray, address=ray_address)
    if dataset.is_video:
        return _evaluate_video(dataset, features, enrichment, settings)
    gallery = features.feature_set("gallery", settings.det_threshold)
    queries = features.feature_set(_queries(dataset), settings.det_threshold)
    tables, results = [], {}
    offset = 0
    for role in dataset.query_roles:
        query = features.feature_set(role, settings.det_threshold)
        enriched = None
        if enrichment is not None and len(enrichment.samples):
            enriched = EnrichedGallery.from_table(enrichment.samples, queries, gallery,
                                                  query_offset=offset, num_queries=len(query))
        run_configs = configs or _configs(settings, enriched is not None)
        modes = [m for m in dataset.eval_modes if m != "tracklet"]
        result = retrieve(query, gallery, run_configs, modes=modes, enriched=enriched,
                          topk=settings.topk, progress=progress)
        table = result.table.copy()
        table.insert(0, "query_set", role)
        tables.append(table)
        results[role] = result
        offset += len(query)
    table = pd.concat(tables, ignore_index=True)
    for col in ("top1", "top5", "top10", "top20", "mAP"):
        if col in table:
            table[col] = 100 * table[col]
    return Evaluation(table, results, settings)


def _evaluate_video(dataset: Dataset, features: DatasetFeatures, enrichment: Enrichment | None,
                    settings: Settings) -> Evaluation:
    """Per-tracklet identification (CCVID, 42Street), METHOD.md section 5."""
    q_idx, g_idx = features.rows(_queries(dataset)), features.rows("gallery")
    q_meta, g_meta = features.images.iloc[q_idx], features.images.iloc[g_idx]
    q_faces = features.faces.subset(q_idx).thresholded(settings.det_threshold)
    g_faces = features.faces.subset(g_idx).thresholded(settings.det_threshold)
    street42 = dataset.name == "street42"
    common = dict(query_tracks=q_meta["track"].to_numpy(), gallery_pids=g_meta["pid"].to_numpy(),
                  query_pids=q_meta["pid"].to_numpy(), query_camids=q_meta["camid"].to_numpy(),
                  gallery_camids=g_meta["camid"].to_numpy(), progress=False)
    evaluation = dict(min_frames=STREET42_MIN_FRAMES, unknown_pid=STREET42_UNKNOWN_PID) if street42 else {}
    enriched = None
    if enrichment is not None and len(enrichment.samples):
        # run_enrichment used vote_by_track: the samples already hold every frame of each
        # voted tracklet with the tracklet's majority label (GEFF's CCVID smoothing).
        s = enrichment.samples
        enriched = EnrichedFrames(s["query_index"].to_numpy(), s["pid"].to_numpy(),
                                  q_meta["track"].to_numpy()[s["query_index"].to_numpy()])

    def scores(with_enrichment: bool):
        extra = dict(enriched=enriched, exclude_self=False) if with_enrichment else {}
        reid = track_identity_scores(features.reid[q_idx], gallery=features.reid[g_idx], **common, **extra)
        face = track_identity_scores(zero_faceless_rows(q_faces.embedding, q_faces.has_face),
                                     gallery=zero_faceless_rows(g_faces.embedding, g_faces.has_face),
                                     **common, **extra)
        return reid, face

    rows = []
    plain = scores(False)
    variants = [("reid", 1.0, plain), ("face", 0.0, plain), ("fused", settings.alpha, plain)]
    if enriched is not None:
        variants.append(("fused+enriched", settings.alpha, scores(True)))
    for name, alpha, (reid, face) in variants:
        result = evaluate_tracks(fuse_track_scores(reid, face, alpha), **evaluation)
        rows.append({"query_set": "query", "config": name, "alpha": alpha, "mode": "tracklet",
                     "top1": 100 * result.track_accuracy, "image_accuracy": 100 * result.image_accuracy,
                     "evaluated": result.num_scored, "skipped": result.num_too_short + result.num_unknown})
    return Evaluation(pd.DataFrame(rows), {}, settings)


def paper_table(dataset: str, evaluation: Evaluation) -> pd.DataFrame:
    """Our clothes-changing row for each config, next to the paper's numbers."""
    role, mode = _PAPER_ROW.get(dataset, ("query", "standard"))
    ours = evaluation.table[(evaluation.table["query_set"] == role) & (evaluation.table["mode"] == mode)]
    rows = [{"source": f"ours: {r['config']}", "top1": r["top1"], "mAP": r.get("mAP", float("nan"))}
            for _, r in ours.iterrows()]
    paper = PAPER_RESULTS[PAPER_RESULTS["dataset"] == dataset]
    rows += [{"source": f"paper: {r['source']}", "top1": r["top1"], "mAP": r["mAP"]} for _, r in paper.iterrows()]
    return pd.DataFrame(rows)


def alpha_sweep(dataset: Dataset, features: DatasetFeatures, enrichment: Enrichment | None,
                settings: Settings, alphas=np.linspace(0, 1, 11), *, role: str | None = None,
                mode: str | None = None) -> pd.DataFrame:
    """top-1 and mAP against alpha for the fused (and fused + enriched) distance."""
    role = role or _PAPER_ROW.get(dataset.name, ("query", "standard"))[0]
    mode = mode or _PAPER_ROW.get(dataset.name, ("query", "standard"))[1]
    configs = []
    for a in alphas:
        configs.append(RetrievalConfig(f"fused@{a:.2f}", float(a)))
        if enrichment is not None and len(enrichment.samples):
            configs.append(RetrievalConfig(f"fused+enriched@{a:.2f}", float(a), settings.enrichment))
    evaluation = evaluate(dataset, features, enrichment, settings, configs=configs, progress=False)
    t = evaluation.table
    t = t[(t["query_set"] == role) & (t["mode"] == mode)].copy()
    t["config"] = t["config"].str.split("@").str[0]
    t[["top1", "mAP"]] = t[["top1", "mAP"]] / 100
    return t[["config", "alpha", "top1", "mAP"]].reset_index(drop=True)


def threshold_sweep(dataset: Dataset, features: DatasetFeatures, settings: Settings,
                    thresholds=np.round(np.arange(0.2, 0.81, 0.05), 2)) -> pd.DataFrame:
    """Enrichment size and precision against the face similarity threshold."""
    q_idx, g_idx = features.rows(_queries(dataset)), features.rows("gallery")
    clothes_changing = settings.clothes_changing and bool((dataset.images["clothes_id"] >= 0).all())
    return enrichment_sweep(features.faces.subset(q_idx), features.faces.subset(g_idx),
                            features.images.iloc[q_idx].reset_index(drop=True),
                            features.images.iloc[g_idx].reset_index(drop=True),
                            det_threshold=settings.det_threshold, thresholds=list(thresholds),
                            clothes_changing=clothes_changing, rank_diff=settings.rank_diff,
                            vote_by_track=dataset.is_video)


def query_scorer(dataset: Dataset, features: DatasetFeatures, enrichment: Enrichment | None,
                 settings: Settings, role: str = "query"):
    """``score(q, alpha, enriched) -> (distances (G,), via_enriched (G,))`` for one query of
    ``role``: the fused distance of METHOD.md section 4, computed for that query alone (the
    interactive browser calls it on every slider move)."""
    t = settings.det_threshold
    gallery = features.feature_set("gallery", t)
    query = features.feature_set(role, t)
    enriched = None
    if enrichment is not None and len(enrichment.samples):
        offset = sum(len(features.rows(r)) for r in dataset.query_roles[:dataset.query_roles.index(role)])
        enriched = EnrichedGallery.from_table(enrichment.samples, features.feature_set(_queries(dataset), t),
                                              gallery, query_offset=offset, num_queries=len(query))

    def score(q: int, alpha: float, use_enrichment: bool) -> tuple[np.ndarray, np.ndarray]:
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
        return fuse(reid, face, alpha)[0], via

    return score


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_results(evaluation: Evaluation, out_dir: str | os.PathLike, *,
                 enrichment: Enrichment | None = None, extra: Mapping[str, Any] | None = None) -> list[Path]:
    """results.csv / results.json, the enrichment table, and the top-k lists (npz)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    csv = out / "results.csv"
    _atomic_write(csv, evaluation.table.to_csv(index=False, float_format="%.4f"))
    payload = {"settings": evaluation.settings.to_dict() if evaluation.settings else None,
               "results": json.loads(evaluation.table.to_json(orient="records")), **(extra or {})}
    if enrichment is not None:
        payload["enrichment"] = {k: (v.item() if hasattr(v, "item") else v) for k, v in enrichment.summary.items()}
    js = out / "results.json"
    _atomic_write(js, json.dumps(payload, indent=2, default=str))
    written += [csv, js]
    if enrichment is not None:
        path = out / "enrichment.csv"
        _atomic_write(path, enrichment.samples.to_csv(index=False, float_format="%.6f"))
        written.append(path)
    cmc = {f"{role}|{config}|{mode}": res.cmc[:50] for role, result in evaluation.retrieval.items()
           for (config, mode), res in result.results.items()}
    if cmc:
        path = out / "cmc.npz"
        np.savez_compressed(path, **cmc)
        written.append(path)
    for role, result in evaluation.retrieval.items():
        if result.topk:
            path = out / f"ranks_{role}.npz"
            np.savez_compressed(path, **{name.replace(" ", "_"): v for name, v in result.topk.items()})
            written.append(path)
    return written
