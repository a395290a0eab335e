"""On-disk feature cache: chunked, atomic, and never stale.

Extracting face and ReID features for a 100k-image dataset takes hours on a CPU, so
features are cached. The cache key covers everything that changes the output:

- the model key (name, version or weights hash, every parameter that matters),
- the ordered list of image paths with each file's size and mtime.

A changed image list, an edited file or another model therefore lands in a new cache
entry: stale features are never reused silently. Within an entry, features are stored
in chunks of ``chunk_size`` images, each an ``.npz`` written to a temporary file and
renamed into place (``os.replace`` is atomic), so an interrupted run resumes at the
first missing chunk and a finished run is never recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from .images import ImageLike
from .paths import features_cache_dir

__all__ = ["cached_features", "cache_entry_dir", "chunk_file", "fingerprint", "DEFAULT"]

#: Sentinel: use ``paths.features_cache_dir()`` (resolved at call time, so REFACE_HOME
#: set after import is honoured).
DEFAULT: Any = "default"

ComputeFn = Callable[[Sequence[ImageLike], Any], Mapping[str, np.ndarray]]


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


def _atomic_savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_chunk(path: Path, expected_rows: int) -> dict[str, np.ndarray] | None:
    """A finished chunk, or None if it is missing or unreadable (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError):
        return None
    if not arrays or any(len(a) != expected_rows for a in arrays.values()):
        return None
    return arrays


def _concat(chunks: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not chunks:
        return {}
    keys = list(chunks[0].keys())
    return {k: np.concatenate([c[k] for c in chunks], axis=0) for k in keys}


def cached_features(model_key: Mapping[str, Any], images: Sequence[ImageLike],
                    compute: ComputeFn, *, cache_dir: str | os.PathLike | None = DEFAULT,
                    chunk_size: int = 1024, desc: str = "features",
                    progress: bool = True) -> dict[str, np.ndarray]:
    """Compute ``compute(chunk, bar)`` over ``images`` in chunks, caching each chunk.

    ``compute`` returns a mapping of arrays with ``len(chunk)`` rows and may call
    ``bar.update(n)`` as it goes (the bar is advanced for it otherwise). The result
    is the row-wise concatenation over all chunks, in image order.

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
        entry.mkdir(parents=True, exist_ok=True)
        manifest = entry / "manifest.json"
        if not manifest.exists():
            _atomic_write_text(manifest, json.dumps(
                {"model_key": model_key, "num_images": n, "chunk_size": chunk_size,
                 "first_image": os.fspath(images[0]) if n else None},
                indent=2, sort_keys=True, default=str))

    if n == 0:  # let the extractor say what an empty result looks like (0 x D arrays)
        return {k: np.asarray(v) for k, v in compute([], None).items()}

    chunks: list[Mapping[str, np.ndarray]] = []
    with tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for number, start in enumerate(range(0, n, chunk_size)):
            part = images[start:start + chunk_size]
            path = chunk_file(entry, number, chunk_size) if entry is not None else None
            arrays = _load_chunk(path, len(part)) if path is not None else None
            if arrays is None:
                before = bar.n
                arrays = {k: np.asarray(v) for k, v in compute(part, bar).items()}
                bad = {k: len(v) for k, v in arrays.items() if len(v) != len(part)}
                if bad:
                    raise ValueError(f"{desc}: compute returned {bad} rows for a chunk of {len(part)} images")
                bar.update(len(part) - (bar.n - before))
                if path is not None:
                    _atomic_savez(path, arrays)
            else:
                bar.update(len(part))
            chunks.append(arrays)
    return _concat(chunks)
