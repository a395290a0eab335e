"""A generated dataset folder: named after the version of the code that drew it, built
atomically, and reused only when complete.

Every generator (the demo, :mod:`reface_utils.data.demo_layouts`,
:mod:`reface_utils.data.demo_video`) names its cached folder after
:func:`generator_version`, so an edited generator never serves files drawn by an older
one; :func:`build_folder` writes a folder whose :data:`MANIFEST_NAME` lists its files.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import pandas as pd

from ...core.files import atomic_folder

__all__ = ["MANIFEST_NAME", "generator_version", "build_folder"]

#: The CSV in every generated folder: one row per file (column ``file``), and more.
MANIFEST_NAME = "demo_manifest.csv"


def _source_bytes(source: Path) -> bytes:
    """A file's bytes; for a folder (a generator split into modules), every ``.py`` file
    below it with its relative path, in path order: a module added, renamed or edited
    changes the version too."""
    if not source.is_dir():
        return source.read_bytes()
    files = sorted(source.rglob("*.py"), key=lambda p: p.relative_to(source).as_posix())
    return b"".join(p.relative_to(source).as_posix().encode() + b"\0" + p.read_bytes() for p in files)


def generator_version(source: str | os.PathLike, *depends_on: str) -> str:
    """``"v1-"`` + 10 hex digits of the SHA-256 of a generator's source (a file, or a folder:
    all its Python files) and the versions it builds on. Cached generated folders are named
    after it, so an edited generator never serves files drawn by an older one (seen: stale
    demo images, shifted metrics)."""
    return "v1-" + hashlib.sha256(_source_bytes(Path(source)) + "".join(depends_on).encode()).hexdigest()[:10]


def _is_complete(folder: Path) -> bool:
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        return False
    try:
        files = pd.read_csv(manifest)["file"]
    except Exception:  # a truncated or foreign manifest: regenerate
        return False
    return all((folder / f).is_file() for f in files)


def build_folder(folder: Path, write: Callable[[Path], None], *, force: bool = False) -> Path:
    """Generate a dataset folder atomically: ``write(tmp)`` fills a temporary sibling that
    is renamed into place, so a crash never leaves a half-written dataset; a complete
    folder (every file of its manifest present) is reused unless ``force``."""
    return atomic_folder(folder, write, is_complete=_is_complete, force=force)
