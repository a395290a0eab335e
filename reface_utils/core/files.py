"""Files: the package's one SHA-256 of a file and its one way of writing atomically.

Every file ReFace writes (cache chunks, lock files, results, generated datasets) is written
to a temporary sibling and renamed into place (``os.replace`` is atomic on one file
system), so an interrupted run (even ``kill -9``) never leaves a half-written file where a
later run would read it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Callable, Mapping

import numpy as np

__all__ = ["sha256_file", "atomic_write", "atomic_write_text", "atomic_write_bytes", "atomic_savez",
           "atomic_folder"]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``chunk``-byte blocks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], *, mode: str = "wb") -> Path:
    """Create or replace ``path`` atomically: ``write(f)`` fills a temporary file opened with
    ``mode`` in the same folder, which is renamed onto ``path``; on any error the temporary
    file is removed and ``path`` is untouched. The folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_savez(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], *, compressed: bool = False) -> Path:
    """``np.savez`` (or ``savez_compressed``) to ``path`` atomically; ``path`` is used as given
    (no ``.npz`` is appended)."""
    save = np.savez_compressed if compressed else np.savez
    return atomic_write(path, lambda f: save(f, **arrays))


def atomic_folder(folder: str | os.PathLike, write: Callable[[Path], None], *,
                  is_complete: Callable[[Path], bool], force: bool = False) -> Path:
    """Create a folder atomically: ``write(tmp)`` fills a temporary sibling that is renamed
    into place, so a crash never leaves a half-written folder. A folder for which
    ``is_complete(folder)`` holds is reused unless ``force``; when another process finishes
    the same folder first, its result is kept."""
    folder = Path(folder)
    if not force and is_complete(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write(tmp)
        if folder.exists():
            if not force and is_complete(folder):  # another process finished first
                return folder
            shutil.rmtree(folder)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not is_complete(folder):  # not a concurrent writer that won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
