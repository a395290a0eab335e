"""Where ReFace keeps things on disk: one configurable home, explicit everywhere else.

``REFACE_HOME`` (default ``~/.cache/reface``) holds downloaded weights, the generated
demo dataset and the feature cache. Results go to ``results/<dataset>/`` under the
current working directory unless a caller passes another folder.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["reface_home", "weights_dir", "features_cache_dir", "demo_root", "results_dir"]


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


def results_dir(dataset: str, base: str | os.PathLike | None = None) -> Path:
    """``<base or ./results>/<dataset>``, created if missing."""
    out = Path(base) if base is not None else Path("results")
    out = out / dataset
    out.mkdir(parents=True, exist_ok=True)
    return out
