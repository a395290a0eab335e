"""Model names a user gives (``face_model``, ``reid_model``): the one check of them.

The pipeline's settings and the custom-video app's settings both call these, so a wrong
name reads the same everywhere: one ``ValueError`` naming the parameter, the value, the
closest registered name, every choice and how to add a model. The names are looked up in
the registries (:mod:`reface_utils.models.face_registry`, :mod:`reface_utils.models.reid.registry`),
so a model a plugin registered is known here too.
"""
from __future__ import annotations

import difflib
from typing import Any, Mapping, Sequence

from ..core.checks import text
from .face import available_face_models
from .reid import available_reid_models

__all__ = ["face_model_name", "reid_model_name"]


def face_model_name(value: Any, *, parameter: str = "face_model", hint: str = "") -> str:
    """``value`` as the face registry keys it (stripped, lower case), when registered.

    ``hint``: what the caller adds to the error (e.g. how to leave the parameter to its
    default)."""
    # the face registry's own normalisation (register_face_model / load_face_model)
    given = text(parameter, value).lower()
    return _registered(parameter, value, given, available_face_models(), {}, "face model",
                       "reface_utils.models.face.register_face_model", hint)


def reid_model_name(value: Any, *, parameter: str = "reid_model", also: Mapping[str, str] | None = None,
                    hint: str = "") -> str:
    """``value`` (stripped) when it is a registered ReID model or one of ``also``
    (name -> what it means, for values the caller handles itself, e.g. the pipeline's
    ``"features"``). ReID names are case-sensitive, as in the registry."""
    given = text(parameter, value)
    return _registered(parameter, value, given, available_reid_models(), dict(also or {}), "ReID model",
                       "reface_utils.models.reid.register_reid_model", hint)


def _registered(parameter: str, value: Any, given: str, registered: Sequence[str], also: Mapping[str, str],
                kind: str, register_with: str, hint: str) -> str:
    if given in registered or given in also:
        return given
    close = difflib.get_close_matches(given, [*registered, *also], 1)
    extra = "".join(f" (or {name!r}: {what})" for name, what in also.items())
    raise ValueError(f"parameter {parameter}: unknown {kind} {value!r}"
                     f"{f' (did you mean {close[0]!r}?)' if close else ''}; registered: {', '.join(registered)}"
                     f"{extra}. Add yours with {register_with}{hint}")
