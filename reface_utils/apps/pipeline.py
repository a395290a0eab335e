"""The ReFace pipeline for one dataset, as the notebooks run it.

features -> gallery enrichment -> retrieval (ReID only, face only, fused, fused +
enriched) -> one results table next to the paper's numbers. Each step is a function
that takes data and returns data; the notebooks (``notebooks/*.ipynb``) narrate and call
them, and every expensive step goes through the feature cache, so running
``enrich_gallery``, ``infer`` and ``visualise`` one after the other extracts features once.
"""
from __future__ import annotations

import difflib
import functools
import json
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from ..core import checkpoints
from ..core.checks import choice, integer, number, text
from ..core.plugins import load_entry_point_plugins, load_plugins
from ..core.files import atomic_savez, atomic_write_text
from ..core.image_sizes import MIN_PERSON_SIDE, image_sizes, too_small
from ..core.paths import project_root, results_dir  # project_root: public here too (notebooks)

from . import paper, visualise
from .tables import ShownTable
from .paper import PAPER_RESULTS
from .cluster import check_engine
from ..data.datasets import Dataset, DatasetError, canonical_name, load_dataset, registered_enrichment_rules
from ..method.enrich import Enrichment, enrich_gallery, enrichment_sweep
from ..method.features import FaceFeatures, unreadable_mask
from ..models.face import available_face_models, face_model_thresholds, load_face_model
from ..method.fusion import apply_enrichment, face_distance, fuse, reid_distance, zero_faceless_rows
from ..models.reid import available_reid_models, load_reid_model
from ..method.metrics import MODES
from ..method.protocols import single_shot_galleries, subset_enrichment, take_rows
from ..method.rerank import combine_results, rerank_configs, rerank_retrieval
from ..method.retrieval import EnrichedGallery, FeatureSet, RetrievalConfig, RetrievalResult, default_configs, run_retrieval
from ..method.tracklets import (
    STREET42_MIN_FRAMES,
    STREET42_UNKNOWN_PID,
    EnrichedFrames,
    evaluate_tracks,
    fuse_track_scores,
    track_identity_scores,
)

__all__ = ["Settings", "DatasetFeatures", "Evaluation", "TinyImagesWarning", "PAPER_RESULTS", "PARAMETERS", "settings_for",
           "settings_from_namespace", "notebook_parameters", "save_enrichment", "load_enrichment",
           "enrichment_for", "percent", "SavedResults", "load_results", "results_for", "describe_features",
           "enrichment_report", "results_report", "enriched_examples_figure", "retrieval_figure",
           "retrieval_browser",
           "ENRICHMENT_DEFAULTS", "EnrichmentDefaults", "enrichment_defaults_table", "uses_extra_data",
           "compute_features", "run_enrichment", "evaluate", "paper_table", "alpha_sweep",
           "threshold_sweep", "save_results", "project_root", "DEFAULT_THRESHOLDS", "query_scorer",
           "check_requirements", "check_parameters", "require", "MissingRequirementsError", "enrichment_rules",
           "PAPER_FACE_MODELS", "OFFLINE_DATASETS", "ShownTable", "results_table", "paper_comparison", "model_gain"]

#: Face thresholds of the built-in backends (the face registry holds them, with those of
#: registered models: ``reface_utils.models.face.face_model_thresholds``).
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {name: face_model_thresholds(name) for name in ("insightface", "sface")}

#: The paper's models: the face model every real dataset runs with by default, and CAL.
PAPER_FACE_MODELS = ("insightface", "buffalo_l")
PAPER_REID_MODEL = "cal"
#: Datasets whose defaults are the offline models (no download): the generated demo.
OFFLINE_DATASETS = ("demo",)
#: ``reid_model`` value that reads the ReID features from ``reid_features`` (your model's).
FEATURES_MODEL = "features"


@dataclass(frozen=True)
class EnrichmentDefaults:
    """How the reference enriches one dataset's gallery (docs/METHOD.md, section 3).

    ``clothes_changing``: gallery images in the query's own clothes are excluded (the
    reference's ``--CC``); ``vote_by_track``: a tracklet's frames share the majority
    label of their face matches (else every frame is enriched on its own face).
    """

    clothes_changing: bool
    vote_by_track: bool
    why: str


#: The reference's enrichment settings per dataset. Its ``--CC`` flag defaults to off and
#: its only published command (LTCC) turns it on; PRCC and LaST have no clothes labels in
#: the reference's enrichment code (camera exclusion only), 42Street has neither cameras
#: nor clothes; only CCVID's gallery builder votes per tracklet.
ENRICHMENT_DEFAULTS: dict[str, EnrichmentDefaults] = {
    "prcc": EnrichmentDefaults(False, False, "no clothes labels in the reference's enrichment: camera exclusion only"),
    "ltcc": EnrichmentDefaults(True, False, "published command: --CC"),
    "last": EnrichmentDefaults(False, False, "no clothes labels in test (clothes id = pid)"),
    "ccvid": EnrichmentDefaults(False, True, "majority vote per tracklet (gallery_builder_CCVID)"),
    "vcclothes": EnrichmentDefaults(False, False, "--CC off (the reference's default)"),
    "vcclothes_sc": EnrichmentDefaults(False, False, "--CC off (the reference's default)"),
    "vcclothes_cc": EnrichmentDefaults(False, False, "--CC off (the reference's default)"),
    "street42": EnrichmentDefaults(False, False, "frame by frame, no cameras or clothes; extra data when present"),
    "demo": EnrichmentDefaults(True, False, "LTCC layout: as LTCC"),
}


def enrichment_rules(dataset: str) -> EnrichmentDefaults | None:
    """The enrichment rules of a dataset: the reference's for the built-in ones, those a
    registered dataset brought (``register_dataset(..., enrichment={...})``), else None.

    None (a manifest, or a registered dataset without rules): the settings' own values, and
    where those are None the documented defaults, decided from the data: the clothes
    filter on when every image has a clothes label (as LTCC's published command), a vote
    per tracklet for video datasets.
    """
    if dataset in ENRICHMENT_DEFAULTS:
        return ENRICHMENT_DEFAULTS[dataset]
    rules = registered_enrichment_rules(dataset)
    if rules is None:
        return None
    return EnrichmentDefaults(bool(rules.get("clothes_changing", False)), bool(rules.get("vote_by_track", False)),
                              str(rules.get("why", "registered with the dataset")))


def enrichment_defaults_table() -> pd.DataFrame:
    """The per-dataset enrichment defaults with the face thresholds, one row per dataset."""
    rows = [{"dataset": name, "clothes_changing": d.clothes_changing,
             "vote": "per tracklet" if d.vote_by_track else "per image/frame",
             "extra_data": "when present" if name == "street42" else "-", "why": d.why}
            for name, d in ENRICHMENT_DEFAULTS.items()]
    return pd.DataFrame(rows)


@dataclass
class Settings:
    """Every parameter of a run (the notebooks' parameters cell, checked)."""

    dataset: str = "demo"
    data_root: str | None = None
    reid_model: str | None = None        # None: "mobilenetv2-imagenet" for demo, else "cal"
    reid_checkpoint: str | None = None   # None: the registry's CAL checkpoint for the dataset
    face_model: str | None = None        # None: the paper's (insightface, buffalo_l); sface for the demo
    alpha: float = 0.75
    det_threshold: float | None = None         # faces at inference (None: DEFAULT_THRESHOLDS[face_model])
    enrich_det_threshold: float | None = None  # faces when enriching (None: det_threshold if given, else the default)
    sim_threshold: float | None = None
    rank_diff: float = 0.0
    clothes_changing: bool | None = None # None: ENRICHMENT_DEFAULTS[dataset]
    vote_by_track: bool | None = None    # None: ENRICHMENT_DEFAULTS[dataset]
    extra_data: bool | None = None       # 42Street extra-data folder; None: used when present
    enrichment: str = "min"              # "min" (GEFF) or "append" (ReFace v1)
    device: str = "auto"
    batch_size: int = 64
    num_workers: int | None = None
    results_root: str | None = None      # None: <checkout>/results
    topk: int = 10
    engine: str = "local"                # "local" (in-process) or "ray" (docs/CLUSTER.md)
    ray_address: str | None = None       # a Ray cluster; None: $RAY_ADDRESS, else a Ray on this machine
    amp: bool = False                    # CUDA ReID in fp16 autocast (faster; the paper ran fp32)
    plugins: str | None = None           # modules / .py files that register datasets and models
    reid_features: str | None = None     # reid_model="features": a .npz of your model's features
    face_features: str | None = None     # a .npz of your face model's features (instead of face_model)
    rerank: bool = False                 # k-reciprocal re-ranking rows (Zhong et al. 2017), opt-in
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3

    def __post_init__(self) -> None:
        self.dataset = canonical_name(self.dataset)
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1] (1 = ReID only, 0 = face only), got {self.alpha}")
        if self.face_model is None:
            self.face_model = "sface" if self.dataset in OFFLINE_DATASETS else PAPER_FACE_MODELS[0]
        self.face_model = _face_model_name(self.face_model)
        defaults = face_model_thresholds(self.face_model)
        if defaults is None:
            missing = [n for n in ("det_threshold", "sim_threshold") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"face model {self.face_model!r} was registered without default thresholds: "
                                 f"give {' and '.join(missing)} (on its own score scales), or register it with "
                                 "register_face_model(..., thresholds={'det_threshold': ..., 'sim_threshold': ...})")
            defaults = {"det_threshold": self.det_threshold, "sim_threshold": self.sim_threshold,
                        "enrich_det_threshold": self.det_threshold}
        if self.enrich_det_threshold is None:
            # One threshold given: it serves both steps (the single-threshold shorthand).
            self.enrich_det_threshold = (self.det_threshold if self.det_threshold is not None
                                         else defaults["enrich_det_threshold"])
        if self.det_threshold is None:
            self.det_threshold = defaults["det_threshold"]
        if self.sim_threshold is None:
            self.sim_threshold = defaults["sim_threshold"]
        protocol = enrichment_rules(self.dataset)
        if protocol is not None:  # else: decided from the data (enrichment_rules' docstring)
            if self.clothes_changing is None:
                self.clothes_changing = protocol.clothes_changing
            if self.vote_by_track is None:
                self.vote_by_track = protocol.vote_by_track
        if self.extra_data and self.dataset != "street42":
            raise ValueError(f"extra_data=True: only 42Street has an extra-data folder, not {self.dataset!r}")
        if self.reid_model is None:
            self.reid_model = "mobilenetv2-imagenet" if self.dataset == "demo" else "cal"
        if self.reid_model == "cal" and self.reid_checkpoint is None:
            # None stays None where no CAL checkpoint is published (VC-Clothes, 42Street):
            # check_requirements then says what to pass, before any work
            self.reid_checkpoint = checkpoints.default_reid_checkpoint(self.dataset)
        if self.enrichment not in ("min", "append"):
            raise ValueError(f"enrichment must be 'min' or 'append', got {self.enrichment!r}")
        if not isinstance(self.amp, bool):
            raise ValueError(f"amp must be True or False, got {self.amp!r}")
        if (self.reid_model == FEATURES_MODEL) != (self.reid_features is not None):
            raise ValueError("reid_model='features' and reid_features=<a .npz of paths and features> go together "
                             f"(got reid_model={self.reid_model!r}, reid_features={self.reid_features!r})")

    @property
    def paper_setting(self) -> list[str]:
        """How this run differs from the paper's setting (empty: it is the paper's setting):
        the paper ran CAL with the dataset's checkpoint, buffalo_l faces, fp32."""
        differs = []
        if self.face_features is not None:
            differs.append(f"face features from {self.face_features} (paper: insightface buffalo_l)")
        elif self.face_model not in PAPER_FACE_MODELS:
            differs.append(f"face model {self.face_model} (paper: insightface buffalo_l)")
        if self.reid_model == FEATURES_MODEL:
            differs.append(f"ReID features from {self.reid_features} (paper: CAL)")
        elif self.reid_model != PAPER_REID_MODEL:
            differs.append(f"ReID model {self.reid_model} (paper: CAL)")
        elif self.reid_checkpoint != checkpoints.default_reid_checkpoint(self.dataset):
            differs.append(f"ReID checkpoint {self.reid_checkpoint} (paper: "
                           f"{checkpoints.default_reid_checkpoint(self.dataset) or 'none registered'})")
        if self.amp:
            differs.append("ReID in fp16 autocast (paper: fp32)")
        return differs

    @property
    def results_dir(self) -> Path:
        """``<results_root or <checkout>/results>/<dataset>`` (``paths.results_dir``; not created:
        writers create it)."""
        return results_dir(self.dataset, self.results_root)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Every notebook parameter with its help text, in the order of the notebooks' parameters
#: cells (tests check that each notebook assigns exactly these, with this help).
PARAMETERS: dict[str, str] = {
    "dataset": "demo, prcc, ltcc, last, ccvid, vcclothes, street42, manifest (your CSV), or a registered name",
    "data_root": "the dataset folder as its authors distribute it (not needed for demo)",
    "reid_model": "cal (paper), mobilenetv2-imagenet (offline), onnx, features (a file), or a registered name; None: by dataset",
    "reid_checkpoint": "registry name (cal_prcc, cal_ltcc, ...) or a path; None: the dataset's CAL weights",
    "face_model": "insightface (paper: buffalo_l), sface (offline), or a registered name; None: by dataset",
    "alpha": "weight of ReID in the fused distance (1: ReID only, 0: face only)",
    "det_threshold": "face detection score at inference; None: the face model's default",
    "enrich_det_threshold": "face detection score when enriching; None: det_threshold if set, else the default",
    "sim_threshold": "face similarity needed to enrich; None: the face model's default",
    "rank_diff": "optional gap between the best and the second identity (0: off)",
    "clothes_changing": "enrichment skips gallery images in the query's clothes; None: the dataset's default",
    "vote_by_track": "video: one label per tracklet by majority vote; None: the dataset's default",
    "extra_data": "42Street: enrich from its extra-data crops too; None: when the folder exists",
    "enrichment": "min (GEFF) or append (ReFace v1)",
    "device": "auto, cpu or cuda",
    "batch_size": "images per ReID batch",
    "num_workers": "image decoding workers; None: automatic",
    "results_root": "folder for results/<dataset>; None: <checkout>/results",
    "topk": "gallery indices kept per query in ranks_*.npz",
    "engine": "local (in-process) or ray (features and retrieval on a Ray cluster)",
    "ray_address": "the Ray cluster to join; None: RAY_ADDRESS, else a Ray on this machine",
    "amp": "CUDA ReID in fp16 autocast (faster; the paper ran fp32)",
    "plugins": "comma-separated modules or .py files that register your datasets and models",
    "reid_features": "with reid_model features: a .npz (paths, features) of your ReID model",
    "face_features": "a .npz (paths, features, has_face) of your face model; None: run face_model",
    "rerank": "also k-reciprocal re-ranked rows (ReID only, fused + enriched)",
    "rerank_k1": "re-ranking: k of the k-reciprocal neighbours",
    "rerank_k2": "re-ranking: neighbours averaged in the query expansion",
    "rerank_lambda": "re-ranking: weight of the original distance (1 - weight of the Jaccard one)",
}

# Names a notebook's namespace holds besides its parameters (IPython's own).
_NOT_PARAMETERS = frozenset({"In", "Out", "exit", "quit", "get_ipython"})


def check_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Every notebook parameter checked (known name, type, range, spelling) before any work.

    Returns the parameters with names normalised (``dataset="LTCC"`` -> ``"ltcc"``,
    ``"42street"`` -> ``"street42"``; ``face_model``/``enrichment`` lower-cased; whole
    floats for integers). Any problem is one ``ValueError`` naming the parameter, the
    value and what is allowed (``TypeError`` for unknown names, with the closest known
    one). Parameters not listed here pass through to :class:`Settings`, which checks them.
    """
    # plugins first: they register the datasets and models the other parameters may name
    load_entry_point_plugins()
    plugins = _plugins(parameters.get("plugins"))
    load_plugins(plugins)
    known = list(PARAMETERS)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        hints = [f"{u!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(u, known, 1))
                 else repr(u) for u in unknown]
        raise TypeError(f"unknown parameter(s) {', '.join(hints)}; known: {', '.join(known)}")
    out = dict(parameters)
    if "plugins" in out:
        out["plugins"] = plugins
    checks = {
        "dataset": _dataset_name,
        "data_root": lambda v: text("data_root", v, optional=True, path=True),
        "reid_model": _reid_model_name,
        "reid_checkpoint": lambda v: text("reid_checkpoint", v, optional=True, path=True),
        "face_model": lambda v: None if v is None else _face_model_name(v),
        "alpha": lambda v: number("alpha", v, 0.0, 1.0),
        "det_threshold": lambda v: number("det_threshold", v, 0.0, 1.0, optional=True),
        "sim_threshold": lambda v: number("sim_threshold", v, 0.0, 1.0, optional=True),
        "enrich_det_threshold": lambda v: number("enrich_det_threshold", v, 0.0, 1.0, optional=True),
        "rank_diff": lambda v: number("rank_diff", v, 0.0, 2.0),  # a difference of cosines
        "enrichment": lambda v: choice("enrichment", v, ["append", "min"]),
        "device": _device,
        "batch_size": lambda v: integer("batch_size", v, 1),
        "num_workers": lambda v: integer("num_workers", v, 0, optional=True),
        "results_root": lambda v: text("results_root", v, optional=True, path=True),
        "topk": lambda v: integer("topk", v, 1),
        "engine": lambda v: choice("engine", v, ["local", "ray"]),
        "ray_address": lambda v: text("ray_address", v, optional=True),
        "amp": _flag("amp"),
        "rerank": _flag("rerank"),
        "rerank_k1": lambda v: integer("rerank_k1", v, 1),
        "rerank_k2": lambda v: integer("rerank_k2", v, 1),
        "rerank_lambda": lambda v: number("rerank_lambda", v, 0.0, 1.0),
        "reid_features": lambda v: _existing_file("reid_features", v),
        "face_features": lambda v: _existing_file("face_features", v),
    }
    for name, check in checks.items():
        if name in out:
            out[name] = check(out[name])
    for name in ("clothes_changing", "vote_by_track", "extra_data"):  # None: the dataset's default
        if out.get(name) is not None and not isinstance(out[name], bool):
            raise ValueError(f"parameter {name} must be True, False or None, got {out[name]!r}")
    return out


def _face_model_name(value: Any) -> str:
    given = text("face_model", value).lower()
    known = available_face_models()
    if given not in known:
        close = difflib.get_close_matches(given, known, 1)
        raise ValueError(f"parameter face_model: unknown face model {value!r}"
                         f"{f' (did you mean {close[0]!r}?)' if close else ''}; registered: {', '.join(known)}. "
                         "Add yours with reface_utils.models.face.register_face_model (in a plugin: the "
                         "`plugins` parameter) or leave face_model=None for the dataset's default")
    return given


def _plugins(value: Any) -> str | None:
    """The plugins parameter with ``.py`` files made absolute, so that every notebook the
    eval notebook starts (in another working directory) finds them."""
    given = text("plugins", value, optional=True)
    if given is None:
        return None
    items = [item.strip() for item in given.split(",") if item.strip()]
    return ",".join(str(Path(item).expanduser().resolve()) if item.endswith(".py") else item for item in items)


def _existing_file(name: str, value: Any) -> str | None:
    given = text(name, value, optional=True, path=True)
    if given is None:
        return None
    path = Path(given).expanduser()
    if not path.is_file():
        raise ValueError(f"parameter {name}: {path} is not a file (a .npz with the arrays 'paths' and 'features', "
                         "see reface_utils.method.feature_files)")
    return str(path.resolve())


def _flag(name: str):
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"parameter {name} must be True or False, got {value!r}")
        return value
    return check


def _dataset_name(value: Any) -> str:
    given = text("dataset", value)
    try:
        return canonical_name(given)
    except ValueError as err:
        raise ValueError(f"parameter dataset: {err}") from None


def _reid_model_name(value: Any) -> str | None:
    given = text("reid_model", value, optional=True)
    known = available_reid_models() + [FEATURES_MODEL]
    if given is not None and given not in known:
        raise ValueError(f"parameter reid_model must be one of {known} (or a model you registered with "
                         f"reface_utils.models.reid.register_reid_model, in a plugin: the `plugins` parameter), "
                         f"got {value!r}")
    return given


def _device(value: Any) -> str:
    given = text("device", value).lower()
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", given):
        raise ValueError(f"parameter device must be 'auto', 'cpu', 'cuda', 'cuda:<n>' or 'mps', got {value!r}")
    return given


def settings_for(**parameters: Any) -> Settings:
    """Settings from notebook parameters, all checked first (:func:`check_parameters`)."""
    return Settings(**check_parameters(parameters))


def settings_from_namespace(namespace: Mapping[str, Any], *, own: Sequence[str] = ()) -> Settings:
    """Settings from a notebook's variables (``globals()`` after the parameters cell).

    Every plain value (None, bool, number, string) whose name is public is taken as a
    parameter, so a misspelt papermill ``-p aplha 0.5`` (injected as a variable) stops the
    run here instead of being ignored. ``own``: the notebook's own extra parameters.
    """
    values = {}
    for name, value in namespace.items():
        if (name.startswith("_") or name.isupper() or name in _NOT_PARAMETERS or name in own
                or not (value is None or isinstance(value, (bool, int, float, str)))):
            continue
        values[name] = value
    return settings_for(**values)


def notebook_parameters(settings: Settings) -> dict[str, Any]:
    """The parameters that reproduce ``settings`` in another notebook (papermill -p)."""
    return {name: getattr(settings, name) for name in PARAMETERS}


@dataclass(eq=False)
class DatasetFeatures:
    """ReID features and face features for every image of ``images`` (same row order).

    ``readable`` (bool N, default all): images that could be read. :meth:`rows` leaves
    the others out, so they take no part in enrichment, ranking or evaluation, neither as
    queries nor as gallery entries (a zero feature would tie with every other one).
    """

    images: pd.DataFrame
    reid: np.ndarray
    faces: FaceFeatures
    readable: np.ndarray | None = None
    too_small: np.ndarray | None = None  # bool N: readable, but under MIN_PERSON_SIDE px (still ranked)

    def rows(self, role: str | tuple[str, ...]) -> np.ndarray:
        roles = (role,) if isinstance(role, str) else role
        keep = self.images["role"].isin(roles).to_numpy()
        if self.readable is not None:
            keep = keep & self.readable
        return np.flatnonzero(keep)

    @property
    def too_small_paths(self) -> list[str]:
        """Images too small to hold a person (``core.image_sizes``): ranked, but reported."""
        if self.too_small is None:
            return []
        return self.images["path"].to_numpy()[self.too_small].tolist()

    @property
    def unreadable_paths(self) -> list[str]:
        """The images left out because they could not be read."""
        if self.readable is None:
            return []
        return self.images["path"].to_numpy()[~self.readable].tolist()

    def feature_set(self, role: str | tuple[str, ...], det_threshold: float) -> FeatureSet:
        idx = self.rows(role)
        meta = self.images.iloc[idx]
        faces = self.faces.subset(idx).thresholded(det_threshold)
        return FeatureSet(self.reid[idx], meta["pid"].to_numpy(), meta["camid"].to_numpy(),
                          meta["clothes_id"].to_numpy(), faces.embedding, faces.has_face)


_REID_WEIGHTS = {"mobilenetv2-imagenet": "mobilenetv2_imagenet"}
_FACE_WEIGHTS = {"sface": ("yunet_int8bq", "sface_int8bq"), "insightface": ("buffalo_l",), "buffalo_l": ("buffalo_l",)}


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

    if settings.reid_model == FEATURES_MODEL:
        rows.append({"what": "reid features", "name": Path(settings.reid_features).name, "status": "ok",
                     "detail": settings.reid_features})
    elif settings.reid_model == "cal" and settings.reid_checkpoint is None:
        rows.append({"what": "reid weights", "name": "cal", "status": "missing",
                     "detail": f"no CAL checkpoint is published for {settings.dataset!r}: pass reid_checkpoint=<a "
                               ".pth.tar you trained, or a registry name such as cal_ltcc>, or choose "
                               "reid_model='mobilenetv2-imagenet' (offline, not the paper's setting)"})
    elif settings.reid_model == "cal":
        weights("reid weights", settings.reid_checkpoint)
    elif settings.reid_model in _REID_WEIGHTS:
        weights("reid weights", _REID_WEIGHTS[settings.reid_model])
    elif settings.reid_checkpoint is not None:
        weights("reid weights", settings.reid_checkpoint)
    if settings.face_features is not None:
        rows.append({"what": "face features", "name": Path(settings.face_features).name, "status": "ok",
                     "detail": settings.face_features})
    for name in () if settings.face_features else _FACE_WEIGHTS.get(settings.face_model, ()):  # a registered model brings its own
        weights("face model", name)
        if rows[-1]["status"] == "missing" and settings.face_model in PAPER_FACE_MODELS:
            rows[-1]["detail"] += ("\n  Or run with the offline face model instead: face_model='sface' "
                                   "(results are then marked as not the paper's setting).")
    try:
        ds = load_dataset(settings.dataset, settings.data_root)
        counts = ", ".join(f"{role}: {int((ds.images['role'] == role).sum())}" for role in ds.roles)
        rows.append({"what": "dataset", "name": settings.dataset, "status": "ok", "detail": f"{ds.root} ({counts})"})
    except (DatasetError, FileNotFoundError) as exc:
        rows.append({"what": "dataset", "name": settings.dataset, "status": "missing",
                     "detail": f"{exc}\n  {checkpoints.dataset_instructions(settings.dataset)}"})
    return pd.DataFrame(rows, columns=["what", "name", "status", "detail"])


class MissingRequirementsError(RuntimeError):
    """Something a run needs (weights, a face model pack, the dataset) is missing."""


def require(requirements: pd.DataFrame) -> None:
    """Stop with one error listing every missing requirement and how to get it (nothing
    falls back silently to another model)."""
    missing = requirements[requirements["status"] != "ok"]
    if len(missing):
        lines = [f"- {r['what']} {r['name']}: {r['detail']}" for _, r in missing.iterrows()]
        raise MissingRequirementsError(f"{len(missing)} requirement(s) missing:\n" + "\n".join(lines))


def uses_extra_data(dataset: Dataset, settings: Settings) -> bool:
    """Whether the run enriches from the dataset's extra (unlabelled) images."""
    if settings.extra_data and not dataset.extra_roles:
        raise DatasetError(f"extra_data=True but {dataset.root} has no extra-data folder "
                           "(<root>/extra_data/ with .jpg/.png crops); set extra_data=None or False")
    return bool(dataset.extra_roles) and settings.extra_data is not False


#: ReID backends that take ``amp`` (a registered one gets it only when amp=True is asked).
_AMP_MODELS = ("cal", "mobilenetv2-imagenet")


def _reid_options(settings: Settings) -> dict[str, Any]:
    """``load_reid_model`` options of a run: fp32 unless ``amp`` (the paper ran fp32)."""
    options: dict[str, Any] = {"checkpoint": settings.reid_checkpoint, "device": settings.device}
    if settings.amp or settings.reid_model in _AMP_MODELS:
        options["amp"] = settings.amp
    return options


def compute_features(dataset: Dataset, settings: Settings, *, progress: bool = True, engine: str | None = None,
                     ray_address: str | None = None, ray_options: Mapping[str, Any] | None = None) -> DatasetFeatures:
    """ReID and face features of every image (cached on disk: a second call is cheap).

    Extra-data images are included only when the run uses them (:func:`uses_extra_data`).
    ``engine="ray"``: extracted by Ray actors on the cluster at ``ray_address`` (default
    ``$RAY_ADDRESS``, else a Ray on this machine), into the same cache; ``ray_options`` go
    to :func:`reface_utils.apps.cluster.ray_cached_features` (workers, threads_per_worker, ...).
    """
    if not uses_extra_data(dataset, settings):
        dataset = dataset.without_extra()
    paths = dataset.images["path"].tolist()
    engine, ray_address = engine or settings.engine, ray_address or settings.ray_address
    if settings.reid_model == FEATURES_MODEL or settings.face_features is not None:
        return _checked(_features_from_files(dataset, settings, progress), progress)
    if check_engine(engine) == "ray":
        from .cluster import FeatureModelSpec, connect, face_features_ray, reid_features_ray
        # Join (or start) Ray here, in the caller's thread: a Ray started from the worker
        # thread below would die with that thread (its processes are tied to the thread
        # that spawned them), and the retrieval step after it would find no Ray.
        connect(ray_address)
        options = {"address": ray_address, "progress": progress, **(ray_options or {})}
        reid_spec = FeatureModelSpec("reid", settings.reid_model, _reid_options(settings),
                                     batch_size=settings.batch_size, num_workers=settings.num_workers)
        # both jobs at once: the cluster runs face and ReID actors side by side
        with ThreadPoolExecutor(1, thread_name_prefix="reface-faces") as pool:
            faces = pool.submit(face_features_ray, FeatureModelSpec("face", settings.face_model), paths, **options)
            reid_features = reid_features_ray(reid_spec, paths, **options)
            faces = faces.result()
        # Unreadable images have all-zero ReID rows (the face path marks them as face-less).
        readable = ~unreadable_mask(reid_features)
        return _checked(DatasetFeatures(dataset.images.reset_index(drop=True), reid_features, faces, readable),
                        progress)
    reid = load_reid_model(settings.reid_model, **_reid_options(settings))
    reid_features = reid.extract(paths, batch_size=settings.batch_size, num_workers=settings.num_workers,
                                 progress=progress)
    face = load_face_model(settings.face_model)
    faces, face_unreadable = face.extract_with_status(paths, progress=progress)
    readable = ~(unreadable_mask(reid_features) | face_unreadable)
    features = DatasetFeatures(dataset.images.reset_index(drop=True), reid_features, faces, readable)
    left_out = features.unreadable_paths
    if left_out:
        shown = ", ".join(left_out[:5]) + (" ..." if len(left_out) > 5 else "")
        warnings.warn(f"{len(left_out)} unreadable image(s) are left out of enrichment, ranking and "
                      f"evaluation (listed in results.json): {shown}", UserWarning, stacklevel=2)
    return _checked(features, progress)


def _features_from_files(dataset: Dataset, settings: Settings, progress: bool) -> DatasetFeatures:
    """Features read from your files (``reid_features``, ``face_features``; matched to the
    images by path, checked, rows L2-normalised: reface_utils.method.feature_files), the
    rest extracted by the run's models."""
    from ..method.feature_files import load_face_features, load_reid_features

    images = dataset.images.reset_index(drop=True)
    paths = images["path"].tolist()
    if settings.reid_model == FEATURES_MODEL:
        reid_features = load_reid_features(settings.reid_features, images, dataset.root)
    else:
        reid_features = load_reid_model(settings.reid_model, **_reid_options(settings)).extract(
            paths, batch_size=settings.batch_size, num_workers=settings.num_workers, progress=progress)
    if settings.face_features is not None:
        faces = load_face_features(settings.face_features, images, dataset.root)
        face_unreadable = np.zeros(len(paths), bool)
    else:
        faces, face_unreadable = load_face_model(settings.face_model).extract_with_status(paths, progress=progress)
    readable = ~(unreadable_mask(reid_features) | face_unreadable)
    return DatasetFeatures(images, reid_features, faces, readable)


class TinyImagesWarning(UserWarning):
    """Some images are too small to hold a person (they are ranked; results.json lists them)."""


def _checked(features: DatasetFeatures, progress: bool) -> DatasetFeatures:
    """``features`` with :attr:`DatasetFeatures.too_small` set, and a warning if any."""
    readable = np.ones(len(features.images), bool) if features.readable is None else features.readable
    features.too_small = too_small(image_sizes(features.images["path"].tolist(), progress=progress)) & readable
    tiny = features.too_small_paths
    if tiny:
        shown = ", ".join(tiny[:5]) + (" ..." if len(tiny) > 5 else "")
        warnings.warn(f"{len(tiny)} image(s) are smaller than {MIN_PERSON_SIDE} px on a side, too small to hold a "
                      f"person; they are ranked like the others, as the protocol ranks every image, and listed in "
                      f"results.json (docs/METHOD.md): {shown}", TinyImagesWarning, stacklevel=3)
    return features


def _queries(dataset: Dataset) -> tuple[str, ...]:
    return tuple(dataset.query_roles)


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
    reference defaults (:data:`ENRICHMENT_DEFAULTS`) unless the settings override them.

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
        offset += len(query)
    if protocols:
        tables += _subset_protocols(dataset, features, enrichment, settings, configs, retrieve)
    table = pd.concat(tables, ignore_index=True)
    return Evaluation(_mark_not_evaluated(table), results, settings, features.unreadable_paths,
                      features.too_small_paths)


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
    tables, offset = [], 0
    for role in dataset.query_roles:
        query = features.feature_set(role, t)
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
        offset += len(query)
    return tables


#: Why a mode can leave every query unevaluated (the metric is then undefined, not 0).
_NO_MATCH = {"standard": "has a correct match in the gallery from another camera",
             "single-shot": "has a correct match in the gallery from another camera",
             "cameras-3-4": "has a correct match from another of the cameras 3 and 4",
             "CC": "has a correct match in the gallery in other clothes (clothes-changing)",
             "SC": "has a correct match in the gallery in the same clothes",
             "tracklet": "could be scored (too short or an unknown person)"}


def _mark_not_evaluated(table: pd.DataFrame) -> pd.DataFrame:
    """Rows where no query was evaluated: metrics NaN ("n/a" in the CSV), and a ``note``."""
    table = table.copy()
    none = (table["evaluated"] == 0).to_numpy()
    metrics = [c for c in ("top1", "top5", "top10", "top20", "mAP", "image_accuracy") if c in table]
    table.loc[none, metrics] = np.nan
    total = (table["evaluated"] + (table["skipped"] if "skipped" in table else 0)).astype(str)
    reason = table["mode"].map(_NO_MATCH).fillna("could be evaluated in this mode")
    table["note"] = np.where(none, "not evaluated: none of the " + total + " queries " + reason, "")
    return table


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
    street42 = dataset.name == "street42"
    common = dict(query_tracks=q_meta["track"].to_numpy(), gallery_pids=g_meta["pid"].to_numpy(),
                  query_pids=q_meta["pid"].to_numpy(), query_camids=q_meta["camid"].to_numpy(),
                  gallery_camids=g_meta["camid"].to_numpy(), progress=False)
    evaluation = dict(min_frames=STREET42_MIN_FRAMES, unknown_pid=STREET42_UNKNOWN_PID) if street42 else {}
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
    query = features.feature_set(role, t)
    enriched = None
    if enrichment is not None and len(enrichment.samples):
        offset = sum(len(features.rows(r)) for r in dataset.query_roles[:dataset.query_roles.index(role)])
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


def _run_key(dataset: Dataset, settings: Settings, names: Sequence[str]) -> str:
    """Fingerprint of what a saved step depends on: the settings ``names`` and the
    dataset's images (paths, sizes, mtimes), so a saved file never serves another run."""
    from ..core.cache import fingerprint

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
    csv, js = out / "enrichment.csv", out / "enrichment.json"
    atomic_write_text(csv, enrichment.samples.to_csv(index=False, float_format="%.6f"))
    summary = {k: (v.item() if hasattr(v, "item") else v) for k, v in enrichment.summary.items()}
    atomic_write_text(js, json.dumps({"key": _run_key(dataset, settings, _ENRICHMENT_SETTINGS), "summary": summary},
                                 indent=2, default=str))
    return [csv, js]


def load_enrichment(out_dir: str | os.PathLike, dataset: Dataset, settings: Settings) -> Enrichment | None:
    """The enrichment saved by :func:`save_enrichment` for this very run, else None
    (missing, unreadable, or made with other settings or images)."""
    out = Path(out_dir)
    try:
        saved = json.loads((out / "enrichment.json").read_text())
        if saved.get("key") != _run_key(dataset, settings, _ENRICHMENT_SETTINGS):
            return None
        samples = pd.read_csv(out / "enrichment.csv", keep_default_na=False, na_values=[""])
    except (OSError, ValueError, KeyError):
        return None
    if "track" in samples:
        samples["track"] = samples["track"].astype(str)
    return Enrichment(samples=samples, queries=pd.DataFrame(), summary=saved["summary"])


def enrichment_for(dataset: Dataset, features: DatasetFeatures, settings: Settings,
                   out_dir: str | os.PathLike) -> Enrichment:
    """The saved enrichment of this run if there is one, else :func:`run_enrichment` (saved)."""
    saved = load_enrichment(out_dir, dataset, settings)
    if saved is not None:
        return saved
    enrichment = run_enrichment(dataset, features, settings)
    save_enrichment(enrichment, out_dir, dataset, settings)
    return enrichment


METRIC_COLUMNS = ("top1", "top5", "top10", "top20", "mAP", "image_accuracy")


def percent(table: pd.DataFrame) -> pd.DataFrame:
    """A copy with the metric columns (fractions everywhere in ReFace) in %, for display."""
    out = table.copy()
    for col in METRIC_COLUMNS:
        if col in out:
            out[col] = 100 * out[col]
    return out



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
    """results.csv / results.json, the enrichment table, the CMC curves and the top-k
    lists (npz). With ``dataset``, results.json carries the run's key, so that
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
        payload["enrichment"] = {k: (v.item() if hasattr(v, "item") else v) for k, v in enrichment.summary.items()}
    if enrichment is not None:
        path = out / "enrichment.csv"
        atomic_write_text(path, enrichment.samples.to_csv(index=False, float_format="%.6f"))
        written.append(path)
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
    try:
        saved = json.loads((out / "results.json").read_text())
        if saved.get("key") != _run_key(dataset, settings, tuple(PARAMETERS)):
            return None
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
