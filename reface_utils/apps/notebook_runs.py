"""Running a pipeline notebook with papermill so that a failed run never leaves a broken log.

papermill writes the executed notebook while it runs (after every cell); a full disk or a
killed run leaves half a JSON file where the user looks for the log. Here each run writes
to a temporary sibling that replaces the target only when it is a whole notebook: the
executed notebook on success, the notebook with its error cell when a cell failed (it is
the log of what went wrong), and nothing (the previous log kept) when the notebook itself
could not be written.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Mapping

from ..core.files import apply_umask, write_error

__all__ = ["run_notebook"]


def _is_whole_notebook(path: Path) -> bool:
    try:
        return "cells" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def run_notebook(source: str | os.PathLike, target: str | os.PathLike, parameters: Mapping[str, Any], *,
                 cwd: str | os.PathLike | None = None, **options: Any) -> Path:
    """``papermill.execute_notebook(source, target, parameters)`` with an atomic ``target``.

    Raises what papermill raises (``PapermillExecutionError`` when a cell fails, with
    ``target`` holding the executed notebook and its error); an ``OSError`` while writing
    the notebook names ``target``. ``options`` go to papermill (default: no progress bar).
    """
    import papermill as pm

    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(err, target.parent) from err
    tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.ipynb")
    options.setdefault("progress_bar", False)
    try:
        pm.execute_notebook(str(source), str(tmp), parameters=dict(parameters),
                            cwd=None if cwd is None else str(cwd), **options)
    except OSError as err:  # papermill's own write: the temporary notebook may be cut short
        _settle(tmp, target)
        raise write_error(err, target) from err
    except BaseException:
        _settle(tmp, target)
        raise
    _settle(tmp, target)
    return target


def _settle(tmp: Path, target: Path) -> None:
    """The temporary notebook replaces ``target`` if it is whole; else it is removed."""
    if _is_whole_notebook(tmp):
        try:
            apply_umask(tmp)
            os.replace(tmp, target)
            return
        except OSError:
            pass
    tmp.unlink(missing_ok=True)
