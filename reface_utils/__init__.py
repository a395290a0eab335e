"""ReFace: clothes-changing person re-identification with face features.

Gallery enrichment with confident face matches, and fusion of ReID and face distances
(Arkushin et al., "ReFace"/"GEFF", arXiv 2211.13807). The package is in layers, each
importing only from the layers listed before it (docs/ARCHITECTURE.md)::

    core/    paths, images, cache, checkpoints, runtime, progress, video I/O
    data/    dataset parsers, the generated demo dataset and demo video
    method/  feature containers, enrichment, fusion, retrieval, metrics, tracklet scores
    models/  face backends, ReID backends (reface_utils.models.reid)
    apps/    the notebook pipeline, custom-video identification, tracking, figures, Ray engine

Submodules are imported on use (``from reface_utils.apps import pipeline``) so that
importing the package stays cheap (no torch, no OpenCV).

Old import paths
----------------
Before the layers, every module sat directly in ``reface_utils`` (``reface_utils.custom``,
``reface_utils.checkpoints`` ...). Those names still work and give the *same module
object* as the new path: ``_MOVED`` maps each old name to its home, and a small import
hook (:class:`_MovedModules`) resolves ``import reface_utils.<old>``,
``from reface_utils import <old>`` and ``python -m reface_utils.<old>`` to it when first
used. New code should use the layered paths.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

__version__ = "0.1.0"

#: Old flat module name -> its home in the layers (relative to ``reface_utils``).
_MOVED = {
    "paths": "core.paths", "images": "core.images", "cache": "core.cache",
    "checkpoints": "core.checkpoints", "runtime": "core.runtime", "progress": "core.progress",
    "datasets": "data.datasets", "demo": "data.demo", "demo_layouts": "data.demo_layouts",
    "demo_video": "data.demo_video",
    "enrich": "method.enrich", "fusion": "method.fusion", "retrieval": "method.retrieval",
    "retrieval_torch": "method.retrieval_torch", "metrics": "method.metrics", "video": "method.tracklets",
    "face": "models.face", "reid": "models.reid",
    "pipeline": "apps.pipeline", "custom": "apps.custom", "visualise": "apps.visualise",
    "cluster": "apps.cluster", "tracking": "apps.tracking",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import hook: ``reface_utils.<old name>`` is the module at its new path (same object)."""

    def find_spec(self, fullname: str, path=None, target=None):
        old = fullname[len(__name__) + 1:] if fullname.startswith(__name__ + ".") else None
        if old in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec) -> ModuleType:
        # the real module, so sys.modules["reface_utils.<old>"] is the very same object
        module = importlib.import_module(f"{__name__}.{_MOVED[spec.name.rsplit('.', 1)[1]]}")
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # already executed under its new name; the import system has just set __spec__ to
        # the alias's spec: give the module back its own (relative imports, reload, repr)
        module.__spec__ = module.__spec__.loader_state

    def get_code(self, fullname: str):
        # python -m reface_utils.<old>: run the new module as __main__ (its relative imports
        # need its real package, so it is not run under the old name)
        new = f"{__name__}.{_MOVED[fullname.rsplit('.', 1)[1]]}"
        return compile(f"import runpy\nrunpy.run_module({new!r}, run_name='__main__', alter_sys=True)\n",
                       f"<{fullname} -> {new}>", "exec")


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())  # before path finders: an old flat file elsewhere never wins


def __getattr__(name: str) -> ModuleType:
    """``reface_utils.<old name>`` as an attribute, imported on first use."""
    if name in _MOVED:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
