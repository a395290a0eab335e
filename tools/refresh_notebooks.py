"""Re-execute the notebooks on the demo and store their outputs in ``notebooks/``.

The committed notebooks carry these demo outputs; CI re-runs them and nbval compares the
cells marked ``# NBVAL_CHECK_OUTPUT`` (result tables, enrichment summary) with them.
Run-specific metadata (papermill timings, execution counts) is dropped so that a
refresh only changes what really changed.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("download", "enrich_gallery", "infer", "visualise", "eval", "custom_video")


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop papermill's timings; execution counts stay (nbval needs them, and a fresh
    kernel numbers the cells the same way every time)."""
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    return nb


def refresh(names: list[str]) -> None:
    for name in names:
        path = ROOT / "notebooks" / f"{name}.ipynb"
        if not path.exists():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / path.name
            print(f"executing {path.relative_to(ROOT)}", flush=True)
            # One papermill process per notebook: several kernels in one client process
            # were seen to hang here.
            subprocess.run([sys.executable, "-m", "papermill", str(path), str(out), "--cwd", str(ROOT),
                            "--no-progress-bar"], check=True, timeout=1800)
            nb = clean(nbformat.read(out, as_version=4))
        nbformat.write(nb, path)


if __name__ == "__main__":
    refresh(sys.argv[1:] or list(ORDER))
