"""Checks of user-given parameters: one clear ValueError naming the parameter, the value
and what is allowed (the pipeline's and the custom-video app's settings use them)."""
from __future__ import annotations

import math
import numbers
import os
from typing import Any

__all__ = ["number", "integer", "text", "choice"]


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
