"""Your code in every kernel: plugins that register datasets and models when imported.

A plugin is ordinary Python that calls the registries
(:func:`reface_utils.data.datasets.register_dataset`,
:func:`reface_utils.models.face.register_face_model`,
:func:`reface_utils.models.reid.registry.register_reid_model`) at import time::

    # my_plugin.py
    from reface_utils.data.datasets import load_dataset, register_dataset
    register_dataset("mine", lambda root, seed: load_dataset("manifest", root))

Two ways to load plugins:

* :func:`load_plugins` ``("my_plugin.py,mypkg.reface_ext")``: comma-separated module names
  (imported with :func:`importlib.import_module`, from ``sys.path``) or ``.py`` files
  (relative to the working directory, or absolute; ``~`` works). A file is imported under
  a stable module name derived from its resolved path, ``reface_plugin_<stem>_<hash>``, and
  registered in ``sys.modules``; a file does not put its folder on ``sys.path``.
* :func:`load_entry_point_plugins`: every installed entry point of the group
  ``reface.plugins`` (``[project.entry-points."reface.plugins"] mine = "mypkg.reface_ext"``
  in the plugin's ``pyproject.toml``). An entry point naming a module imports it; one
  naming a function (``"mypkg.reface_ext:register"``) imports its module and calls it
  with no arguments.

Each plugin runs once per process: modules and files are found in ``sys.modules`` the
second time (a notebook run after another in the same kernel does not register twice),
and an entry point's function is called once (:data:`LOADED_ENTRY_POINTS`, this module's
only state besides ``sys.modules``). A plugin that fails is a :class:`PluginError` naming
it and what went wrong, with the original exception chained (its traceback shows where
inside the plugin); nothing of a failed plugin stays in ``sys.modules``, so a fixed file
loads on the next try.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

__all__ = ["PluginError", "load_plugins", "load_entry_point_plugins", "plugin_module_name",
           "ENTRY_POINT_GROUP", "LOADED_ENTRY_POINTS"]

ENTRY_POINT_GROUP = "reface.plugins"
#: ``"<distribution> <entry point name> = <value>"`` of every entry point loaded in this process,
#: so that a second :func:`load_entry_point_plugins` does not call a plugin function again.
LOADED_ENTRY_POINTS: set[str] = set()

_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class PluginError(ImportError):
    """A plugin that could not be found or failed while loading (the message names it)."""


def plugin_module_name(path: str | os.PathLike) -> str:
    """The ``sys.modules`` name a plugin file is imported under: stable for one resolved path."""
    resolved = Path(path).expanduser().resolve()
    stem = re.sub(r"\W", "_", resolved.stem) or "plugin"
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    return f"reface_plugin_{stem}_{digest}"


def _items(spec: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, (str, os.PathLike)):
        parts = os.fspath(spec).split(",") if isinstance(spec, str) else [os.fspath(spec)]
    else:
        parts = [os.fspath(s) for s in spec]
    return [p.strip() for p in parts if p.strip()]


def _is_file_spec(item: str) -> bool:
    """A file path unless it reads as a dotted module name and is no file (a folder ``mypkg``
    in the working directory is the package ``mypkg``; a file ``notes.txt`` is a file)."""
    return item.endswith(".py") or "/" in item or os.sep in item or not _MODULE_NAME.fullmatch(item) \
        or os.path.isfile(item)


def load_plugins(spec: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[str]:
    """Import the plugins in ``spec`` (comma-separated names/paths, or a list; ``None`` or
    ``""``: none), in order; returns their ``sys.modules`` names (the ones imported earlier
    too, without running them again). Raises :class:`PluginError` for the first one that
    is missing or fails."""
    return [(_load_file(item) if _is_file_spec(item) else _load_module(item)) for item in _items(spec)]


def _load_module(name: str) -> str:
    if name in sys.modules:
        return name
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is not None and (name == err.name or name.startswith(err.name + ".")):
            raise PluginError(f"plugin {name!r}: no module of that name is installed or on sys.path "
                              f"(a file? give its path, ending in .py)", name=name) from err
        raise PluginError(f"plugin {name!r} failed while importing: {type(err).__name__}: {err}", name=name) from err
    except Exception as err:  # its own code failed: name it, keep the traceback
        raise PluginError(f"plugin {name!r} failed while importing: {type(err).__name__}: {err}", name=name) from err
    return name


def _load_file(item: str) -> str:
    path = Path(item).expanduser()
    if not path.exists():
        hint = "" if item.endswith(".py") or "/" in item else \
            f" (and {item!r} is not a module name one can import)"
        raise PluginError(f"plugin {item!r}: file {path.absolute()} not found (paths are relative to the "
                          f"working directory {os.getcwd()}){hint}", path=str(path))
    if path.is_dir():
        raise PluginError(f"plugin {item!r}: {path.absolute()} is a folder, not a .py file (for a package, "
                          "put its parent folder on sys.path and give the package's name)", path=str(path))
    if path.suffix != ".py":
        raise PluginError(f"plugin {item!r}: {path.absolute()} is not a .py file", path=str(path))
    name = plugin_module_name(path)
    if name in sys.modules:
        return name
    resolved = path.resolve()
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:  # pragma: no cover - .py files always have a loader
        raise PluginError(f"plugin {item!r}: cannot import {resolved}", path=str(resolved))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as err:
        sys.modules.pop(name, None)
        if not isinstance(err, Exception):
            raise  # KeyboardInterrupt, SystemExit: not the plugin's error to report
        raise PluginError(f"plugin {item!r} ({resolved}) failed while importing: {type(err).__name__}: {err}",
                          name=name, path=str(resolved)) from err
    return name


def load_entry_point_plugins(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Load every installed entry point of ``group`` (see the module docstring); returns
    ``"<distribution> <name> = <value>"`` of each, in a stable order (by distribution, then
    name). Raises :class:`PluginError` naming the entry point and its distribution."""
    out = []
    seen = set()
    points = sorted(importlib.metadata.entry_points(group=group),
                    key=lambda ep: (_dist_name(ep), ep.name, ep.value))
    for ep in points:
        key = f"{_dist_name(ep)} {ep.name} = {ep.value}"
        if key in seen:  # the same distribution found twice on sys.path
            continue
        seen.add(key)
        out.append(key)
        if key in LOADED_ENTRY_POINTS:
            continue
        where = f"entry point {ep.name!r} ({ep.value}) of {_dist_name(ep)} in group {group!r}"
        try:
            obj = ep.load()
            if not isinstance(obj, ModuleType):
                if not callable(obj):
                    raise TypeError(f"{ep.value} is neither a module nor a function")
                obj()
        except Exception as err:
            raise PluginError(f"plugin {where} failed: {type(err).__name__}: {err}", name=ep.module) from err
        LOADED_ENTRY_POINTS.add(key)
    return out


def _dist_name(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    name = getattr(dist, "name", None) if dist is not None else None
    return name or "an unknown distribution"
