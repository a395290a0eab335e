"""Test-wide settings: a hermetic REFACE_HOME (never the user's cache), headless plotting; and what
the test folders share (``from conftest import ...``): ``run_python`` in a fresh process, ``NO_DAC``
(no root override of file permissions), tiny trees of demo images, ``tree_digest``, and the
``demo_images``, ``registry`` (datasets), ``small_disk`` and ``eval_runs`` fixtures; ``write_png``,
``decoded_frame_count``; which tests share a pytest-xdist worker (``worker_group``)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]
# Persistent between runs on one machine (fast re-runs), separate from ~/.cache/reface,
# and ignored by git. Tests that need an empty home use tmp_path instead.
os.environ.setdefault("REFACE_HOME", str(REPO / ".cache" / "reface-test"))


#: Runs a command without root's permission override, so that chmod 000 denies reading.
SETPRIV = shutil.which("setpriv")
NO_DAC = [SETPRIV, "--bounding-set=-dac_override,-dac_read_search"] if SETPRIV else None


def run_python(code: str, *args: str, prefix: list[str] | None = None, timeout: float = 120,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -c code args`` in a fresh process that imports this checkout (from the repo root)."""
    cmd = [*(prefix or []), sys.executable, "-c", code, *args]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=full_env)


def face_png(demo_images) -> str:
    """A query image of the ``demo_images`` fixture (a real face picture)."""
    return demo_images[demo_images["role"] == "query"]["path"].iloc[0]


def make_ltcc_tree(demo_images, folder: Path) -> Path:
    """A tiny LTCC_ReID tree of real demo images (copies)."""
    for row in demo_images.itertuples():
        rel = Path(row.path).relative_to(row.root)
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(row.path, folder / rel)
    return folder


def write_png(path: Path, rgb) -> Path:
    """An RGB array as a PNG at ``path`` (folders created)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def decoded_frame_count(path: Path) -> int:
    """Frames decoded by ffmpeg itself (not the container's claim)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root``, by relative path."""
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


class EvalRuns:
    """``papermill notebooks/eval.ipynb`` once per dataset per session, as README shows it.

    Each run uses the offline models (MobileNetV2 appearance model, SFace) and, except for
    the demo, a generated tree in that dataset's real layout
    (:func:`reface_utils.data.demo_layouts.make_layout_dataset`). All runs share the feature
    cache under REFACE_HOME, so a re-run of the suite is fast.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.done: dict[str, Path] = {}
        self.trees: dict[str, tuple[Path, dict[str, str]]] = {}  # dataset -> (tree, sha256 per file) before its run

    def command(self, dataset: str) -> list[str]:
        import sys

        from reface_utils.data.demo_layouts import make_layout_dataset

        cmd = [sys.executable, "-m", "papermill", str(REPO / "notebooks" / "eval.ipynb"),
               str(self.base / f"eval-{dataset}.ipynb"), "-p", "dataset", dataset,
               "-p", "results_root", str(self.base), "--cwd", str(REPO), "--no-progress-bar"]
        if dataset != "demo":
            root = make_layout_dataset(dataset, root=Path(os.environ["REFACE_HOME"]) / "datasets")
            self.trees[dataset] = (root, tree_digest(root))
            # the offline models, explicitly: a real dataset's defaults are the paper's (CAL, buffalo_l)
            cmd += ["-p", "data_root", str(root), "-p", "reid_model", "mobilenetv2-imagenet", "-p", "face_model", "sface"]
        return cmd

    def __call__(self, dataset: str) -> Path:
        """The results folder of ``dataset``'s run (run on first use)."""
        import subprocess

        if dataset not in self.done:
            run = subprocess.run(self.command(dataset), timeout=900, capture_output=True, text=True)
            if run.returncode != 0:
                raise AssertionError(f"papermill eval.ipynb -p dataset {dataset} failed:\n{run.stderr[-4000:]}")
            self.done[dataset] = self.base / dataset
        return self.done[dataset]


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def eval_runs(tmp_path_factory) -> EvalRuns:
    return EvalRuns(tmp_path_factory.mktemp("eval"))


@pytest.fixture(scope="module")
def demo_images():
    """Rows of the generated demo (cached under the test REFACE_HOME) for pids 1 and 2."""
    import pandas as pd

    from reface_utils.data.datasets import load_dataset

    ds = load_dataset("demo")
    rows = ds.images[ds.images["pid"].isin([1, 2])]
    gallery = rows[rows["role"] == "gallery"].iloc[::2]  # half the gallery: faster, still 2 outfits
    return pd.concat([gallery, rows[rows["role"] == "query"]]).assign(root=str(ds.root))


@pytest.fixture
def registry():
    """The dataset registry as it was before the test (registrations are real)."""
    from reface_utils.data import datasets

    saved = [(d, dict(d)) for d in (datasets.registry._SPECS, datasets.registry._ALIASES, datasets.LAYOUTS)]
    yield datasets.registry
    for d, copy in saved:
        d.clear()
        d.update(copy)


@pytest.fixture
def small_disk(tmp_path):
    """A 5 MB file system (tmpfs), as on a nearly full disk."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode()[:200]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


#: Test files whose tests start or join a Ray cluster: one at a time (a second local cluster on
#: the same machine would be seen by the "nothing left running" checks).
_RAY_FILES = ("test_cluster.py", "test_cluster_first_use.py")
#: The datasets whose eval.ipynb runs the tests compare with tests/expected/<name>.csv.
EVAL_DATASETS = tuple(sorted(p.stem for p in (REPO / "tests" / "expected").glob("*.csv")))


def worker_group(nodeid: str) -> str:
    """Which tests must share a pytest-xdist worker, in collection order (``make test`` runs
    ``-n 2 --dist loadgroup``): the cells of a notebook that nbval runs (one kernel, in
    order), the Ray tests, the browser tests, and the tests of one dataset's eval.ipynb run
    (the session's ``eval_runs`` runs it once per worker). Any other test is its own group."""
    path, _, name = nodeid.partition("::")
    file = path.rsplit("/", 1)[-1]
    if file.endswith(".ipynb"):
        return path
    if file in _RAY_FILES:
        return "ray"
    if file.startswith("test_browser"):
        return "browser"
    if file == "test_eval_datasets.py":  # the dataset is the test's parameter, or in its name
        dataset = re.search(r"\[(\w+)\]$", name)
        named = [d for d in EVAL_DATASETS if d in name]
        return f"eval-{dataset.group(1) if dataset else (named or ['demo'])[0]}"
    if file == "test_your_data.py":  # compares with the demo's eval run
        return "eval-demo"
    return nodeid


try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # pytest-xdist not installed: the suite runs in one process
    LoadScopeScheduling = None

if LoadScopeScheduling is not None:
    class _WorkerGroups(LoadScopeScheduling):
        """xdist's load-scope scheduling with :func:`worker_group` as the scope. (xdist's own
        ``loadgroup`` reads ``xdist_group`` markers through ``Item._nodeid``, which pytest 9
        no longer has: it silently spreads a group over workers.)"""

        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(config, log):
        return _WorkerGroups(config, log) if config.getvalue("dist") == "loadgroup" else None
