"""The notebooks where people use them: JupyterLab in a real (headless) Chromium.

``visualise.ipynb``: Run All, then drive the retrieval browser like a person (another
query, alpha, enrichment, top-k); after each action the rendered picture must change and
no error may appear. ``custom_video.ipynb``: Run All, then the annotated video must load
and show a frame in the page. Screenshots of every step go to ``results/browser/``.

Needs Debian's ``chromium`` and the ``[browser]`` extra (JupyterLab, Playwright); skipped
without them, unless ``REFACE_REQUIRE_BROWSER=1`` (CI), where that is a failure.
Run alone: ``python -m pytest tests/notebooks/test_browser.py``.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import browser_harness as lab_tools

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "results" / "browser"
NOTEBOOKS = ("visualise.ipynb", "custom_video.ipynb")
RUN_ALL_TIMEOUT = 600  # a cold cache computes the demo's features / video first (about 45 s here)
ACTION_TIMEOUT = 60

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]

lab_tools.skip_unless_available(lab_tools.missing_browser_tools(), allow_module_level=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jupyterlab")


@pytest.fixture(scope="module")
def code_cells(workdir) -> dict[str, int]:
    """The notebooks, copied outside the repository: results land beside the copies
    (``project_root`` finds no checkout there), never in the repository."""
    (workdir / "root" / "notebooks").mkdir(parents=True)
    return {name: lab_tools.fresh_copy(REPO / "notebooks" / name, workdir / "root" / "notebooks" / name)
            for name in NOTEBOOKS}


@pytest.fixture(scope="module")
def lab(workdir, code_cells):
    """A JupyterLab whose kernels import this checkout and share the tests' REFACE_HOME.
    Teardown shuts it down and fails if any of its processes is left."""
    env = lab_tools.checkout_environment(workdir)
    with lab_tools.serving(lab_tools.start_jupyterlab(workdir / "root", workdir, env), workdir) as server:
        yield server


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's Chromium with a fresh profile; teardown fails if any of it is left running."""
    with lab_tools.chromium(tmp_path_factory.mktemp("chromium"), timeout=ACTION_TIMEOUT) as context:
        yield context


@pytest.fixture()
def page(browser, lab):
    """A tab; collects uncaught JavaScript errors; closed afterwards."""
    with lab_tools.new_tab(browser) as tab:
        yield tab


def _step(page, name: str):
    """One thing a person does: screenshot afterwards, or ``<name>-FAILED.png`` if it failed."""
    return lab_tools.screenshot_step(page, SHOTS, name)


def _assert_no_errors(page, after: str) -> None:
    errors = lab_tools.error_outputs(page)
    assert not errors, f"error output after {after}:\n{errors[0]}"
    assert not page.js_errors, f"JavaScript error after {after}: {page.js_errors[0]}"
    logged = lab_tools.log_console_entries(page)
    assert not logged, f"the Log Console got {len(logged)} message(s) after {after}, first: {logged[0]}"


def _open_and_run(page, lab, name: str, code_cells: int):
    """Open the notebook, show the Log Console (widget callback errors land there), Run All."""
    lab_tools.open_notebook(page, lab, f"notebooks/{name}")
    lab_tools.menu(page, "View", "Show Log Console")
    page.locator(".jp-LogConsole").wait_for()
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})  # Run menu acts on the notebook
    lab_tools.run_all_and_wait(page, code_cells, timeout=RUN_ALL_TIMEOUT)


def test_retrieval_browser_follows_every_control(page, lab, code_cells):
    with _step(page, "visualise-1-run-all"):
        _open_and_run(page, lab, "visualise.ipynb", code_cells["visualise.ipynb"])
        cell = page.locator(lab_tools.LAB.code_cells).last
        first = lab_tools.first_picture(cell, timeout=ACTION_TIMEOUT)
        _assert_no_errors(page, "Run All")
    lab_tools.drive_retrieval_browser(
        page, cell, first, step=lambda name: _step(page, f"visualise-{name}"),
        no_errors=lambda after: _assert_no_errors(page, after), idle=lambda: lab_tools.kernel_idle(page),
        timeout=ACTION_TIMEOUT)


def test_custom_video_notebook_shows_the_annotated_video(page, lab, code_cells):
    with _step(page, "custom-video-1-run-all"):
        _open_and_run(page, lab, "custom_video.ipynb", code_cells["custom_video.ipynb"])
        _assert_no_errors(page, "Run All")
        outputs = page.locator(".jp-Notebook .jp-OutputArea-output")
        pictures = outputs.locator("img")
        assert pictures.count() >= 3, "the gallery, the track crops and the annotated frames"
        sizes = pictures.evaluate_all("imgs => imgs.map(i => [i.complete, i.naturalWidth])")
        assert all(done and width > 0 for done, width in sizes), f"an image did not render: {sizes}"
        pictures.last.scroll_into_view_if_needed()

    with _step(page, "custom-video-2-annotated-video"):
        videos = outputs.locator("video")
        if videos.count():  # the notebook embeds the video itself
            video, src = videos.first, None
        else:  # it prints where the file is: play that file in the page, as a person would open it
            printed = re.findall(r"\S+\.mp4", "\n".join(outputs.evaluate_all(lab_tools.TEXTS_JS)))
            assert printed, "the notebook names its annotated video"
            path = Path(printed[-1]).resolve()
            assert path.is_relative_to(lab.root), f"{path} was written outside the temporary copy"
            page.evaluate("""() => { const v = document.createElement('video');
                v.id = 'annotated';
                v.style = 'position:fixed; right:20px; bottom:40px; width:640px; z-index:10000; background:#000';
                document.body.appendChild(v); }""")
            video, src = page.locator("#annotated"), lab.files_url(path.relative_to(lab.root).as_posix())
        frame = lab_tools.show_video_middle(video, src)
        assert frame["width"] >= 320 and frame["height"] >= 180 and frame["duration"] > 1, frame
        spread = lab_tools.picture_spread(video.screenshot())
        assert spread > 10, f"the video shows a blank picture (grey-level spread {spread:.1f}): {frame}"
        _assert_no_errors(page, "playing the annotated video")
