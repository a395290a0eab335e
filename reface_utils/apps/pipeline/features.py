"""What a run needs and the features it computes: requirements (weights, face packs, the
dataset), ReID and face features of every image (cached; Ray; your feature files).
"""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from ...core import checkpoints
from ...core.image_sizes import MIN_PERSON_SIDE, image_sizes, too_small
from ..cluster import check_engine
from ...data.datasets import BUILT_IN_SPECS, Dataset, DatasetError, dataset_spec, load_dataset
from ...method.features import FaceFeatures, unreadable_mask
from ...models.face import load_face_model
from ...models.reid import load_reid_model
from ...method.retrieval import FeatureSet
from .settings import FEATURES_MODEL, PAPER_FACE_MODELS, Settings


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


def _published_checkpoints() -> str:
    """The registry names of the datasets' CAL checkpoints (from their specs)."""
    names = [spec.reid_checkpoint for spec in BUILT_IN_SPECS if spec.reid_checkpoint]
    return " or ".join(names[:2]) if names else "cal_<dataset>"


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
                               f".pth.tar you trained, or a registry name such as {_published_checkpoints()}>, "
                               "or choose reid_model='mobilenetv2-imagenet' (offline, not the paper's setting)"})
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
                     "detail": f"{exc}\n  {dataset_spec(settings.dataset).instructions}"})
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
        from ..cluster import FeatureModelSpec, connect, face_features_ray, reid_features_ray
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
    from ...method.feature_files import load_face_features, load_reid_features

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


def query_sets(dataset: Dataset, features: DatasetFeatures,
               det_threshold: float) -> Iterator[tuple[str, FeatureSet, int]]:
    """Each query set (PRCC: same and different clothes; one elsewhere) with its features and
    the row where it starts among all the query sets together -- the enrichment's query
    sources, whose ``query_index`` counts the sets one after the other."""
    offset = 0
    for role in dataset.query_roles:
        query = features.feature_set(role, det_threshold)
        yield role, query, offset
        offset += len(query)

