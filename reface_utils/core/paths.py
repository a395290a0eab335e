"""Where ReFace keeps things on disk: one configurable home, explicit everywhere else.

``REFACE_HOME`` (default ``~/.cache/reface``) holds downloaded weights, the generated
demo dataset and the feature cache. Results go to ``results/<dataset>/`` under the
current working directory unless a caller passes another folder.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["reface_home", "weights_dir", "features_cache_dir", "demo_root", "project_root", "results_dir"]


def reface_home() -> Path:
    """The root of everything ReFace caches (``$REFACE_HOME`` or ``~/.cache/reface``)."""
    env = os.environ.get("REFACE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "reface"


def weights_dir() -> Path:
    return reface_home() / "weights"


def features_cache_dir() -> Path:
    return reface_home() / "features"


def demo_root() -> Path:
    return reface_home() / "datasets"


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The ReFace checkout containing ``start`` (default: the working directory), or
    ``start`` itself outside a checkout. Notebooks run from ``notebooks/`` in Jupyter and
    from the repository root under papermill; results land in one place either way."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "reface_utils").is_dir() and (folder / "pyproject.toml").is_file():
            return folder
    return here


def results_dir(name: str, base: str | os.PathLike | None = None) -> Path:
    """Where a run's results go: ``<base or <checkout>/results>/<name>``, the one notion of
    the results folder (the pipeline's ``Settings.results_dir``, custom videos, the
    notebooks). Not created here: the writers create it."""
    return (Path(base) if base else project_root() / "results") / name
