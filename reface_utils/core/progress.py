"""Progress bars that suit where the code runs: live widgets in a notebook someone is
looking at, plain text under papermill and in terminals, or none.

A widget bar is only alive while a browser renders it; in a notebook executed headless
(papermill, nbclient) it is saved as a frozen widget ("99% 344/349"). Kernels cannot
tell on their own who executes them, so the choice is an environment variable:

``REFACE_PROGRESS``
    ``text``   tqdm's text bar (stderr): papermill, logs, terminals.
    ``widget`` the Jupyter widget bar (``tqdm.notebook``).
    ``none``   no bars.
    ``auto``   (default, also when unset) ``widget`` in a kernel that a notebook frontend
               started -- Jupyter Server sets ``JPY_SESSION_NAME`` in the kernels it starts
               for a notebook (JupyterLab, Notebook 7), and Colab loads ``google.colab`` --
               when ipywidgets is installed; ``text`` everywhere else, including kernels
               that papermill or nbclient start from a shell.

A papermill run started from *inside* a live notebook (eval.ipynb in JupyterLab) gives
its kernels the parent's environment, ``JPY_SESSION_NAME`` included: set
``REFACE_PROGRESS=text`` (or ``none``) in ``os.environ`` before calling papermill there.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any, Iterable, Mapping

__all__ = ["MODES", "ENV_VAR", "resolve_mode", "progress_mode", "progress_bar"]

ENV_VAR = "REFACE_PROGRESS"
MODES = ("auto", "text", "widget", "none")


def resolve_mode(setting: str | None, *, in_kernel: bool, live_frontend: bool, widgets: bool) -> str:
    """"text", "widget" or "none" for a ``REFACE_PROGRESS`` value and the facts of the
    process (pure). An explicit "widget" without ipywidgets falls back to text."""
    mode = (setting or "auto").strip().lower()
    if mode not in MODES:
        raise ValueError(f"{ENV_VAR}={setting!r} is not one of {', '.join(MODES)}; "
                         f"set it to 'text' under papermill or unset it")
    if mode == "auto":
        mode = "widget" if in_kernel and live_frontend else "text"
    if mode == "widget" and not widgets:
        return "text"
    return mode


def _in_kernel() -> bool:
    """True inside a Jupyter (ZMQ) kernel; False in scripts, pytest and terminal IPython."""
    if "ipykernel" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress_mode(setting: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The bar this process gets: "text", "widget" or "none". ``setting`` (a ``MODES``
    value) overrides ``REFACE_PROGRESS``; see the module docstring for "auto"."""
    environ = os.environ if environ is None else environ
    live = bool(environ.get("JPY_SESSION_NAME")) or "google.colab" in sys.modules
    return resolve_mode(setting if setting is not None else environ.get(ENV_VAR), in_kernel=_in_kernel(),
                        live_frontend=live, widgets=importlib.util.find_spec("ipywidgets") is not None)


def progress_bar(iterable: Iterable | None = None, *, mode: str | None = None, **options: Any):
    """A tqdm bar (same arguments as ``tqdm.tqdm``) of the kind ``progress_mode(mode)``
    picks. "none" gives a bar made with ``disable=True`` (its methods are no-ops)."""
    mode = progress_mode(mode)
    if mode == "widget":
        from tqdm.notebook import tqdm
    else:
        from tqdm import tqdm
        if mode == "none":
            options["disable"] = True
        elif not sys.stderr.isatty():
            # Redirected text (papermill outputs, CI logs) keeps every redraw: fewer of them.
            options.setdefault("mininterval", 2.0)
    return tqdm(iterable, **options)
