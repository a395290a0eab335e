"""The notebooks' Colab cell, run as Colab would run it, offline, against what Colab ships.

A kernel that has ``google.colab`` imported (a stand-in package, as Colab imports the real
one at start-up) runs the first code cell of eval.ipynb. The repository is cloned from
this checkout (``REFACE_GIT=file://...``) and ``pip`` is a recorder placed first on the
kernel's path, so the test sees exactly what the cell installs without installing it; the
stand-in ``google.colab.output.enable_custom_widget_manager`` records whether the cell
turns Colab's custom widget manager on.

Then the recorded installs are checked against Colab (constraints-colab.txt: ipywidgets
7.7.1, ipykernel 6.17.1, IPython 7.34, ... which a Colab kernel has already imported, or
has installed): every requirement of ``[colab]`` must admit Colab's version, and pip, run
with exactly the recorded arguments (``--dry-run``, offline) in a Python 3.12 venv that
holds Colab's versions (``make install-py312``), must want to install nothing but ReFace
itself: nothing Colab has would be replaced, so no restart is needed. The widgets the
notebooks show are core ipywidgets, which Colab's own widget manager renders: the cell
needs no custom widget manager, and does not turn it on.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import browser_harness

REPO = Path(__file__).resolve().parents[2]
COLAB_PINS = REPO / "constraints-colab.txt"
#: The widget modules of ipywidgets itself, which Colab's default widget manager renders.
CORE_WIDGET_MODULES = {"@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output"}

RECORDER = '''import json, os, sys
with open(os.environ["PIP_RECORD"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
'''
COLAB_OUTPUT = '''"""Stand-in for google.colab.output: records enable_custom_widget_manager()."""
import os


def enable_custom_widget_manager():
    with open(os.environ["COLAB_RECORD"], "a") as f:
        f.write("enable_custom_widget_manager\\n")
'''


def colab_pins() -> dict[str, str]:
    """constraints-colab.txt: Colab's version of each package, by canonical name."""
    pins = {}
    for line in COLAB_PINS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints-colab.txt: not a pin: {line!r}"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def colab_cell_source() -> str:
    return [c for c in nbformat.read(REPO / "notebooks" / "eval.ipynb", as_version=4).cells
            if c.cell_type == "code"][0].source


@pytest.fixture(scope="module")
def colab_run(tmp_path_factory):
    """Run the Colab cell once in a kernel that looks like Colab's: what it recorded."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout to clone from")
    tmp_path = tmp_path_factory.mktemp("colab")
    fakes = tmp_path / "fakes"
    (fakes / "google" / "colab").mkdir(parents=True)
    (fakes / "google" / "__init__.py").write_text("")
    (fakes / "google" / "colab" / "__init__.py").write_text('"""Stand-in for Colab\'s module."""\n')
    (fakes / "google" / "colab" / "output.py").write_text(COLAB_OUTPUT)
    (fakes / "pip").mkdir()
    (fakes / "pip" / "__init__.py").write_text("")
    (fakes / "pip" / "__main__.py").write_text(RECORDER)
    record, colab_record = tmp_path / "pip.jsonl", tmp_path / "colab.txt"
    clone = tmp_path / "content" / "reface"
    env = {"PYTHONPATH": os.pathsep.join([str(fakes), str(REPO)]), "PIP_RECORD": str(record),
           "COLAB_RECORD": str(colab_record), "REFACE_GIT": f"file://{REPO}", "REFACE_DIR": str(clone),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import google.colab"), nbformat.v4.new_code_cell(colab_cell_source()),
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
    return SimpleNamespace(
        clone=clone, nb=nb, tmp=tmp_path,
        calls=[json.loads(line) for line in record.read_text().splitlines()] if record.exists() else [],
        colab_calls=colab_record.read_text().split() if colab_record.exists() else [])


def test_colab_cell_clones_installs_and_enters_the_checkout(colab_run):
    from reface_utils.core import runtime

    clone, calls = colab_run.clone, colab_run.calls
    assert (clone / "pyproject.toml").is_file() and (clone / "notebooks" / "eval.ipynb").is_file()
    expected = [["install", "-q", "-e", f"{clone}[colab]"]]
    # With a CPU torch the matching onnxruntime is the CPU one already installed: no swap. With
    # a CUDA torch (the 3.12 venv's, as on Colab) runtime --install-gpu swaps in the matching
    # onnxruntime-gpu, --no-deps (tests/core/test_runtime.py).
    cuda = runtime.torch_cuda_version()
    requirement = runtime.onnxruntime_requirement(cuda)
    if cuda is not None and not runtime.requirement_installed(requirement):
        expected += [command[3:] for command in runtime.install_commands(requirement)]
    assert calls == expected
    assert colab_run.nb.cells[2].outputs[0]["text"].strip() == str(clone)


def test_colab_cell_leaves_colabs_own_widget_manager_on(colab_run):
    # Every widget is a core one (next test), which Colab's default manager renders; the
    # custom manager (third-party widgets, loaded from a CDN) is not needed.
    assert colab_run.colab_calls == []


def _closure(extras: set[str]) -> list[Requirement]:
    """ReFace's requirements with ``extras``, ``reface[...]`` expanded (from pyproject.toml)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    reqs, todo, seen = [Requirement(r) for r in project["dependencies"]], list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for r in map(Requirement, optional[extra]):
            if canonicalize_name(r.name) == "reface":
                todo += sorted(r.extras)
            else:
                reqs.append(r)
    return reqs


def test_every_colab_requirement_admits_the_version_colab_ships():
    pins = colab_pins()
    assert {"ipywidgets", "ipykernel", "ipython"} <= set(pins) and pins["ipywidgets"] == "7.7.1"
    reqs = _closure({"colab"})
    named = {canonicalize_name(r.name) for r in reqs}
    assert {"ipywidgets", "ipykernel"} <= named, "the check would be empty"
    refused = [f"{r} refuses Colab's {pins[canonicalize_name(r.name)]}" for r in reqs
               if canonicalize_name(r.name) in pins
               and not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)]
    assert not refused, "[colab] would replace what Colab ships (a restart):\n" + "\n".join(refused)


def _colab_like_python() -> Path | None:
    """A Python whose environment holds Colab's Jupyter stack at Colab's versions: this one
    (the 3.12 venv's own test run), else the 3.12 venv of ``make install-py312``."""
    pins = colab_pins()
    names = ["ipywidgets", "ipykernel", "ipython", "notebook"]
    for python in (Path(sys.executable), browser_harness.classic_python()):
        if os.access(python, os.X_OK):
            found = browser_harness.python_packages(python, names)
            if all(found[n] == pins[n] for n in names):
                return python
    return None


def test_colab_cells_install_keeps_everything_colab_has(colab_run):
    python = _colab_like_python()
    if python is None:
        pytest.skip("no Python with Colab's packages (constraints-colab.txt): make install-py312")
    pins = colab_pins()
    installs = [call for call in colab_run.calls if call[0] == "install" and "-e" in call]
    assert installs, colab_run.calls
    for call in colab_run.calls:  # the onnxruntime swap (CUDA torch) touches onnxruntime alone, --no-deps
        if call not in installs:
            assert call[0] == "uninstall" or "--no-deps" in call, call
            assert not {canonicalize_name(Requirement(a).name) for a in call[1:] if not a.startswith("-")} & set(pins)
    for i, call in enumerate(installs):
        report = colab_run.tmp / f"report-{i}.json"
        # The cell's arguments, its clone (HEAD) replaced by this checkout (the working tree,
        # what is being tested); offline (--no-index): pip may only keep what is there.
        call = [a.replace(str(colab_run.clone), str(REPO)) for a in call]
        run = subprocess.run([str(python), "-m", "pip", *call, "--dry-run", "--no-index", "--no-build-isolation",
                              "--report", str(report)], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, (f"`pip {' '.join(call)}` cannot be met by what Colab has "
                                     f"({python}):\n{run.stderr[-3000:]}")
        wanted = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
                  for item in json.loads(report.read_text())["install"]}
        assert set(wanted) == {"reface"}, f"`pip {' '.join(call)}` would replace Colab's packages: {wanted}"


def _widget_tree(widget, seen=None) -> list:
    """``widget`` and every widget it holds (children, layout, style), each once."""
    import ipywidgets

    seen = {} if seen is None else seen
    if id(widget) in seen:
        return []
    seen[id(widget)] = widget
    for name in widget.keys:
        value = getattr(widget, name, None)
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, ipywidgets.Widget):
                _widget_tree(item, seen)
    return list(seen.values())


def test_notebook_widgets_are_core_ipywidgets(tmp_path, monkeypatch):
    """What the notebooks show: the retrieval browser and the progress bars (tqdm.notebook)."""
    import cv2
    import tqdm.notebook

    from reface_utils.apps import visualise as vis

    paths = []
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"im{i}.png"), np.full((64, 32, 3), 40 * i, np.uint8))
        paths.append(str(tmp_path / f"im{i}.png"))
    browser = vis.RetrievalBrowser(lambda q, a, e: (np.arange(3.0), np.zeros(3, bool)),
                                   lambda q, idx: np.ones(len(idx), bool), paths[:2], paths[2:], k=2)
    bar = tqdm.notebook.tqdm(range(3), display=False)
    widgets = _widget_tree(browser.widget) + _widget_tree(bar.container)
    bar.close()
    modules = {(type(w).__name__, w._model_module, getattr(w, "_view_module", None)) for w in widgets}
    assert len(widgets) >= 10, modules
    foreign = {m for m in modules if m[1] not in CORE_WIDGET_MODULES or m[2] not in CORE_WIDGET_MODULES | {None}}
    assert not foreign, f"widgets Colab's default manager cannot render: {foreign}"
