"""The notebooks where people use them: JupyterLab in a real (headless) Chromium.

``visualise.ipynb``: Run All, then drive the retrieval browser like a person (another
query, alpha, enrichment, top-k); after each action the rendered picture must change and
no error may appear. ``custom_video.ipynb``: Run All, then the annotated video must load
and show a frame in the page. Screenshots of every step go to ``results/browser/``.

Needs Debian's ``chromium`` and the ``[browser]`` extra (JupyterLab, Playwright); skipped
without them, unless ``REFACE_REQUIRE_BROWSER=1`` (CI), where that is a failure.
Run alone: ``python -m pytest tests/test_browser.py``.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import nbformat
import psutil
import pytest

import browser_harness as lab_tools

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "results" / "browser"
NOTEBOOKS = ("visualise.ipynb", "custom_video.ipynb")
RUN_ALL_TIMEOUT = 600  # a cold cache computes the demo's features / video first (about 45 s here)
ACTION_TIMEOUT = 60

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]

_missing = lab_tools.missing_browser_tools()
if _missing and os.environ.get("REFACE_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"REFACE_REQUIRE_BROWSER=1 but {_missing}")
if _missing:
    pytest.skip(_missing, allow_module_level=True)


def _fresh_copy(src: Path, dst: Path) -> int:
    """Copy a notebook without its stored outputs (a person's Clear All Outputs); return
    its number of code cells."""
    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, dst)
    return sum(cell.cell_type == "code" for cell in nb.cells)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jupyterlab")


@pytest.fixture(scope="module")
def code_cells(workdir) -> dict[str, int]:
    """The notebooks, copied outside the repository: results land beside the copies
    (``project_root`` finds no checkout there), never in the repository."""
    (workdir / "root" / "notebooks").mkdir(parents=True)
    return {name: _fresh_copy(REPO / "notebooks" / name, workdir / "root" / "notebooks" / name)
            for name in NOTEBOOKS}


@pytest.fixture(scope="module")
def lab(workdir, code_cells):
    """A JupyterLab whose kernels import this checkout and share the tests' REFACE_HOME.
    Teardown shuts it down and fails if any of its processes is left."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = lab_tools.lab_environment(workdir, {"PYTHONPATH": pythonpath,
                                              "REFACE_HOME": os.environ["REFACE_HOME"]})
    server = lab_tools.start_jupyterlab(workdir / "root", workdir, env)
    yield server
    spawned = [psutil.Process(server.process.pid)]
    with contextlib.suppress(psutil.NoSuchProcess):
        spawned += spawned[0].children(recursive=True)  # the kernels
    lab_tools.stop_jupyterlab(server)
    left = lab_tools.wait_gone(spawned) + [  # and none of its folder's, e.g. an orphaned kernel
        f"{p.pid} {' '.join(p.cmdline())[:160]}" for p in lab_tools.processes_mentioning(f"{workdir}{os.sep}")]
    assert not left, "JupyterLab left processes behind:\n" + "\n".join(left)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's Chromium with a fresh profile; teardown fails if any of it is left running."""
    from playwright.sync_api import sync_playwright

    base = tmp_path_factory.mktemp("chromium")
    profile = base / "profile"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=lab_tools.find_chromium(), headless=True,
            args=list(lab_tools.CHROMIUM_ARGS), env=lab_tools.chromium_environment(base),
            viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(ACTION_TIMEOUT * 1000)
        yield context
        spawned = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        context.close()
    left = lab_tools.wait_gone(spawned) + [
        f"{p.pid} {' '.join(p.cmdline())[:160]}" for p in lab_tools.processes_mentioning(f"{base}{os.sep}")]
    assert not left, "Chromium left processes behind:\n" + "\n".join(left)


@pytest.fixture()
def page(browser, lab):
    """A tab; collects uncaught JavaScript errors; closed afterwards."""
    tab = browser.new_page()
    tab.js_errors = []
    tab.on("pageerror", lambda error: tab.js_errors.append(str(error)))
    yield tab
    tab.close()


def _shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


@contextlib.contextmanager
def _step(page, name: str):
    """One thing a person does: screenshot afterwards, or ``<name>-FAILED.png`` if it failed."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            _shot(page, f"{name}-FAILED")
        raise
    _shot(page, name)


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
        cell = page.locator(".jp-Notebook .jp-CodeCell").last
        image = cell.locator("img.widget-image")
        first = lab_tools.wait_until(lambda: lab_tools.rendered_image(image), timeout=ACTION_TIMEOUT,
                                     what="the retrieval browser's picture")
        assert first["png"] and first["width"] > 300 and first["height"] > 100, first
        image.scroll_into_view_if_needed()
        _assert_no_errors(page, "Run All")

    def control(label: str):
        return cell.locator(".widget-inline-hbox").filter(
            has=page.locator(".widget-label, .widget-label-basic", has_text=re.compile(f"^{label}$")))

    def readout(label: str) -> str:
        return control(label).locator(".widget-readout").text_content().strip()

    shown = [first]

    def picture_changes(action: str) -> dict:
        """Wait until the picture differs from the last one and has settled (kernel idle,
        same bytes twice in a row), then check that no error appeared."""
        previous = shown[-1]["digest"]

        def changed() -> bool:
            _assert_no_errors(page, action)  # a failing callback: say why, don't just time out
            return (lab_tools.rendered_image(image) or {}).get("digest", previous) != previous

        lab_tools.wait_until(changed, timeout=ACTION_TIMEOUT, what=f"the picture to change after {action}")
        seen = []

        def settled():
            now = lab_tools.rendered_image(image)
            seen.append(now and now["digest"])
            return now if lab_tools.kernel_idle(page) and len(seen) >= 3 and len(set(seen[-3:])) == 1 else None

        now = lab_tools.wait_until(settled, timeout=ACTION_TIMEOUT, what=f"the picture to settle after {action}")
        assert now["png"], now
        _assert_no_errors(page, action)
        shown.append(now)
        return now

    with _step(page, "visualise-2-query"):  # pick another query from the labelled list
        select = control("query").locator("select")
        label = select.locator("option").nth(5).text_content().replace("\xa0", " ").strip()  # nbsp in labels
        assert re.match(r"^5: pid \d+ / cam \d+ / clothes \d+", label), label
        select.select_option(index=5)
        picture_changes("picking query 5")
        assert select.evaluate("e => e.options[e.selectedIndex].text").replace("\xa0", " ").strip() == label
        notes = cell.locator(".widget-html").first.text_content()
        assert "enriched" in notes, notes  # the query's own enrichment, said under the controls

    with _step(page, "visualise-3-alpha"):  # drag the alpha handle to the left
        handle = control("alpha").locator(".noUi-handle")
        track = control("alpha").locator(".noUi-base").bounding_box()
        grip = handle.bounding_box()
        x, y = grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x - 0.5 * track["width"], y, steps=6)
        page.mouse.up()
        picture_changes("moving alpha")
        assert float(readout("alpha")) < 0.5

    with _step(page, "visualise-4-enrichment"):  # click the check box's label
        checkbox = control("enriched gallery").locator("input[type=checkbox]")
        assert checkbox.is_checked()
        control("enriched gallery").get_by_text("enriched gallery").click()
        picture_changes("switching enrichment off")
        assert not checkbox.is_checked()

    with _step(page, "visualise-5-top-k"):  # keyboard: focus the top-k handle, three steps left
        control("top-k").locator(".noUi-handle").focus()
        for _ in range(3):
            page.keyboard.press("ArrowLeft")
        after = picture_changes("lowering top-k")
        assert readout("top-k") == "5"
        assert after["width"] < shown[-2]["width"], "fewer gallery columns make a narrower picture"

    with _step(page, "visualise-6-top-k-wraps"):  # more than 10 results wrap into a second row
        control("top-k").locator(".noUi-handle").focus()
        for _ in range(10):
            page.keyboard.press("ArrowRight")
        after = picture_changes("raising top-k")
        assert readout("top-k") == "15"
        assert after["height"] > 1.5 * shown[-2]["height"], "15 results take two rows"

    assert len({s["digest"] for s in shown}) == len(shown), "every action drew a new picture"


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
