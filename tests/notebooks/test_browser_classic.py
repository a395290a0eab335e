"""The retrieval browser as Colab renders it: ipywidgets 7.7 in the classic Notebook.

Colab's front end speaks the widget protocol of ipywidgets 7 (widgetsnbextension 3), the
one the classic Notebook 6.5 uses. Here the classic Notebook server and its kernel run
from the Python 3.12 venv that stands in for Colab (``make install-py312``: ipywidgets
7.7.1, ipykernel 6.17.1, IPython 7.34, Notebook 6.5.7; constraints-colab.txt), in Debian's
Chromium driven by Playwright from this environment. ``visualise.ipynb``: Cell -> Run All,
then the same actions as in JupyterLab (tests/notebooks/test_browser.py, through
:func:`browser_harness.drive_retrieval_browser`): another query, alpha, enrichment, top-k;
after each one the picture must change, and no traceback, widget failure, JavaScript error
or stray output (the classic front end puts what a widget callback prints or raises under
the widget's cell) may appear. Screenshots go to ``results/browser/classic-*.png``.

The venv's Python: ``$REFACE_CLASSIC_PYTHON``, else ``.venv312/bin/python``. Skipped
without it (or without Chromium, Playwright), unless ``REFACE_REQUIRE_BROWSER=1`` (CI),
where that is a failure. Run alone: ``python -m pytest tests/notebooks/test_browser_classic.py``.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import browser_harness as lab_tools

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "results" / "browser"
NOTEBOOK = "visualise.ipynb"
RUN_ALL_TIMEOUT = 600  # a cold cache computes the demo's features first
ACTION_TIMEOUT = 60
CLASSIC = lab_tools.CLASSIC

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]

PYTHON = lab_tools.classic_python()
lab_tools.skip_unless_available(lab_tools.missing_classic_browser(), allow_module_level=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("classic")


@pytest.fixture(scope="module")
def code_cells(workdir) -> int:
    """The notebook, copied outside the repository without its outputs (results land
    beside the copy, never in the repository)."""
    (workdir / "root" / "notebooks").mkdir(parents=True)
    return lab_tools.fresh_copy(REPO / "notebooks" / NOTEBOOK, workdir / "root" / "notebooks" / NOTEBOOK)


@pytest.fixture(scope="module")
def versions() -> dict[str, str | None]:
    """What the classic server and kernel run: Colab's widget stack, checked again here. (Checked
    here, when the test runs, not at collection: CI builds the 3.12 venv meanwhile.)"""
    lab_tools.skip_unless_available(lab_tools.missing_classic_tools(PYTHON))
    found = lab_tools.python_packages(PYTHON, ["ipywidgets", "widgetsnbextension", "ipykernel", "ipython",
                                               "notebook", "nbclassic"])
    assert found["ipywidgets"].startswith("7.7."), found
    assert found["widgetsnbextension"].startswith("3."), found
    found["python"] = subprocess.run([str(PYTHON), "-c", "import platform; print(platform.python_version())"],
                                     capture_output=True, text=True, check=True).stdout.strip()
    return found


@pytest.fixture(scope="module")
def server(workdir, code_cells, versions):
    """The classic Notebook of the 3.12 venv; its kernels import this checkout and share the
    tests' REFACE_HOME. Teardown shuts it down and fails if any of its processes is left."""
    env = lab_tools.checkout_environment(workdir)
    env.pop("VIRTUAL_ENV", None)
    started = lab_tools.start_classic_notebook(workdir / "root", workdir, env, python=PYTHON)
    with lab_tools.serving(started, workdir) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with lab_tools.chromium(tmp_path_factory.mktemp("chromium"), timeout=ACTION_TIMEOUT) as context:
        yield context


@pytest.fixture()
def page(browser, server):
    """A tab; collects uncaught JavaScript errors and console errors; closed afterwards."""
    with lab_tools.new_tab(browser, console_errors=True) as tab:
        yield tab


def _step(page, name: str):
    return lab_tools.screenshot_step(page, SHOTS, f"classic-visualise-{name}")


def _assert_no_errors(page, cell, after: str) -> None:
    errors = lab_tools.error_outputs(page, CLASSIC)
    assert not errors, f"error output after {after}:\n{errors[0]}"
    assert not page.js_errors, f"JavaScript error after {after}: {page.js_errors[0]}"
    outputs = lab_tools.cell_outputs(cell, CLASSIC)
    assert outputs == ["widget"], f"the browser's cell should hold the widget alone after {after}: {outputs}"


def test_retrieval_browser_follows_every_control_in_the_classic_notebook(page, server, code_cells, versions):
    with _step(page, "1-run-all"):
        lab_tools.open_notebook(page, server, f"notebooks/{NOTEBOOK}")
        lab_tools.run_all_and_wait(page, code_cells, timeout=RUN_ALL_TIMEOUT, frontend=CLASSIC)
        kernel = page.evaluate("() => Jupyter.notebook.metadata.language_info.version")
        assert kernel == versions["python"], f"the kernel is Python {kernel}, not the venv's {versions}"
        cell = page.locator(CLASSIC.code_cells).last
        first = lab_tools.first_picture(cell, timeout=ACTION_TIMEOUT)
        _assert_no_errors(page, cell, "Run All")
    lab_tools.drive_retrieval_browser(
        page, cell, first, step=lambda name: _step(page, name),
        no_errors=lambda after: _assert_no_errors(page, cell, after),
        idle=lambda: lab_tools.kernel_idle(page, CLASSIC), timeout=ACTION_TIMEOUT)
