"""A real JupyterLab in a real (headless) Chromium, for tests that use the notebooks as a person does.

The server runs on a free loopback port with a token, from a temporary folder, with every
Jupyter/IPython settings and runtime folder inside that folder, so a test run writes
nothing into the repository or the user's home. Chromium is Debian's ``chromium`` driven
by Playwright through ``executable_path`` (Playwright's own browser download needs the
internet). Page helpers wait on conditions (an output appeared, a prompt got a number, the
kernel went idle), never on fixed sleeps.
"""
from __future__ import annotations

import base64
import io
import importlib.util
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
class JupyterLab:
    """A running server: its URL, token, root folder, process and log file."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen
    log: Path

    def lab_url(self, path: str) -> str:
        """The page that opens ``path`` (relative to the root) in a fresh workspace."""
        return f"{self.url}/lab/tree/{quote(path)}?reset&token={self.token}"

    def files_url(self, path: str) -> str:
        """Where the server serves the file ``path`` (relative to the root) as is."""
        return f"{self.url}/files/{quote(path)}"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


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


def start_jupyterlab(root: Path, base: Path, env: dict[str, str], *, timeout: float = 120) -> JupyterLab:
    """Start JupyterLab serving ``root``; its log goes to ``base/jupyterlab.log``.

    It runs in its own session (process group) so that it and its kernels can be told
    apart from everything else and stopped together.
    """
    token = base64.urlsafe_b64encode(os.urandom(18)).decode()
    port = free_loopback_port()
    log = base / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True",
           "--ServerApp.terminals_enabled=False", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, cwd=root)
    lab = JupyterLab(f"http://127.0.0.1:{port}", token, root, process, log)

    def answering() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{lab.log_tail()}")
        try:
            with urllib.request.urlopen(f"{lab.url}/api/status?token={token}", timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    try:
        wait_until(answering, timeout=timeout, what=f"JupyterLab to answer on port {port}", every=0.5)
    except BaseException:
        stop_jupyterlab(lab)
        raise
    return lab


def stop_jupyterlab(lab: JupyterLab, *, timeout: float = 30) -> None:
    """Ask the server to shut down (it stops its kernels first); signal its group if it won't."""
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


# --- in the page -------------------------------------------------------------------------

def open_notebook(page, lab: JupyterLab, path: str, *, timeout: float = 120) -> None:
    """Open ``path`` and wait until its kernel has started and is idle."""
    page.goto(lab.lab_url(path))
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=timeout * 1000)
    page.get_by_text(re.compile(r"\| Idle$")).first.wait_for(timeout=timeout * 1000)


def menu(page, *items: str) -> None:
    """Click through the menu bar, e.g. ``menu(page, "Run", "Run All Cells")``."""
    for item in items:
        page.get_by_role("menuitem", name=item, exact=True).click()


def kernel_idle(page) -> bool:
    return page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\| Idle$")).count() > 0


# textContent, not innerText: JupyterLab skips rendering cells scrolled out of view
# (content-visibility), and innerText is empty for those.
TEXTS_JS = "els => els.map(e => e.textContent)"


def error_outputs(page) -> list[str]:
    """Errors a person would see: tracebacks in cell outputs or in the Log Console (where
    exceptions raised in widget callbacks go), and widgets that failed to display."""
    texts = page.locator(".jp-OutputArea-output").evaluate_all(TEXTS_JS)
    return [t[:2000] for t in texts if "Traceback" in t or "Error displaying widget" in t]


def log_console_entries(page) -> list[str]:
    """What the open Log Console holds (kind: text). Output a kernel produces outside any
    cell lands there: tracebacks and warnings from widget callbacks, stray figures."""
    return page.locator(".jp-LogConsole .jp-OutputArea-output").evaluate_all(
        "els => els.map(e => (e.getAttribute('data-mime-type') || 'output') + ': ' + e.textContent.slice(0, 2000))")


def run_all_and_wait(page, code_cells: int, *, timeout: float) -> None:
    """Run -> Run All Cells, then wait until every code cell has an execution count; stop
    early with the traceback when a cell fails (JupyterLab then skips the rest)."""
    menu(page, "Run", "Run All Cells")
    prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt")

    def finished() -> bool:
        errors = error_outputs(page)
        if errors:
            raise AssertionError(f"a cell failed during Run All:\n{errors[0]}")
        texts = prompts.evaluate_all(TEXTS_JS)
        return len(texts) == code_cells and all(re.fullmatch(r"\[\d+\]:", t.strip()) for t in texts)

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
