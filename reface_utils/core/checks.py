"""Checks of user-given parameters: one clear ValueError naming the parameter, the value
and what is allowed (the pipeline's and the custom-video app's settings use them)."""
from __future__ import annotations

import difflib
import math
import numbers
import os
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["number", "integer", "text", "choice", "flag", "registration", "refuse_unknown", "notebook_values"]


def number(name: str, value: Any, low: float, high: float, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"parameter {name} must be a number in [{low:g}, {high:g}], got {value!r} "
                         f"({type(value).__name__})")
    if not low <= float(value) <= high:
        raise ValueError(f"parameter {name} must lie in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def integer(name: str, value: Any, low: int, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    integral = isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and float(value).is_integer())
    if isinstance(value, bool) or not integral or value < low:
        raise ValueError(f"parameter {name} must be a whole number >= {low}, got {value!r} ({type(value).__name__})")
    return int(value)


def text(name: str, value: Any, *, optional: bool = False, path: bool = False) -> str | None:
    if value is None and optional:
        return None
    if path and isinstance(value, os.PathLike):
        return os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"parameter {name} must be a {'path' if path else 'non-empty text'}, "
                         f"got {value!r} ({type(value).__name__})")
    return value.strip()


def choice(name: str, value: Any, choices: list[str]) -> str:
    given = text(name, value).lower()
    if given not in choices:
        raise ValueError(f"parameter {name} must be one of {choices}, got {value!r}")
    return given


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"parameter {name} must be True or False, got {value!r}")
    return value


def registration(register: str, name: Any, factory: Any, call: str) -> str:
    """The name of a registration (``register_face_model(name, factory)`` and the like),
    stripped, after checking it is text and ``factory`` is callable as ``call``."""
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"{register}: the name must be non-empty text, got {name!r}")
    if not callable(factory):
        raise TypeError(f"{register}({name!r}, factory): factory must be callable as {call}, "
                        f"got {type(factory).__name__}")
    return name.strip()


def refuse_unknown(given: Iterable[str], known: Sequence[str]) -> None:
    """A TypeError naming every name of ``given`` not in ``known``, with the closest known one."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        hints = [f"{u!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(u, known, 1)) else repr(u)
                 for u in unknown]
        raise TypeError(f"unknown parameter(s) {', '.join(hints)}; known: {', '.join(known)}")


# Names a notebook's namespace holds besides its parameters (IPython's own).
_NOT_PARAMETERS = frozenset({"In", "Out", "exit", "quit", "get_ipython"})


def notebook_values(namespace: Mapping[str, Any], *, own: Iterable[str] = ()) -> dict[str, Any]:
    """The parameters in a notebook's variables (``globals()`` after the parameters cell):
    every plain value (None, bool, number, text) with a public name, except ``own``; so a
    misspelt papermill ``-p aplha 0.5`` (injected as a variable) reaches the name check."""
    skip = set(own) | _NOT_PARAMETERS
    return {name: value for name, value in namespace.items()
            if not (name.startswith("_") or name.isupper() or name in skip)
            and (value is None or isinstance(value, (bool, int, float, str)))}
