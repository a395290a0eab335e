"""progress.py: text bars under papermill and in terminals, widgets in live notebooks."""
import os

import nbformat
import pytest
import tqdm
import tqdm.notebook
from nbclient import NotebookClient

from reface_utils.core import progress
from reface_utils.core.progress import progress_bar, progress_mode, resolve_mode


@pytest.mark.parametrize("setting, in_kernel, live, widgets, expected", [
    (None, False, False, True, "text"),      # script, pytest, terminal
    ("auto", True, False, True, "text"),     # kernel started by papermill / nbclient
    ("auto", True, True, True, "widget"),    # kernel of a notebook open in JupyterLab / Colab
    ("auto", True, True, False, "text"),     # ... without ipywidgets
    (" Text ", True, True, True, "text"),
    ("widget", False, False, True, "widget"),
    ("widget", True, True, False, "text"),
    ("none", True, True, True, "none"),
])
def test_resolve_mode(setting, in_kernel, live, widgets, expected):
    assert resolve_mode(setting, in_kernel=in_kernel, live_frontend=live, widgets=widgets) == expected


def test_a_bad_setting_names_the_variable():
    with pytest.raises(ValueError, match="REFACE_PROGRESS='fancy'"):
        progress_mode(environ={"REFACE_PROGRESS": "fancy"})


def test_outside_a_kernel_auto_is_text_even_with_a_jupyter_session():
    assert progress_mode(environ={"JPY_SESSION_NAME": "/nb.ipynb"}) == "text"
    assert progress_mode(environ={"REFACE_PROGRESS": "none"}) == "none"
    assert progress_mode("widget", environ={"REFACE_PROGRESS": "none"}) == "widget"  # argument wins


def test_bars_of_each_kind(monkeypatch, capsys):
    monkeypatch.setenv("REFACE_PROGRESS", "text")
    bar = progress_bar(range(3), desc="x")
    assert type(bar) is tqdm.tqdm and list(bar) == [0, 1, 2]
    assert "x: 100%" in capsys.readouterr().err
    monkeypatch.setenv("REFACE_PROGRESS", "none")
    with progress_bar(total=4, desc="y") as bar:
        bar.update(4)
        assert bar.disable
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("REFACE_PROGRESS", "widget")
    bar = progress_bar(range(2), desc="z")
    assert isinstance(bar, tqdm.notebook.tqdm) and list(bar) == [0, 1]
    capsys.readouterr()


def _run_in_kernel() -> tuple[str, list[dict]]:
    """Execute a two-cell notebook in a real kernel, as papermill does (nbclient); the
    kernel inherits this process's environment."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from reface_utils.core.progress import progress_bar, progress_mode\n"
                                  "print(progress_mode())"),
        nbformat.v4.new_code_cell("for _ in progress_bar(range(3), desc='work'):\n    pass"),
    ])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return nb.cells[0].outputs[0]["text"].strip(), nb.cells[1].outputs


@pytest.mark.timeout(300)
def test_a_headless_kernel_gets_text_bars_and_a_jupyter_session_gets_widgets(monkeypatch):
    root = os.path.dirname(os.path.dirname(progress.__file__))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("REFACE_PROGRESS", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    mode, outputs = _run_in_kernel()  # papermill from a shell
    assert mode == "text"
    assert all(o["output_type"] == "stream" for o in outputs)  # no widget in the saved notebook
    assert "work: 100%" in "".join(o.get("text", "") for o in outputs)
    monkeypatch.setenv("JPY_SESSION_NAME", "/tmp/live.ipynb")  # what Jupyter Server gives its kernels
    mode, outputs = _run_in_kernel()
    assert mode == "widget"
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
