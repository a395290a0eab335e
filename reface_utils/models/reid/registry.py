"""ReID backends by name: ``load_reid_model`` and ``register_reid_model`` (users add their own)."""
from __future__ import annotations

import os
from typing import Any, Callable

import torch

from ...core.checks import registration
from .extractor import ReIDModel


# --------------------------------------------------------------------------------------
# Registry and the built-in backends
# --------------------------------------------------------------------------------------
ReIDFactory = Callable[..., ReIDModel]
_REGISTRY: dict[str, ReIDFactory] = {}


def register_reid_model(name: str, factory: ReIDFactory, *, overwrite: bool = False) -> None:
    """Make ``load_reid_model(name, checkpoint, device, **options)`` call
    ``factory(checkpoint=..., device=..., **options)``."""
    name = registration("register_reid_model", name, factory, "factory(checkpoint=..., device=..., **options)")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"a ReID model called {name!r} is registered already (pass overwrite=True)")
    _REGISTRY[name] = factory


def available_reid_models() -> list[str]:
    return sorted(_REGISTRY)


def load_reid_model(name: str, checkpoint: str | os.PathLike | None = None,
                    device: str | torch.device = "auto", **options: Any) -> ReIDModel:
    """A ReID backend by name: ``"cal"``, ``"mobilenetv2-imagenet"``, ``"onnx"`` or a registered one."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown ReID model {name!r}; available: {', '.join(available_reid_models())} "
                         "(register your own with register_reid_model)")
    return _REGISTRY[name](checkpoint=checkpoint, device=device, **options)
