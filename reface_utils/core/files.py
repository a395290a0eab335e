"""Files: the package's one SHA-256 of a file and its one way of writing atomically.

Every file ReFace writes (cache chunks, lock files, results, generated datasets) is written
to a temporary sibling and renamed into place (``os.replace`` is atomic on one file
system), so an interrupted run (even ``kill -9``) never leaves a half-written file where a
later run would read it. What is written gets the permissions the umask gives any new
file or folder (``tempfile`` makes them private to their owner), so a shared
``REFACE_HOME`` or results folder stays readable to the group; and a failed write (a full
disk, a read-only folder) raises an ``OSError`` that names the file being written.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Callable, Mapping

import numpy as np

__all__ = ["sha256_file", "sha256_file_cached", "atomic_write", "atomic_write_text", "atomic_savez",
           "atomic_folder", "current_umask", "apply_umask", "write_error"]


def current_umask() -> int:
    """This process's umask, read without changing it (Linux: /proc; elsewhere the
    classic set-and-restore, which is brief)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Give ``path`` the mode a plain ``open``/``mkdir`` would have given it (0666 or
    0777 less the umask); for files and folders made by ``tempfile`` (0600/0700)."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


def write_error(err: OSError, path: str | os.PathLike) -> OSError:
    """``err`` again, naming ``path`` (an ``OSError`` from a write names no file of ours:
    ``[Errno 28] No space left on device``)."""
    if err.filename is not None and str(path) in str(err.filename):
        return err
    hint = " (the disk is full: free space or choose another results_root/REFACE_HOME)" \
        if err.errno == errno.ENOSPC else ""
    out = type(err)(err.errno, f"{err.strerror or err} while writing {path}{hint}")
    out.filename = str(path)
    return out


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``chunk``-byte blocks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=32)
def _sha256_of_version(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # part of the lru key only: an edited file is hashed again
    return sha256_file(path)


def sha256_file_cached(path: str | os.PathLike) -> str:
    """:func:`sha256_file`, remembered for this process per file version (real path, size,
    modification time): for hashes taken on every call, such as the face models' cache
    keys, whose ONNX files (166 MB for buffalo_l's recogniser) would be read again each time."""
    st = os.stat(path)
    return _sha256_of_version(os.path.realpath(path), st.st_size, st.st_mtime_ns)


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], *, mode: str = "wb") -> Path:
    """Create or replace ``path`` atomically: ``write(f)`` fills a temporary file opened with
    ``mode`` in the same folder, which is renamed onto ``path``; on any error the temporary
    file is removed and ``path`` is untouched. The folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise write_error(err, path) from err
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        apply_umask(tmp)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(err, path) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode()))


def atomic_savez(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], *, compressed: bool = False) -> Path:
    """``np.savez`` (or ``savez_compressed``) to ``path`` atomically; ``path`` is used as given
    (no ``.npz`` is appended)."""
    compression = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED

    # np.savez's own format (one .npy member per array), but with the archive closed on an
    # error too: np.savez leaves it open, and its later clean-up writes to a closed file.
    def write(f: IO) -> None:
        with zipfile.ZipFile(f, mode="w", compression=compression, allowZip64=True) as archive:
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)

    return atomic_write(path, write)


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
        apply_umask(tmp, folder=True)
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
