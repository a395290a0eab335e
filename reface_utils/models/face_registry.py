"""Face models by name: ``register_face_model``, ``available_face_models``, their default
thresholds (``face_model_thresholds``) and the factory behind a name (``face_factory``, what
``reface_utils.models.face.load_face_model`` calls).

Names are case-insensitive (stripped, lower case). The built-in backends (``sface``,
``insightface`` and its alias ``buffalo_l``) register themselves, as a user's model does,
when :mod:`reface_utils.models.face` is imported; that is the public path of these names
(``from reface_utils.models.face import register_face_model``).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping

from ..core.checks import registration

__all__ = ["FaceFactory", "THRESHOLD_NAMES", "register_face_model", "available_face_models",
           "face_model_thresholds", "face_factory"]

#: ``factory(**options) -> FaceModel``: what :func:`register_face_model` takes. (Typed loosely:
#: this module sits below the one that defines ``FaceModel``, which registers its backends here.)
FaceFactory = Callable[..., Any]

#: Threshold names a face model's defaults give (docs/METHOD.md section 3).
THRESHOLD_NAMES = ("enrich_det_threshold", "det_threshold", "sim_threshold")
#: The range every default threshold must lie in: the pipeline accepts these parameters
#: only in [0, 1], so a default outside it could never be given back as a parameter.
_THRESHOLD_RANGE = (0.0, 1.0)

# The registry behind load_face_model, and the default thresholds per registered name.
_REGISTRY: dict[str, FaceFactory] = {}
_THRESHOLDS: dict[str, dict[str, float]] = {}


def _key(name: str) -> str:
    return name.lower().strip()


def _checked_thresholds(name: str, thresholds: Mapping[str, Any]) -> dict[str, float]:
    """The thresholds as floats, or a ValueError naming the face model, the value and the fix."""
    if not isinstance(thresholds, Mapping):
        raise ValueError(f"thresholds of face model {name!r} must be a dict like {{'det_threshold': 0.6, "
                         f"'sim_threshold': 0.45}}, got {thresholds!r}")
    unknown = set(thresholds) - set(THRESHOLD_NAMES)
    if unknown or not {"det_threshold", "sim_threshold"} <= set(thresholds):
        raise ValueError(f"thresholds of face model {name!r} must give det_threshold and sim_threshold "
                         f"(and may give enrich_det_threshold), got {sorted(map(str, thresholds))}")
    low, high = _THRESHOLD_RANGE
    checked = {}
    for key, value in thresholds.items():
        # bool is a number to Python, never a threshold; NaN would compare False with every score
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            raise ValueError(f"threshold {key} of face model {name!r} must be a number in [{low:g}, {high:g}], "
                             f"got {value!r} ({type(value).__name__})")
        if not low <= float(value) <= high:
            raise ValueError(f"threshold {key} of face model {name!r} must lie in [{low:g}, {high:g}] (the range "
                             f"of the {key} parameter), got {value!r}: rescale the model's scores to it")
        checked[key] = float(value)
    checked.setdefault("enrich_det_threshold", checked["det_threshold"])
    return checked


def register_face_model(name: str, factory: FaceFactory, *, thresholds: Mapping[str, float] | None = None,
                        overwrite: bool = False) -> None:
    """Make ``load_face_model(name, **options)`` (:mod:`reface_utils.models.face`) call
    ``factory(**options)``, which returns a :class:`~reface_utils.models.face.FaceModel`.

    ``thresholds``: the model's default ``det_threshold``, ``sim_threshold`` and optionally
    ``enrich_det_threshold`` (default: ``det_threshold``), numbers in [0, 1] on its own score
    scales. Without them a run must give the thresholds as parameters. Everything is checked
    before anything is registered: a refused call leaves the registry as it was.
    """
    key = _key(registration("register_face_model", name, factory, "factory(**options) -> FaceModel"))
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"a face model called {name!r} is registered already (pass overwrite=True)")
    checked = _checked_thresholds(name, thresholds) if thresholds is not None else None
    _REGISTRY[key] = factory
    if checked is not None:
        _THRESHOLDS[key] = checked
    else:
        _THRESHOLDS.pop(key, None)


def available_face_models() -> list[str]:
    return sorted(_REGISTRY)


def face_model_thresholds(name: str) -> dict[str, float] | None:
    """The default thresholds of a face model (see :func:`register_face_model`), or None."""
    found = _THRESHOLDS.get(_key(str(name)))
    return dict(found) if found is not None else None


def face_factory(name: str) -> FaceFactory:
    """The factory registered as ``name`` (what ``load_face_model(name, **options)`` calls), or a
    ValueError naming the registered ones."""
    key = _key(name)
    if key not in _REGISTRY:
        raise ValueError(f"unknown face model {name!r}; choose one of {', '.join(available_face_models())} "
                         "(register your own with register_face_model)")
    return _REGISTRY[key]
