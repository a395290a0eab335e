"""On-disk feature cache: chunked, atomic, and never stale.

Extracting face and ReID features for a 100k-image dataset takes hours on a CPU, so
features are cached. The cache key covers everything that changes the output:

- the model key (name, version or weights hash, every parameter that matters),
- the ordered list of image paths with each file's size and mtime.

A changed image list, an edited file or another model therefore lands in a new cache
entry: stale features are never reused silently. Within an entry, features are stored
in chunks of ``chunk_size`` images, each an ``.npz`` written to a temporary file and
renamed into place (``os.replace`` is atomic), so an interrupted run (even ``kill -9``)
resumes at the first missing chunk and a finished run is never recomputed.

A chunk that cannot be served (truncated or corrupt file, wrong row count, other arrays
than its neighbours, NaN or Inf where the extractor never writes them) is recomputed and
rewritten, with a :class:`CacheChunkWarning` naming the file and what was wrong.

A boolean array called ``unreadable`` marks images the extractor could not read. Those
rows are not final: they are read again on every call (a permission fixed, a file
restored), and the chunk is rewritten when they can be read now.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np

from .files import atomic_savez, atomic_write_text
from .images import ImageLike
from .paths import features_cache_dir
from .progress import progress_bar

__all__ = ["cached_features", "cache_entry_dir", "chunk_file", "fingerprint", "DEFAULT", "CacheChunkWarning",
           "UNREADABLE"]

class _DefaultCacheDir:
    """The type of :data:`DEFAULT` (a sentinel no path or string can be mistaken for)."""

    def __repr__(self) -> str:
        return "<REFACE_HOME/features>"


#: ``cache_dir``'s default: ``paths.features_cache_dir()``, resolved at call time (so
#: REFACE_HOME set after import is honoured). A folder really called "default" is a folder.
DEFAULT: Any = _DefaultCacheDir()

ComputeFn = Callable[[Sequence[ImageLike], Any], Mapping[str, np.ndarray]]

#: Name of the optional boolean array that marks rows of images that could not be read.
UNREADABLE = "unreadable"


class CacheChunkWarning(UserWarning):
    """A cached chunk could not be used and is being recomputed."""


def fingerprint(model_key: Mapping[str, Any], images: Sequence[ImageLike]) -> str:
    """SHA-256 over the model key and the ordered (path, size, mtime) of every image."""
    h = hashlib.sha256()
    h.update(json.dumps(model_key, sort_keys=True, default=str).encode())
    for image in images:
        path = os.fspath(image)
        try:
            st = os.stat(path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"  # unreadable files are part of the key too
        h.update(f"\0{path}\0{stamp}".encode())
    return h.hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


def cache_entry_dir(cache_dir: str | os.PathLike, model_key: Mapping[str, Any],
                    images: Sequence[ImageLike]) -> Path:
    """The folder one (model, image list) pair is cached in."""
    name = _slug(str(model_key.get("name", "model")))
    return Path(cache_dir) / name / fingerprint(model_key, images)[:24]


def chunk_file(entry: str | os.PathLike, number: int, chunk_size: int) -> Path:
    """The file of chunk ``number`` (images ``number * chunk_size ...``) of a cache entry;
    the Ray engine (``cluster.py``) writes the same files, so either run resumes the other."""
    return Path(entry) / f"chunk_{number:05d}_{chunk_size}.npz"


def _non_finite(arrays: Mapping[str, np.ndarray], allow_nan: Collection[str]) -> list[str]:
    """Names of float arrays (not in ``allow_nan``) holding NaN or Inf."""
    return [k for k, a in arrays.items()
            if k not in allow_nan and np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all()]


def _load_chunk(path: Path, expected_rows: int, keys: Collection[str] | None,
                allow_nan: Collection[str]) -> tuple[dict[str, np.ndarray] | None, str]:
    """A finished chunk, or None and why it cannot be served ("" when it does not exist)."""
    if not path.is_file():
        return None, ""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as err:  # BadZipFile, zlib.error, EOFError, ValueError, OSError ...
        return None, f"unreadable ({type(err).__name__}: {str(err)[:120]})"
    if not arrays:
        return None, "it holds no arrays"
    rows = {k: len(a) if a.ndim else 0 for k, a in arrays.items()}
    if any(n != expected_rows for n in rows.values()):
        return None, f"it holds {rows} rows, expected {expected_rows}"
    if keys is not None and set(arrays) != set(keys):
        return None, f"it holds the arrays {sorted(arrays)}, the other chunks {sorted(keys)}"
    bad = _non_finite(arrays, allow_nan)
    if bad:
        return None, f"it holds NaN or Inf in {bad}"
    if UNREADABLE in arrays and arrays[UNREADABLE].dtype != bool:
        return None, f"its {UNREADABLE!r} array is not boolean"
    return arrays, ""


def _computed(compute: ComputeFn, part: Sequence[ImageLike], bar: Any, desc: str,
              allow_nan: Collection[str]) -> dict[str, np.ndarray]:
    """``compute(part, bar)`` with its rows checked: right count, no NaN/Inf where not allowed."""
    arrays = {k: np.asarray(v) for k, v in compute(part, bar).items()}
    bad = {k: len(v) for k, v in arrays.items() if len(v) != len(part)}
    if bad:
        raise ValueError(f"{desc}: compute returned {bad} rows for a chunk of {len(part)} images")
    for key in _non_finite(arrays, allow_nan):
        values = arrays[key].reshape(len(part), -1)
        rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
        shown = ", ".join(os.fspath(part[i]) if not isinstance(part[i], np.ndarray) else f"array #{i}"
                          for i in rows[:3])
        raise ValueError(f"{desc}: the model returned NaN or Inf {key!r} for {len(rows)} image(s) "
                         f"(e.g. {shown}); its weights or its input pre-processing are broken. "
                         "Nothing was cached.")
    return arrays


def _retry_unreadable(arrays: dict[str, np.ndarray], part: Sequence[ImageLike], compute: ComputeFn,
                      desc: str, allow_nan: Collection[str]) -> bool:
    """Compute the rows marked unreadable again, in place; True if any of them is readable now."""
    flags = arrays.get(UNREADABLE)
    if flags is None or not flags.any():
        return False
    rows = np.flatnonzero(flags)
    fresh = _computed(compute, [part[i] for i in rows], None, desc, allow_nan)
    if set(fresh) != set(arrays):
        return False
    now_read = ~fresh[UNREADABLE].astype(bool)
    if not now_read.any():
        return False
    for key, values in fresh.items():
        arrays[key] = arrays[key].copy()
        arrays[key][rows[now_read]] = values[now_read]
    return True


def _concat(chunks: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not chunks:
        return {}
    keys = list(chunks[0].keys())
    return {k: np.concatenate([c[k] for c in chunks], axis=0) for k in keys}


def cached_features(model_key: Mapping[str, Any], images: Sequence[ImageLike],
                    compute: ComputeFn, *, cache_dir: str | os.PathLike | None = DEFAULT,
                    chunk_size: int = 1024, desc: str = "features",
                    progress: bool = True, allow_nan: Collection[str] = ()) -> dict[str, np.ndarray]:
    """Compute ``compute(chunk, bar)`` over ``images`` in chunks, caching each chunk.

    ``compute`` returns a mapping of arrays with ``len(chunk)`` rows and may call
    ``bar.update(n)`` as it goes (the bar is advanced for it otherwise). The result
    is the row-wise concatenation over all chunks, in image order. Float arrays must be
    finite except those named in ``allow_nan`` (e.g. the box of "no face"): NaN or Inf
    elsewhere is an error naming the images, and never cached. A boolean ``unreadable``
    array marks images that could not be read; they are retried on every call.

    Caching is off when ``cache_dir`` is None or when any image is an in-memory array
    (arrays have no stable identity to key on).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    images = list(images)
    n = len(images)
    use_cache = cache_dir is not None and not any(isinstance(im, np.ndarray) for im in images)
    entry = None
    if use_cache:
        root = features_cache_dir() if cache_dir is DEFAULT else Path(cache_dir)
        entry = cache_entry_dir(root, model_key, images)
        try:
            entry.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OSError(f"{desc}: cannot create the feature cache folder {entry}: {err.strerror or err}. "
                          "Set REFACE_HOME to a writable folder (or pass cache_dir=None).") from err
        manifest = entry / "manifest.json"
        if not manifest.exists():
            atomic_write_text(manifest, json.dumps(
                {"model_key": model_key, "num_images": n, "chunk_size": chunk_size,
                 "first_image": os.fspath(images[0]) if n else None},
                indent=2, sort_keys=True, default=str))

    if n == 0:  # let the extractor say what an empty result looks like (0 x D arrays)
        return {k: np.asarray(v) for k, v in compute([], None).items()}

    chunks: list[Mapping[str, np.ndarray]] = []
    keys: Collection[str] | None = None
    with progress_bar(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for number, start in enumerate(range(0, n, chunk_size)):
            part = images[start:start + chunk_size]
            path = chunk_file(entry, number, chunk_size) if entry is not None else None
            arrays, problem = _load_chunk(path, len(part), keys, allow_nan) if path is not None else (None, "")
            if problem:
                warnings.warn(f"{desc}: the cached chunk {path} cannot be used ({problem}); "
                              "recomputing it", CacheChunkWarning, stacklevel=2)
            if arrays is None:
                before = bar.n
                arrays = _computed(compute, part, bar, desc, allow_nan)
                bar.update(len(part) - (bar.n - before))
                if path is not None:
                    atomic_savez(path, arrays)
            else:
                if _retry_unreadable(arrays, part, compute, desc, allow_nan) and path is not None:
                    atomic_savez(path, arrays)
                bar.update(len(part))
            keys = keys if keys is not None else set(arrays)
            chunks.append(arrays)
    return _concat(chunks)
