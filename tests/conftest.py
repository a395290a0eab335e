"""Test-wide settings: a hermetic REFACE_HOME (never the user's cache), headless plotting."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]
# Persistent between runs on one machine (fast re-runs), separate from ~/.cache/reface,
# and ignored by git. Tests that need an empty home use tmp_path instead.
os.environ.setdefault("REFACE_HOME", str(REPO / ".cache" / "reface-test"))


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
