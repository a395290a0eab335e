"""Your features: ReID or face features computed by another model, read from a ``.npz`` file.

Format (``numpy.savez``; :func:`save_features` writes it)::

    paths      str  (N,)      image paths: relative to the dataset root, or absolute
    features   float (N, D)   one feature row per path (any float or integer dtype)
    has_face   bool (N,)      face files only, optional: which rows hold a face (0/1 integers
                              are accepted); without it, a row has a face when it is not all zeros

Rows may come in any order and may cover more images than the dataset: they are matched
to the dataset's images by path (both sides made absolute, ``..`` and symbolic links
resolved; relative paths in the file are read from ``root``). Images of the file that the
dataset does not have are ignored with a :class:`FeatureFileWarning` (counted, first
few named); a dataset image without a row is an error.

Rows are L2-normalised on loading, as the method's cosine distances require (computed in
float64, returned float32; a row whose norm is already 1 within 1e-6 is kept as it is), so
raw and normalised files give the same arrays: bit for bit when the file was normalised in
float64 (or loaded here and saved again), to float32 rounding otherwise. Face rows
without a face become zeros (NaN/inf there are allowed and dropped).

Everything is checked first; each problem is a :class:`FeatureFileError` (a ``ValueError``)
naming the file: not an ``.npz`` or unreadable, missing keys, ``paths`` not strings,
``features`` not 2-D or not numeric, lengths that differ, ``has_face`` of the wrong length or
type, a path listed twice, NaN/inf values or an all-zero row (an image the model could not
read) in a row the dataset uses (the first such path named), dataset images without a row.

Extracting with torchreid's ``FeatureExtractor`` (any model it knows) and saving::

    import numpy as np
    from torchreid.utils import FeatureExtractor
    from reface_utils.data.datasets import load_dataset
    from reface_utils.method.feature_files import save_features
    dataset = load_dataset("ltcc", "/data/LTCC_ReID"); paths = dataset.images["path"].tolist()
    extract = FeatureExtractor(model_name="osnet_x1_0", model_path="osnet.pth", device="cuda")
    save_features("osnet_ltcc.npz", paths, np.concatenate([extract(paths[i:i + 256]).cpu().numpy()
                                                           for i in range(0, len(paths), 256)]))

then ``load_reid_features("osnet_ltcc.npz", dataset.images, dataset.root)``.
"""
from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..core.files import atomic_savez
from .features import FaceFeatures

__all__ = ["FeatureFileError", "FeatureFileWarning", "load_reid_features", "load_face_features",
           "save_features", "REQUIRED_KEYS", "UNIT_TOLERANCE"]

REQUIRED_KEYS = ("paths", "features")
#: A row whose L2 norm is within this of 1 is taken as normalised already (kept bit for bit).
UNIT_TOLERANCE = 1e-6
_SHOWN = 5


class FeatureFileError(ValueError):
    """A features file that cannot be used for a dataset (the message names the file)."""


class FeatureFileWarning(UserWarning):
    """Something in a features file was ignored (rows for images the dataset does not have)."""


# --------------------------------------------------------------------------- writing

def save_features(file: str | os.PathLike, paths: Sequence[str | os.PathLike], features: np.ndarray,
                  has_face: np.ndarray | Sequence[bool] | None = None) -> Path:
    """Write ``paths`` and their ``features`` (and, for faces, ``has_face``) as a features
    file, atomically (the name is used as given). Raises :class:`FeatureFileError` for
    inputs that could not be read back (shapes, lengths, dtypes)."""
    where = f"features file {file}"
    names = np.array([os.fspath(p) for p in paths], dtype=str)
    features = np.asarray(features)
    arrays = {"paths": names.reshape(-1), "features": features}
    _check_arrays(where, arrays["paths"], features)
    if has_face is not None:
        arrays["has_face"] = _check_has_face(where, np.asarray(has_face), len(names))
    return atomic_savez(file, arrays)


# --------------------------------------------------------------------------- reading

def load_reid_features(file: str | os.PathLike, images: pd.DataFrame | Sequence[str],
                       root: str | os.PathLike | None = None, *, allow_zero_rows: bool = False) -> np.ndarray:
    """ReID features of ``images`` (a table with a ``path`` column, or the paths) from
    ``file``: ``N x D`` float32, row i for image i, L2-normalised.

    ``root``: the folder the file's relative paths are relative to (``dataset.root``).
    ``allow_zero_rows``: keep all-zero rows (the pipeline's mark of an unreadable image)
    instead of refusing them.
    """
    paths, features, _ = _read(file, faces=False)
    where = f"features file {file}"
    idx = _match(where, paths, _image_paths(images), root)
    rows = features[idx]
    _check_values(where, rows, paths[idx], np.ones(len(idx), bool), zero_ok=allow_zero_rows)
    return _unit(rows)


def load_face_features(file: str | os.PathLike, images: pd.DataFrame | Sequence[str],
                       root: str | os.PathLike | None = None) -> FaceFeatures:
    """Face features of ``images`` from ``file`` as :class:`FaceFeatures`, row i for image i.

    ``embedding``: L2-normalised where ``has_face``, zeros elsewhere. The file's faces
    bypass the detection threshold: ``det_score`` is 1.0 where ``has_face`` (0 elsewhere),
    so ``thresholded(t)`` keeps them for any ``t <= 1``. ``bbox`` and ``kps`` are NaN (not
    known). ``has_face`` from the file, or, without that key, the rows that are not all zeros.
    """
    paths, features, has_face = _read(file, faces=True)
    where = f"features file {file}"
    idx = _match(where, paths, _image_paths(images), root)
    rows, face = features[idx], has_face[idx]
    _check_values(where, rows, paths[idx], face, zero_ok=False, face=True)
    emb = np.where(face[:, None], _unit(np.where(face[:, None], rows, 0)), np.float32(0)).astype(np.float32)
    n = len(idx)
    return FaceFeatures(has_face=face, det_score=face.astype(np.float32), bbox=np.full((n, 4), np.nan, np.float32),
                        kps=np.full((n, 5, 2), np.nan, np.float32), embedding=emb)


def _image_paths(images: pd.DataFrame | Sequence[str]) -> list[str]:
    if isinstance(images, pd.DataFrame):
        if "path" not in images:
            raise ValueError("images must be a table with a 'path' column (Dataset.images) or a list of paths")
        return [str(p) for p in images["path"]]
    return [os.fspath(p) for p in images]


def _read(file: str | os.PathLike, faces: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``paths`` (str), ``features`` (numeric 2-D) and ``has_face`` (bool; None-free) of a file."""
    where = f"features file {file}"
    path = Path(file).expanduser()
    if path.is_dir():
        raise FeatureFileError(f"{where} is a folder, not an .npz file")
    if not path.is_file():
        raise FeatureFileError(f"{where} does not exist")
    needed = REQUIRED_KEYS + (("has_face",) if faces else ())
    fmt = (f"an .npz with keys {', '.join(REQUIRED_KEYS)}" + (" (and optionally has_face)" if faces else "")
           + " (see reface_utils.method.feature_files; save_features writes one)")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise FeatureFileError(f"{where} is not {fmt} or is damaged ({type(err).__name__}: {err})") from err
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise FeatureFileError(f"{where} holds a single array (an .npy file), not {fmt}")
    with data:
        missing = [k for k in REQUIRED_KEYS if k not in data.files]
        if missing:
            raise FeatureFileError(f"{where} has no key(s) {', '.join(missing)}; it has "
                                   f"{', '.join(data.files) or 'no arrays'}, needed: {fmt}")
        arrays = {}
        for key in needed:
            if key not in data.files:
                continue
            try:
                arrays[key] = data[key]
            except ValueError as err:  # object arrays (pickles) are refused
                raise FeatureFileError(f"{where}: cannot read {key!r} without unpickling ({err}); store "
                                       f"{'strings: np.array(paths, dtype=str)' if key == 'paths' else 'numbers'}"
                                       ) from err
            except (OSError, EOFError, zipfile.BadZipFile) as err:
                raise FeatureFileError(f"{where}: {key!r} is damaged: {err}") from err
    paths = _check_arrays(where, arrays["paths"], arrays["features"])
    features = arrays["features"]
    if "has_face" in arrays:
        has_face = _check_has_face(where, arrays["has_face"], len(paths))
    else:
        has_face = np.any(features != 0, axis=1) if features.size else np.zeros(len(features), bool)
    return paths, features, has_face


def _check_arrays(where: str, paths: np.ndarray, features: np.ndarray) -> np.ndarray:
    if paths.dtype.kind == "S":
        try:
            paths = np.char.decode(paths, "utf-8")
        except UnicodeDecodeError as err:
            raise FeatureFileError(f"{where}: paths are bytes that are not UTF-8: {err}") from err
    if paths.dtype.kind != "U":
        raise FeatureFileError(f"{where}: paths must be strings, got dtype {paths.dtype}")
    if paths.ndim != 1:
        raise FeatureFileError(f"{where}: paths must be 1-D (one per row), got shape {paths.shape}")
    if features.dtype.kind not in "fiu":
        raise FeatureFileError(f"{where}: features must be numbers (float), got dtype {features.dtype}")
    if features.ndim != 2:
        raise FeatureFileError(f"{where}: features must be 2-D (N images x D), got shape {features.shape}")
    if len(paths) != len(features):
        raise FeatureFileError(f"{where}: {len(paths)} paths but {len(features)} feature rows")
    if features.shape[1] == 0:
        raise FeatureFileError(f"{where}: features have 0 columns (shape {features.shape})")
    empty = np.flatnonzero(np.char.str_len(paths) == 0) if len(paths) else []
    if len(empty):
        raise FeatureFileError(f"{where}: path {int(empty[0])} (0-based) is empty")
    return paths


def _check_has_face(where: str, has_face: np.ndarray, n: int) -> np.ndarray:
    if has_face.dtype.kind in "iu" and np.isin(has_face, (0, 1)).all():
        has_face = has_face.astype(bool)
    if has_face.dtype != bool:
        raise FeatureFileError(f"{where}: has_face must be booleans (or 0/1), got dtype {has_face.dtype}"
                               + (f" with values like {has_face.ravel()[:3].tolist()}" if has_face.size else ""))
    if has_face.shape != (n,):
        raise FeatureFileError(f"{where}: has_face must have one value per path ({n}), got shape {has_face.shape}")
    return has_face


def _key(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def _match(where: str, file_paths: np.ndarray, image_paths: list[str], root: str | os.PathLike | None) -> np.ndarray:
    """The file's row of every image, in image order (errors and warnings as documented)."""
    base = Path(root).expanduser().absolute() if root is not None else None
    names: list[str] = file_paths.tolist()
    keys: dict[str, int] = {}
    relative_without_root = []
    for i, p in enumerate(names):
        p = os.path.expanduser(p)
        if not os.path.isabs(p):
            if base is None:
                relative_without_root.append(p)
                continue
            p = os.path.join(base, p)
        k = _key(p)
        if k in keys:
            first = names[keys[k]]
            raise FeatureFileError(f"{where}: image {names[i]!r} is listed twice (rows {keys[k]} and {i}, "
                                   f"0-based{', as ' + repr(first) if first != names[i] else ''})")
        keys[k] = i
    if relative_without_root:
        raise FeatureFileError(f"{where}: relative paths such as {relative_without_root[0]!r} need root "
                               "(the dataset folder they are relative to)")
    idx = np.empty(len(image_paths), np.int64)
    missing = []
    for j, p in enumerate(image_paths):
        i = keys.get(_key(os.path.abspath(p)), -1)
        idx[j] = i
        if i < 0:
            missing.append(p)
    if missing:
        shown = ", ".join(missing[:_SHOWN]) + (f" (+{len(missing) - _SHOWN} more)" if len(missing) > _SHOWN else "")
        hint = ""
        if len(missing) == len(image_paths) and len(file_paths):
            hint = (f". No path matches: the file has e.g. {names[0]!r}"
                    + (f" (read from root {base})" if base is not None and not os.path.isabs(names[0]) else "")
                    + f", the dataset {image_paths[0]!r}; store paths relative to the dataset root")
        raise FeatureFileError(f"{where}: {len(missing)} of the dataset's {len(image_paths)} images have no "
                               f"features: {shown}{hint}")
    unused = np.ones(len(file_paths), bool)
    unused[idx] = False
    if unused.any():
        extra = file_paths[unused].tolist()
        shown = ", ".join(extra[:3]) + (" ..." if len(extra) > 3 else "")
        warnings.warn(f"{where}: {len(extra)} row(s) for images the dataset does not have are ignored: {shown}",
                      FeatureFileWarning, stacklevel=3)
    return idx


def _check_values(where: str, rows: np.ndarray, paths: np.ndarray, used: np.ndarray, zero_ok: bool,
                  face: bool = False) -> None:
    """NaN/inf and all-zero rows, among the rows ``used`` (faces: where has_face)."""
    if rows.dtype.kind == "f":
        bad = used & ~np.isfinite(rows).all(axis=1)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise FeatureFileError(f"{where}: {int(bad.sum())} row(s) hold NaN or inf, the first for {paths[first]}")
    if not zero_ok:
        zero = used & ~np.any(rows != 0, axis=1)
        if zero.any():
            first = int(np.flatnonzero(zero)[0])
            what = "marked has_face but all zeros" if face else "all zeros"
            raise FeatureFileError(f"{where}: {int(zero.sum())} row(s) are {what} (an unreadable image?), the first "
                                   f"for {paths[first]}")


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm in float64, returned float32; rows already of norm 1 (within
    :data:`UNIT_TOLERANCE`) are kept as they are, all-zero rows stay zero."""
    x64 = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x64, axis=1, keepdims=True)
    keep = np.abs(norm - 1.0) <= UNIT_TOLERANCE
    scaled = (x64 / np.maximum(norm, 1e-300)).astype(np.float32)
    return np.where(keep, np.asarray(x, dtype=np.float32), scaled)
