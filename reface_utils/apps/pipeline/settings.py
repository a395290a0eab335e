"""Every parameter of a pipeline run: the per-dataset and per-model defaults, the one check
(:func:`check_parameters`, which loads plugins first), and :class:`Settings`.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ...core.checks import choice, flag, integer, notebook_values, number, refuse_unknown, text
from ...core.plugins import load_entry_point_plugins, load_plugins
from ...core.paths import results_dir
from ...data.datasets import (BUILT_IN_SPECS, DatasetSpec, EnrichmentRules, available_datasets, canonical_name,
                              dataset_spec)
from ...models.face import face_model_thresholds
from ...models.names import face_model_name, reid_model_name


#: Face thresholds of the built-in backends (the face registry holds them, with those of
#: registered models: ``reface_utils.models.face.face_model_thresholds``).
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {name: face_model_thresholds(name) for name in ("insightface", "sface")}


#: The paper's models: the face model every real dataset runs with by default, and CAL.
PAPER_FACE_MODELS = ("insightface", "buffalo_l")


PAPER_REID_MODEL = "cal"


#: ``reid_model`` value that reads the ReID features from ``reid_features`` (your model's).
FEATURES_MODEL = "features"


#: The offline models: the defaults of a dataset whose spec says ``offline_models`` (the demo).
OFFLINE_FACE_MODEL, OFFLINE_REID_MODEL = "sface", "mobilenetv2-imagenet"


#: Built-in datasets whose defaults are the offline models (no download): from their specs.
OFFLINE_DATASETS = tuple(spec.name for spec in BUILT_IN_SPECS if spec.offline_models)
#: The dataset of a run that names none: the offline one (the generated demo: no download).
DEFAULT_DATASET = OFFLINE_DATASETS[0]


#: The reference's enrichment settings per built-in dataset, from their specs. Its ``--CC``
#: flag defaults to off and its only published command (LTCC) turns it on; PRCC and LaST
#: have no clothes labels in the reference's enrichment code (camera exclusion only),
#: 42Street has neither cameras nor clothes; only CCVID's gallery builder votes per tracklet.
ENRICHMENT_DEFAULTS: dict[str, EnrichmentRules] = {
    spec.name: spec.enrichment for spec in BUILT_IN_SPECS if spec.enrichment is not None}


def _spec(dataset: str) -> DatasetSpec | None:
    try:
        return dataset_spec(dataset)
    except ValueError:  # not registered (e.g. a plugin's, not loaded in this process)
        return None


def _paper_checkpoint(dataset: str) -> str | None:
    """The dataset's CAL checkpoint (its spec's), None where none is published or the
    dataset is not registered in this process."""
    spec = _spec(dataset)
    return spec.reid_checkpoint if spec is not None else None


def enrichment_rules(dataset: str) -> EnrichmentRules | None:
    """The enrichment rules of a dataset, from its spec: the reference's for the built-in
    ones, those a registered dataset brought (``register_dataset(..., enrichment={...})``),
    else None.

    None (a manifest, or a registered dataset without rules): the settings' own values, and
    where those are None the documented defaults, decided from the data: the clothes
    filter on when every image has a clothes label (as LTCC's published command), a vote
    per tracklet for video datasets.
    """
    spec = _spec(dataset)
    return spec.enrichment if spec is not None else None


def enrichment_defaults_table() -> pd.DataFrame:
    """The per-dataset enrichment defaults, one row per registered dataset with rules of its own."""
    specs = [dataset_spec(name) for name in available_datasets()]
    rows = [{"dataset": spec.name, "clothes_changing": spec.enrichment.clothes_changing,
             "vote": "per tracklet" if spec.enrichment.vote_by_track else "per image/frame",
             "extra_data": "when present" if spec.extra_data else "-", "why": spec.enrichment.why}
            for spec in specs if spec.enrichment is not None]
    return pd.DataFrame(rows, columns=["dataset", "clothes_changing", "vote", "extra_data", "why"])


@dataclass
class Settings:
    """Every parameter of a run (the notebooks' parameters cell, checked)."""

    dataset: str = DEFAULT_DATASET
    data_root: str | None = None
    reid_model: str | None = None        # None: "mobilenetv2-imagenet" for the demo (offline_models), else "cal"
    reid_checkpoint: str | None = None   # None: the dataset's CAL checkpoint (its spec's reid_checkpoint)
    face_model: str | None = None        # None: the paper's (insightface, buffalo_l); sface for the demo
    alpha: float = 0.75
    det_threshold: float | None = None         # faces at inference (None: DEFAULT_THRESHOLDS[face_model])
    enrich_det_threshold: float | None = None  # faces when enriching (None: det_threshold if given, else the default)
    sim_threshold: float | None = None
    rank_diff: float = 0.0
    clothes_changing: bool | None = None # None: the dataset's enrichment rules (enrichment_rules)
    vote_by_track: bool | None = None    # None: the dataset's enrichment rules (enrichment_rules)
    extra_data: bool | None = None       # extra-data folder (42Street's); None: used when present
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
        # the one check of every value (check_parameters' too), then the defaults they leave open
        for name, value in _checked_values({f.name: getattr(self, f.name) for f in fields(self)}).items():
            setattr(self, name, value)
        spec = self.spec
        if self.face_model is None:
            self.face_model = OFFLINE_FACE_MODEL if spec.offline_models else PAPER_FACE_MODELS[0]
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
        protocol = spec.enrichment
        if protocol is not None:  # else: decided from the data (enrichment_rules' docstring)
            if self.clothes_changing is None:
                self.clothes_changing = protocol.clothes_changing
            if self.vote_by_track is None:
                self.vote_by_track = protocol.vote_by_track
        if self.extra_data and not spec.extra_data:
            having = [dataset_spec(name).title for name in available_datasets() if dataset_spec(name).extra_data]
            raise ValueError(f"extra_data=True: only {' and '.join(having) or 'a dataset with extra data'} "
                             f"{'has' if len(having) < 2 else 'have'} an extra-data folder, not {self.dataset!r}")
        if self.reid_model is None:
            self.reid_model = OFFLINE_REID_MODEL if spec.offline_models else PAPER_REID_MODEL
        if self.reid_model == PAPER_REID_MODEL and self.reid_checkpoint is None:
            # None stays None where no CAL checkpoint is published (VC-Clothes, 42Street):
            # check_requirements then says what to pass, before any work
            self.reid_checkpoint = spec.reid_checkpoint
        if (self.reid_model == FEATURES_MODEL) != (self.reid_features is not None):
            raise ValueError("reid_model='features' and reid_features=<a .npz of paths and features> go together "
                             f"(got reid_model={self.reid_model!r}, reid_features={self.reid_features!r})")

    @property
    def spec(self) -> DatasetSpec:
        """Everything the project knows about the dataset (:func:`reface_utils.data.datasets.dataset_spec`)."""
        return dataset_spec(self.dataset)

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
        elif self.reid_checkpoint != (paper_checkpoint := _paper_checkpoint(self.dataset)):
            differs.append(f"ReID checkpoint {self.reid_checkpoint} (paper: {paper_checkpoint or 'none registered'})")
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




def check_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Every notebook parameter checked (known name, type, range, spelling) before any work.

    Returns the parameters with names normalised (``dataset="LTCC"`` -> ``"ltcc"``,
    ``"42street"`` -> ``"street42"``; ``face_model``/``enrichment`` lower-cased; whole
    floats for integers). Any problem is one ``ValueError`` naming the parameter, the
    value and what is allowed (``TypeError`` for unknown names, with the closest known
    one). :class:`Settings` runs the same value check (one function) when it is built.
    """
    _known_names_and_plugins(parameters)
    return _checked_values(parameters)


def _known_names_and_plugins(parameters: Mapping[str, Any]) -> None:
    """Plugins first (they register the datasets and models the other parameters may name),
    then every name must be a parameter (a TypeError with the closest name otherwise)."""
    load_entry_point_plugins()
    load_plugins(_plugins(parameters.get("plugins")))
    refuse_unknown(parameters, list(PARAMETERS))


def _checked_values(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The one check of every value (type, range, spelling; names normalised)."""
    out = dict(parameters)
    checks = {
        "plugins": _plugins,
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
        "amp": lambda v: flag("amp", v),
        "rerank": lambda v: flag("rerank", v),
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


def _model_hint(parameter: str) -> str:
    """What the pipeline adds to an unknown model name's error (models.names words the rest)."""
    return f" (in a plugin: the `plugins` parameter) or leave {parameter}=None for the dataset's default"


def _face_model_name(value: Any) -> str:
    return face_model_name(value, hint=_model_hint("face_model"))


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


def _dataset_name(value: Any) -> str:
    given = text("dataset", value)
    try:
        return canonical_name(given)
    except ValueError as err:
        raise ValueError(f"parameter dataset: {err}") from None


def _reid_model_name(value: Any) -> str | None:
    if value is None:
        return None
    return reid_model_name(value, also={FEATURES_MODEL: "your model's features from reid_features"},
                           hint=_model_hint("reid_model"))


def _device(value: Any) -> str:
    given = text("device", value).lower()
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", given):
        raise ValueError(f"parameter device must be 'auto', 'cpu', 'cuda', 'cuda:<n>' or 'mps', got {value!r}")
    return given


def settings_for(**parameters: Any) -> Settings:
    """Settings from notebook parameters: plugins loaded and names checked here, every value
    checked once, by :class:`Settings` itself."""
    _known_names_and_plugins(parameters)
    return Settings(**parameters)


def settings_from_namespace(namespace: Mapping[str, Any], *, own: Sequence[str] = ()) -> Settings:
    """Settings from a notebook's variables (``globals()`` after the parameters cell).

    Every plain value (None, bool, number, string) whose name is public is taken as a
    parameter, so a misspelt papermill ``-p aplha 0.5`` (injected as a variable) stops the
    run here instead of being ignored. ``own``: the notebook's own extra parameters.
    """
    return settings_for(**notebook_values(namespace, own=own))


def notebook_parameters(settings: Settings) -> dict[str, Any]:
    """The parameters that reproduce ``settings`` in another notebook (papermill -p)."""
    return {name: getattr(settings, name) for name in PARAMETERS}
