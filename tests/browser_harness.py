"""A real Jupyter front end in a real (headless) Chromium, for tests that use the notebooks as a person does.

Two front ends: JupyterLab 4 (with this environment's ipywidgets 8; tests/notebooks/test_browser.py)
and the classic Notebook 6.5 with ipywidgets 7.7 and widgetsnbextension 3, the widget
protocol Colab renders (tests/notebooks/test_browser_classic.py), whose server and kernel run from
another Python (the Python 3.12 venv of ``make install-py312``). The page helpers take the
front end (``LAB`` or ``CLASSIC``); what a person does with the retrieval browser is one
function for both (:func:`drive_retrieval_browser`).

The server runs on a free loopback port with a token, from a temporary folder, with every
Jupyter/IPython settings and runtime folder inside that folder, so a test run writes
nothing into the repository or the user's home. Chromium is Debian's ``chromium`` driven
by Playwright through ``executable_path`` (Playwright's own browser download needs the
internet). Page helpers wait on conditions (an output appeared, a prompt got a number, the
kernel went idle), never on fixed sleeps.
"""
from __future__ import annotations

import base64
import contextlib
import io
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar
from urllib.parse import quote

import numpy as np
import psutil
import pytest

T = TypeVar("T")

# Debian's chromium on a machine without internet: without the background-networking flags
# it keeps trying (and failing) to reach Google's services.
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required")


def find_chromium() -> str | None:
    """``$REFACE_CHROMIUM``, else Debian's ``/usr/bin/chromium``, else one on PATH."""
    candidates = [os.environ.get("REFACE_CHROMIUM"), "/usr/bin/chromium",
                  shutil.which("chromium"), shutil.which("chromium-browser")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def chromium_environment(base: Path) -> dict[str, str]:
    """Chromium's environment: its config and cache folders (crash reports, dconf) under
    ``base`` rather than the user's home."""
    env = dict(os.environ)
    for var, name in (("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache")):
        (base / name).mkdir(parents=True, exist_ok=True)
        env[var] = str(base / name)
    return env


def missing_browser_tools() -> str | None:
    """Why the browser tests cannot run here (one line), or None when they can."""
    missing = [name for name in ("jupyterlab", "playwright") if importlib.util.find_spec(name) is None]
    if missing:
        return f"{' and '.join(missing)} not installed: pip install -e '.[browser]'"
    if find_chromium() is None:
        return "Chromium not found: apt-get install chromium (or set REFACE_CHROMIUM to its path)"
    return None


REPO = Path(__file__).resolve().parents[1]
#: What the classic front end's Python must have: Colab's widget protocol (ipywidgets 7.7 with
#: widgetsnbextension 3) and a classic Notebook server (Notebook 6.5, or nbclassic).
CLASSIC_NEEDS = {"ipywidgets": "7.7.", "widgetsnbextension": "3.", "ipykernel": ""}
CLASSIC_SERVERS = {"notebook": "6.", "nbclassic": ""}


def classic_python() -> Path:
    """The Python whose classic Notebook server and kernel the classic test runs:
    ``$REFACE_CLASSIC_PYTHON``, else the Python 3.12 venv of ``make install-py312``."""
    return Path(os.environ.get("REFACE_CLASSIC_PYTHON") or REPO / ".venv312" / "bin" / "python")


def python_packages(python: Path, names: Iterable[str]) -> dict[str, str | None]:
    """The installed version of each of ``names`` in ``python``'s environment (None: absent)."""
    code = ("import importlib.metadata as m, json, sys\n"
            "def v(n):\n"
            "    try: return m.version(n)\n"
            "    except m.PackageNotFoundError: return None\n"
            "print(json.dumps({n: v(n) for n in sys.argv[1:]}))")
    run = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        raise RuntimeError(f"{python} could not list its packages:\n{run.stderr[-2000:]}")
    return json.loads(run.stdout)


def wait_for_classic_build(timeout: float = 1200) -> None:
    """CI builds the Python 3.12 venv while the suite runs (.ci/run): the file named by
    ``$REFACE_CLASSIC_BUILDING`` exists until that build has ended, well or not."""
    marker = os.environ.get("REFACE_CLASSIC_BUILDING")
    deadline = time.monotonic() + timeout
    while marker and Path(marker).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Python 3.12 venv was still being built after {timeout:.0f} s ({marker})")
        time.sleep(2)


def skip_unless_available(missing: str | None, *, allow_module_level: bool = False) -> None:
    """Skip a browser test when something it needs is ``missing`` (one line); under
    REFACE_REQUIRE_BROWSER=1 (CI) fail instead."""
    if missing is None:
        return
    if os.environ.get("REFACE_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"REFACE_REQUIRE_BROWSER=1 but {missing}")
    pytest.skip(missing, allow_module_level=allow_module_level)


def missing_classic_browser() -> str | None:
    """Why the classic front-end test cannot drive a browser here (one line), or None."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright not installed: pip install -e '.[browser]'"
    if find_chromium() is None:
        return "Chromium not found: apt-get install chromium (or set REFACE_CHROMIUM to its path)"
    return None


def missing_classic_tools(python: Path) -> str | None:
    """Why the classic front-end test cannot run here (one line), or None when it can. Waits
    for a build of the 3.12 venv in progress (:func:`wait_for_classic_build`), so call it
    when the test runs, not when it is collected."""
    if missing := missing_classic_browser():
        return missing
    wait_for_classic_build()
    if not os.access(python, os.X_OK):
        return (f"no Python for the classic Notebook at {python}: make install-py312 "
                f"(or set REFACE_CLASSIC_PYTHON)")
    versions = python_packages(python, [*CLASSIC_NEEDS, *CLASSIC_SERVERS])
    wrong = [f"{name} {versions[name] or 'missing'} (needs {prefix or 'any'}{'x' if prefix else ''})"
             for name, prefix in CLASSIC_NEEDS.items()
             if versions[name] is None or not versions[name].startswith(prefix)]
    if not any(versions[n] and versions[n].startswith(p) for n, p in CLASSIC_SERVERS.items()):
        wrong.append("neither notebook 6.x nor nbclassic")
    if wrong:
        return f"{python} lacks the classic Notebook's pieces: {', '.join(wrong)} (make install-py312)"
    return None


def fresh_copy(src: Path, dst: Path) -> int:
    """Copy a notebook without its stored outputs (a person's Clear All Outputs); return
    its number of code cells."""
    import nbformat

    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, dst)
    return sum(cell.cell_type == "code" for cell in nb.cells)


def wait_until(condition: Callable[[], T], *, timeout: float, what: str, every: float = 0.25) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class JupyterServer:
    """A running server: its URL, token, root folder, process and log file, and the front
    end it serves ("lab": JupyterLab; "classic": the classic Notebook)."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen
    log: Path
    frontend: str = "lab"

    def lab_url(self, path: str) -> str:
        """The page that opens ``path`` (relative to the root) in a fresh workspace."""
        return f"{self.url}/lab/tree/{quote(path)}?reset&token={self.token}"

    def notebook_url(self, path: str) -> str:
        """The page that opens the notebook ``path`` in this server's front end."""
        if self.frontend == "classic":
            return f"{self.url}/notebooks/{quote(path)}?token={self.token}"
        return self.lab_url(path)

    def files_url(self, path: str) -> str:
        """Where the server serves the file ``path`` (relative to the root) as is."""
        return f"{self.url}/files/{quote(path)}"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


JupyterLab = JupyterServer  # the JupyterLab tests' name for it


def checkout_environment(workdir: Path) -> dict[str, str]:
    """:func:`lab_environment` for a server whose kernels import this checkout and share the
    tests' REFACE_HOME."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return lab_environment(workdir, {"PYTHONPATH": pythonpath, "REFACE_HOME": os.environ["REFACE_HOME"]})


@contextlib.contextmanager
def new_tab(browser, *, console_errors: bool = False):
    """A tab whose ``js_errors`` collects uncaught JavaScript errors (and, with
    ``console_errors``, errors logged to the console); closed afterwards."""
    tab = browser.new_page()
    tab.js_errors = []
    tab.on("pageerror", lambda error: tab.js_errors.append(str(error)))
    if console_errors:
        tab.on("console", lambda msg: msg.type == "error" and tab.js_errors.append(f"console: {msg.text}"))
    try:
        yield tab
    finally:
        tab.close()


def lab_environment(base: Path, extra: dict[str, str]) -> dict[str, str]:
    """The server's environment: every Jupyter/IPython folder under ``base``, news and
    update checks off (no internet), plus ``extra`` (e.g. PYTHONPATH, REFACE_HOME)."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # kernels use the inline backend
    folders = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data", "JUPYTER_RUNTIME_DIR": "runtime",
               "JUPYTERLAB_SETTINGS_DIR": "lab-settings", "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
               "IPYTHONDIR": "ipython"}
    for var, name in folders.items():
        (base / name).mkdir(parents=True, exist_ok=True)
        env[var] = str(base / name)
    notification = base / "lab-settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    # Otherwise a "get notified about Jupyter news?" toast covers part of the page.
    (notification / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')
    env.update(extra)
    return env


def start_jupyterlab(root: Path, base: Path, env: dict[str, str], *, timeout: float = 120) -> JupyterServer:
    """Start JupyterLab serving ``root``; its log goes to ``base/jupyterlab.log``.

    It runs in its own session (process group) so that it and its kernels can be told
    apart from everything else and stopped together.
    """
    token = base64.urlsafe_b64encode(os.urandom(18)).decode()
    port = free_loopback_port()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True",
           "--ServerApp.terminals_enabled=False", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]
    return _start_server(cmd, root, base, env, token=token, port=port, frontend="lab", timeout=timeout)


def start_classic_notebook(root: Path, base: Path, env: dict[str, str], *, python: Path,
                           timeout: float = 120) -> JupyterServer:
    """Start the classic Notebook (6.5: ``python -m notebook``, else nbclassic) of ``python``'s
    environment serving ``root``; its kernels run that Python too (its ``python3`` kernel).
    Its log goes to ``base/classic-notebook.log``; its own session, as for JupyterLab."""
    token = base64.urlsafe_b64encode(os.urandom(18)).decode()
    port = free_loopback_port()
    versions = python_packages(python, CLASSIC_SERVERS)
    if versions["notebook"] and versions["notebook"].startswith("6."):
        app, cmd = "NotebookApp", [str(python), "-m", "notebook", f"--NotebookApp.notebook_dir={root}"]
    else:
        app, cmd = "ServerApp", [str(python), "-m", "nbclassic", f"--ServerApp.root_dir={root}"]
    cmd += ["--no-browser", f"--{app}.ip=127.0.0.1", f"--{app}.port={port}", f"--{app}.port_retries=0",
            f"--{app}.token={token}", f"--{app}.allow_root=True", f"--{app}.terminals_enabled=False"]
    return _start_server(cmd, root, base, env, token=token, port=port, frontend="classic", timeout=timeout)


def _start_server(cmd: list[str], root: Path, base: Path, env: dict[str, str], *, token: str, port: int,
                  frontend: str, timeout: float) -> JupyterServer:
    name = "JupyterLab" if frontend == "lab" else "the classic Notebook"
    log = base / ("jupyterlab.log" if frontend == "lab" else "classic-notebook.log")
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, cwd=root)
    server = JupyterServer(f"http://127.0.0.1:{port}", token, root, process, log, frontend)

    def answering() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/api/status?token={token}", timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    try:
        wait_until(answering, timeout=timeout, what=f"{name} to answer on port {port}", every=0.5)
    except BaseException:
        stop_jupyterlab(server)
        raise
    return server


def stop_jupyterlab(lab: JupyterServer, *, timeout: float = 30) -> None:
    """Ask the server (either front end's) to shut down (it stops its kernels first);
    signal its group if it won't."""
    if lab.process.poll() is None:
        request = urllib.request.Request(f"{lab.url}/api/shutdown", method="POST",
                                         headers={"Authorization": f"token {lab.token}"})
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            try:
                os.killpg(lab.process.pid, sig)
            except ProcessLookupError:
                pass
        try:
            lab.process.wait(timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    # Kernels are in the server's process group: make sure none outlives it.
    try:
        os.killpg(lab.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes whose command line contains ``text`` (e.g. a test's temporary folder)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_gone(processes: Iterable[psutil.Process], *, timeout: float = 20) -> list[str]:
    """The processes still running after ``timeout`` s, described (empty: all gone)."""
    def alive() -> list[psutil.Process]:
        still = []
        for p in processes:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    still.append(p)
            except psutil.NoSuchProcess:
                continue
        return still

    try:
        wait_until(lambda: not alive(), timeout=timeout, what="processes to exit", every=0.2)
        return []
    except AssertionError:
        out = []
        for p in alive():
            try:
                out.append(f"{p.pid} {' '.join(p.cmdline())[:160]}")
            except psutil.NoSuchProcess:
                continue
        return out


@contextlib.contextmanager
def serving(server: JupyterServer, folder: Path):
    """Yield the started ``server``; afterwards shut it down and fail if any of its
    processes (the kernels too), or any process whose command line names ``folder``
    (e.g. an orphaned kernel), is left."""
    spawned = [psutil.Process(server.process.pid)]
    try:
        yield server
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            spawned += spawned[0].children(recursive=True)  # the kernels
        stop_jupyterlab(server)
    left = wait_gone(spawned) + [f"{p.pid} {' '.join(p.cmdline())[:160]}"
                                 for p in processes_mentioning(f"{folder}{os.sep}")]
    assert not left, "the Jupyter server left processes behind:\n" + "\n".join(left)


@contextlib.contextmanager
def chromium(base: Path, *, timeout: float, viewport: tuple[int, int] = (1400, 1000)):
    """Debian's Chromium, driven by Playwright, with a fresh profile under ``base``: yields
    its browser context (``timeout`` s: each action's default); afterwards fails if any of
    its processes is left running."""
    from playwright.sync_api import sync_playwright

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(base / "profile"), executable_path=find_chromium(), headless=True,
            args=list(CHROMIUM_ARGS), env=chromium_environment(base),
            viewport={"width": viewport[0], "height": viewport[1]})
        context.set_default_timeout(timeout * 1000)
        try:
            yield context
        finally:
            spawned = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
            context.close()
    left = wait_gone(spawned) + [
        f"{p.pid} {' '.join(p.cmdline())[:160]}" for p in processes_mentioning(f"{base}{os.sep}")]
    assert not left, "Chromium left processes behind:\n" + "\n".join(left)


@contextlib.contextmanager
def screenshot_step(page, folder: Path, name: str):
    """One thing a person does: a screenshot ``folder/<name>.png`` afterwards, or
    ``<name>-FAILED.png`` if it failed."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(folder / f"{name}-FAILED.png"))
        raise
    page.screenshot(path=str(folder / f"{name}.png"))


# --- in the page -------------------------------------------------------------------------

@dataclass(frozen=True)
class Frontend:
    """Where a front end puts things in its page (CSS selectors)."""

    name: str
    cells: str          # every cell of the open notebook
    code_cells: str     # its code cells, in order
    prompt: str         # a code cell's input prompt ("[3]:" in JupyterLab, "In [3]:" in classic)
    outputs: str        # one output's content, in any cell
    output_areas: str   # one output (its prompt and content), within a cell


LAB = Frontend("lab", ".jp-Notebook .jp-Cell", ".jp-Notebook .jp-CodeCell", ".jp-InputPrompt",
               ".jp-OutputArea-output", ".jp-OutputArea-child")
CLASSIC = Frontend("classic", "#notebook-container .cell", "#notebook-container .code_cell", ".input_prompt",
                   ".output_subarea", ".output_area")
FRONTENDS = {f.name: f for f in (LAB, CLASSIC)}
# A finished prompt; \s takes the classic front end's no-break space ("In\xa0[3]:").
PROMPT_DONE = re.compile(r"(In\s*)?\[\d+\]:")

# The widgets' own markup, the same in ipywidgets 7 and 8 except the sliders: noUiSlider in 8,
# jQuery UI in 7.
SLIDER_HANDLE = ".noUi-handle, .ui-slider-handle"
SLIDER_TRACK = ".noUi-base, .ui-slider"
WIDGET_LABEL = ".widget-label, .widget-label-basic"


def open_notebook(page, lab: JupyterServer, path: str, *, timeout: float = 120) -> None:
    """Open ``path`` in the server's front end and wait until its kernel has started and is
    idle (classic: and the widget manager is there, i.e. widgetsnbextension is enabled)."""
    frontend = FRONTENDS[lab.frontend]
    if frontend is CLASSIC:
        # Notebook 6.5's "Notebook 7 is coming" notice, as after a person's "Don't show again".
        # (Its show_banner=False instead breaks the page's own script: a JavaScript error.)
        page.add_init_script("localStorage.setItem('showNotebookNews', 'false')")
    page.goto(lab.notebook_url(path))
    page.locator(frontend.cells).first.wait_for(timeout=timeout * 1000)
    if frontend is LAB:
        page.get_by_text(re.compile(r"\| Idle$")).first.wait_for(timeout=timeout * 1000)
        return
    wait_until(lambda: kernel_idle(page, CLASSIC), timeout=timeout, what="the classic Notebook's kernel to be idle")
    wait_until(lambda: page.evaluate(CLASSIC_WIDGET_MANAGER_JS), timeout=timeout,
               what="the classic Notebook's widget manager (is widgetsnbextension enabled?)")


CLASSIC_WIDGET_MANAGER_JS = """() => !!(window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel
                                      && Jupyter.notebook.kernel.widget_manager)"""


def menu(page, *items: str, frontend: Frontend = LAB) -> None:
    """Click through the menu bar, e.g. ``menu(page, "Run", "Run All Cells")`` (JupyterLab)
    or ``menu(page, "Cell", "Run All", frontend=CLASSIC)``."""
    if frontend is LAB:
        for item in items:
            page.get_by_role("menuitem", name=item, exact=True).click()
        return
    top, *rest = items
    page.locator("#menubar a.dropdown-toggle", has_text=re.compile(f"^{re.escape(top)}$")).click()
    for item in rest:
        page.locator("#menubar li.dropdown.open ul.dropdown-menu > li > a",
                     has_text=re.compile(f"^{re.escape(item)}$")).click()


def kernel_idle(page, frontend: Frontend = LAB) -> bool:
    if frontend is LAB:
        return page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\| Idle$")).count() > 0
    return page.locator("#kernel_indicator_icon.kernel_idle_icon").count() > 0


# textContent, not innerText: JupyterLab skips rendering cells scrolled out of view
# (content-visibility), and innerText is empty for those.
TEXTS_JS = "els => els.map(e => e.textContent)"

#: What a failed widget shows instead of itself: JupyterLab's and the classic widget
#: manager's messages.
WIDGET_FAILURES = ("Error displaying widget", "Failed to display Jupyter Widget", "Error rendering widget",
                   "Could not create a view", "Could not create a model")


def error_outputs(page, frontend: Frontend = LAB) -> list[str]:
    """Errors a person would see: tracebacks in cell outputs (in the classic front end that
    is also where exceptions raised in widget callbacks go; JupyterLab sends those to its
    Log Console), and widgets that failed to display."""
    texts = page.locator(frontend.outputs).evaluate_all(TEXTS_JS)
    return [t[:2000] for t in texts if "Traceback" in t or any(f in t for f in WIDGET_FAILURES)]


def log_console_entries(page) -> list[str]:
    """What JupyterLab's open Log Console holds (kind: text). Output a kernel produces outside
    any cell lands there: tracebacks and warnings from widget callbacks, stray figures."""
    return page.locator(".jp-LogConsole .jp-OutputArea-output").evaluate_all(
        "els => els.map(e => (e.getAttribute('data-mime-type') || 'output') + ': ' + e.textContent.slice(0, 2000))")


def cell_outputs(cell, frontend: Frontend) -> list[str]:
    """Each output of ``cell`` (one line: widget or the start of its text). The classic
    front end puts what a widget's callback prints, warns or raises, and a figure it leaves
    open, under the cell that shows the widget: a widget cell should hold the widget alone."""
    return cell.locator(frontend.output_areas).evaluate_all(
        """els => els.map(e => e.querySelector('.jupyter-widgets, .widget-area, .jupyter-widgets-view')
                                ? 'widget' : 'output: ' + e.textContent.trim().slice(0, 2000))""")


def run_all_and_wait(page, code_cells: int, *, timeout: float, frontend: Frontend = LAB) -> None:
    """Run -> Run All Cells (classic: Cell -> Run All), then wait until every code cell has
    an execution count; stop early with the traceback when a cell fails (the front end then
    skips the rest)."""
    if frontend is LAB:
        menu(page, "Run", "Run All Cells")
    else:
        menu(page, "Cell", "Run All", frontend=CLASSIC)
    prompts = page.locator(f"{frontend.code_cells} {frontend.prompt}")

    def finished() -> bool:
        errors = error_outputs(page, frontend)
        if errors:
            raise AssertionError(f"a cell failed during Run All:\n{errors[0]}")
        texts = prompts.evaluate_all(TEXTS_JS)
        return len(texts) == code_cells and all(PROMPT_DONE.fullmatch(t.strip()) for t in texts)

    wait_until(finished, timeout=timeout, what=f"all {code_cells} code cells to run", every=0.5)


IMAGE_DIGEST_JS = """async (img) => {
  if (!img.src || !img.complete || img.naturalWidth === 0) return null;
  try {
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return {digest: Array.from(hash, b => b.toString(16).padStart(2, '0')).join(''),
            width: img.naturalWidth, height: img.naturalHeight, bytes: bytes.length,
            png: bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47};
  } catch (e) { return null; }  // the widget revoked this blob URL for a newer picture
}"""


def rendered_image(img) -> dict | None:
    """What ``img`` shows now: SHA-256 of its bytes, natural size, byte count, PNG or not.
    (The widget puts each picture under a new blob URL, so the URL says nothing.)"""
    return img.evaluate(IMAGE_DIGEST_JS)


def first_picture(cell, *, timeout: float) -> dict:
    """The retrieval browser's first picture in ``cell``, once it has rendered (a wide PNG)."""
    image = cell.locator("img.widget-image")
    first = wait_until(lambda: rendered_image(image), timeout=timeout, what="the retrieval browser's picture")
    assert first["png"] and first["width"] > 300 and first["height"] > 100, first
    image.scroll_into_view_if_needed()
    return first


def drive_retrieval_browser(page, cell, first: dict, *, step: Callable[[str], contextlib.AbstractContextManager],
                            no_errors: Callable[[str], None], idle: Callable[[], bool],
                            timeout: float) -> list[dict]:
    """Use the retrieval browser in ``cell`` as a person would, in either front end and
    either ipywidgets: pick another query from the list, drag alpha, click the enrichment
    check box's label, step top-k down and up with the keyboard. After each action the
    picture must change, then settle (``idle()``: the kernel is idle, and the same bytes
    three times running) with ``no_errors(action)`` passing. Each action runs inside
    ``step(name)`` (e.g. a screenshot afterwards). Returns every picture shown, ``first``
    first."""
    image = cell.locator("img.widget-image")

    def control(label: str):
        return cell.locator(".widget-inline-hbox").filter(
            has=page.locator(WIDGET_LABEL, has_text=re.compile(f"^{label}$")))

    def readout(label: str) -> str:
        return control(label).locator(".widget-readout").text_content().strip()

    shown = [first]

    def picture_changes(action: str) -> dict:
        """Wait until the picture differs from the last one and has settled, then check
        that no error appeared."""
        previous = shown[-1]["digest"]

        def changed() -> bool:
            no_errors(action)  # a failing callback: say why, don't just time out
            return (rendered_image(image) or {}).get("digest", previous) != previous

        wait_until(changed, timeout=timeout, what=f"the picture to change after {action}")
        seen = []

        def settled():
            now = rendered_image(image)
            seen.append(now and now["digest"])
            return now if idle() and len(seen) >= 3 and len(set(seen[-3:])) == 1 else None

        now = wait_until(settled, timeout=timeout, what=f"the picture to settle after {action}")
        assert now["png"], now
        no_errors(action)
        shown.append(now)
        return now

    with step("2-query"):  # pick another query from the labelled list
        select = control("query").locator("select")
        label = select.locator("option").nth(5).text_content().replace("\xa0", " ").strip()  # nbsp in labels
        assert re.match(r"^5: pid \d+ / cam \d+ / clothes \d+", label), label
        select.select_option(index=5)
        picture_changes("picking query 5")
        assert select.evaluate("e => e.options[e.selectedIndex].text").replace("\xa0", " ").strip() == label
        notes = cell.locator(".widget-html").first.text_content()
        assert "enriched" in notes, notes  # the query's own enrichment, said under the controls

    with step("3-alpha"):  # drag the alpha handle to the left
        handle = control("alpha").locator(SLIDER_HANDLE)
        track = control("alpha").locator(SLIDER_TRACK).bounding_box()
        grip = handle.bounding_box()
        x, y = grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x - 0.5 * track["width"], y, steps=6)
        page.mouse.up()
        picture_changes("moving alpha")
        assert float(readout("alpha")) < 0.5

    with step("4-enrichment"):  # click the check box's label
        checkbox = control("enriched gallery").locator("input[type=checkbox]")
        assert checkbox.is_checked()
        control("enriched gallery").get_by_text("enriched gallery").click()
        picture_changes("switching enrichment off")
        assert not checkbox.is_checked()

    with step("5-top-k"):  # keyboard: focus the top-k handle, three steps left
        control("top-k").locator(SLIDER_HANDLE).focus()
        for _ in range(3):
            page.keyboard.press("ArrowLeft")
        after = picture_changes("lowering top-k")
        assert readout("top-k") == "5"
        assert after["width"] < shown[-2]["width"], "fewer gallery columns make a narrower picture"

    with step("6-top-k-wraps"):  # more than 10 results wrap into a second row
        control("top-k").locator(SLIDER_HANDLE).focus()
        for _ in range(10):
            page.keyboard.press("ArrowRight")
        after = picture_changes("raising top-k")
        assert readout("top-k") == "15"
        assert after["height"] > 1.5 * shown[-2]["height"], "15 results take two rows"

    assert len({s["digest"] for s in shown}) == len(shown), "every action drew a new picture"
    return shown


VIDEO_FRAME_JS = """async (video, src) => {
  video.muted = true;
  if (src) { video.src = src; }
  if (video.readyState < 2) {
    await new Promise((resolve, reject) => {
      video.addEventListener('loadeddata', resolve, {once: true});
      video.addEventListener('error', () => reject(new Error('video error ' + (video.error && video.error.code))), {once: true});
      if (src) { video.load(); }
    });
  }
  const presented = new Promise(resolve => video.requestVideoFrameCallback(() => resolve(true)));
  video.currentTime = video.duration / 2;
  await new Promise(resolve => video.addEventListener('seeked', resolve, {once: true}));
  await presented;
  return {width: video.videoWidth, height: video.videoHeight, duration: video.duration,
          time: video.currentTime, ready: video.readyState};
}"""


def show_video_middle(video, src: str | None = None) -> dict:
    """Load ``video`` (from ``src`` when given), seek to its middle and wait until that
    frame is on screen; its size, duration and position."""
    return video.evaluate(VIDEO_FRAME_JS, src)


def picture_spread(png: bytes, *, top: float = 0.6) -> float:
    """How much the upper ``top`` part of a screenshot varies (standard deviation of its
    grey levels): about 0 for a blank or black picture. (The upper part: a video's controls
    are drawn along its bottom.)"""
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    return float(grey[: max(1, int(top * grey.shape[0]))].std())
