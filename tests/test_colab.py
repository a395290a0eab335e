"""The notebooks' Colab cell, run as Colab would run it, offline.

A kernel that has ``google.colab`` imported (a stand-in module, as Colab imports the real
one at start-up) runs the first code cell of eval.ipynb. The repository is cloned from
this checkout (``REFACE_GIT=file://...``) and ``pip`` is a recorder placed first on the
kernel's path, so the test sees exactly what the cell installs without installing it.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]

RECORDER = '''import json, os, sys
with open(os.environ["PIP_RECORD"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
'''


def test_colab_cell_clones_installs_and_enters_the_checkout(tmp_path):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout to clone from")
    fakes = tmp_path / "fakes"
    (fakes / "google" / "colab").mkdir(parents=True)
    (fakes / "google" / "__init__.py").write_text("")
    (fakes / "google" / "colab" / "__init__.py").write_text('"""Stand-in for Colab\'s module."""\n')
    (fakes / "pip").mkdir()
    (fakes / "pip" / "__init__.py").write_text("")
    (fakes / "pip" / "__main__.py").write_text(RECORDER)
    record, clone = tmp_path / "pip.jsonl", tmp_path / "content" / "reface"
    env = {"PYTHONPATH": os.pathsep.join([str(fakes), str(REPO)]), "PIP_RECORD": str(record),
           "REFACE_GIT": f"file://{REPO}", "REFACE_DIR": str(clone),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}

    colab_cell = [c for c in nbformat.read(REPO / "notebooks" / "eval.ipynb", as_version=4).cells
                  if c.cell_type == "code"][0]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import google.colab"), nbformat.v4.new_code_cell(colab_cell.source),
                nbformat.v4.new_code_cell("import os; print(os.getcwd())")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    assert (clone / "pyproject.toml").is_file() and (clone / "notebooks" / "eval.ipynb").is_file()
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert ["install", "-q", "-e", f"{clone}[colab]"] in calls, calls
    # CPU torch here: the matching onnxruntime is the CPU one already installed, so no swap;
    # on a CUDA runtime the same command swaps in onnxruntime-gpu (tests/test_runtime.py).
    assert all(call[0] == "install" for call in calls), calls
    assert nb.cells[2].outputs[0]["text"].strip() == str(clone)


def test_colab_cell_does_nothing_outside_colab():
    colab_cell = [c for c in nbformat.read(REPO / "notebooks" / "eval.ipynb", as_version=4).cells
                  if c.cell_type == "code"][0]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(colab_cell.source + "\nprint(sorted(k for k in dir() if k.isupper()))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    assert nb.cells[0].outputs[0]["text"].strip() == "[]"  # nothing defined, nothing run
