"""The notebooks as sources: jupytext pairs in sync, stripped outputs, parameters papermill sees.

(The notebooks run end to end in test_eval_datasets.py; nbval, configured in
pyproject.toml, re-runs each one on the demo and compares its ``keep_output`` cells.)
"""
from __future__ import annotations

import logging
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import jupytext
import nbformat
import papermill as pm
import pytest

from reface_utils.apps import pipeline

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = ("download", "enrich_gallery", "infer", "visualise", "eval", "custom_video")
PIPELINE_NOTEBOOKS = NOTEBOOKS[:-1]
#: Keys nbstripout strips on top of its defaults: papermill's run records.
STRIP_KEYS = "metadata.papermill cell.metadata.papermill cell.metadata.execution"
#: Parameters of a notebook beyond pipeline.PARAMETERS.
OWN = {"visualise": {"num_queries", "k"}}


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)


def repository_url() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_and_its_py_percent_pair_say_the_same(name):
    ipynb, py = read(name), jupytext.read(REPO / "notebooks" / f"{name}.py")
    assert ipynb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    cells = lambda nb: [(c.cell_type, c.source, sorted(c.metadata.get("tags", [])),  # noqa: E731
                         bool(c.metadata.get("keep_output"))) for c in nb.cells]
    assert cells(ipynb) == cells(py), (f"notebooks/{name}.ipynb and notebooks/{name}.py differ: run "
                                       f"`jupytext --sync notebooks/{name}.ipynb` (see docs/NOTEBOOKS.md)")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_carries_only_the_checked_text_outputs(name):
    nb = read(name)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = cell.get("outputs", [])
        if not cell.metadata.get("keep_output"):
            assert not outputs, f"{name}: a cell that nbval does not check has outputs: {cell.source[:60]!r}"
            continue
        assert cell.source.startswith("# NBVAL_CHECK_OUTPUT")
        for out in outputs:  # text, and a displayed table's HTML beside its text (the text is what is compared)
            assert out["output_type"] == "stream" or set(out.get("data", {})) <= {"text/plain", "text/html"}, \
                f"{name}: only text outputs and tables are committed"
    # Execution counts stay: nbval reads a checked cell without one as "never run".
    run = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", "--keep-count", "--extra-keys", STRIP_KEYS,
                          str(REPO / "notebooks" / f"{name}.ipynb")], capture_output=True, text=True)
    assert run.returncode == 0, f"{name}.ipynb is not stripped: `make notebooks` (see docs/NOTEBOOKS.md)"


def test_notebooks_folder_stays_small():
    size = sum(p.stat().st_size for p in (REPO / "notebooks").iterdir() if p.is_file())
    assert size < 300_000, f"notebooks/ holds {size} bytes"


@pytest.mark.parametrize("name", PIPELINE_NOTEBOOKS)
def test_papermill_sees_every_parameter_with_its_help(name, caplog):
    with caplog.at_level(logging.WARNING, logger="papermill"):
        inspected = pm.inspect_notebook(str(REPO / "notebooks" / f"{name}.ipynb"))
    assert not [r for r in caplog.records if "Unable to parse" in r.getMessage()]
    own = OWN.get(name, set())
    assert set(inspected) - own == set(pipeline.PARAMETERS)
    defaults = {f.name: f.default for f in fields(pipeline.Settings)}
    for parameter, info in inspected.items():
        if parameter in own:
            continue
        assert info["help"] == pipeline.PARAMETERS[parameter], parameter
        assert eval(info["default"]) == defaults[parameter], parameter  # the Settings default


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_first_code_cell_is_the_same_colab_setup_everywhere(name):
    code = [c for c in read(name).cells if c.cell_type == "code"]
    colab = code[0].source
    assert "google.colab" in colab and "%pip install" in colab
    assert f'"{repository_url()}"' in colab, "the repository URL is pyproject's [project.urls] Repository"
    assert colab == [c for c in read("eval").cells if c.cell_type == "code"][0].source
    assert "parameters" in code[1].metadata.get("tags", [])


def test_readme_badges_point_at_the_repository():
    readme = (REPO / "README.md").read_text()
    slug = repository_url().removeprefix("https://github.com/")
    badges = readme.count("colab.research.google.com/github/")
    assert badges >= 6 and readme.count(f"colab.research.google.com/github/{slug}/") == badges


def test_settings_from_a_namespace_refuse_unknown_names():
    namespace = {"dataset": "ltcc", "reid_model": "mobilenetv2-imagenet", "aplha": 0.5, "np": pytest,
                 "In": [], "REFACE_GIT": "x", "_hidden": 1}
    with pytest.raises(TypeError, match="'aplha' \\(did you mean 'alpha'\\?\\)"):
        pipeline.settings_from_namespace(namespace)
    namespace.pop("aplha")
    assert pipeline.settings_from_namespace(namespace).dataset == "ltcc"
    assert pipeline.settings_from_namespace({**namespace, "k": 3}, own=("k",)).dataset == "ltcc"


def test_a_misspelt_parameter_stops_eval_before_any_work(tmp_path):
    run = subprocess.run([sys.executable, "-m", "papermill", str(REPO / "notebooks" / "eval.ipynb"),
                          str(tmp_path / "out.ipynb"), "-p", "aplha", "0.5", "-p", "results_root", str(tmp_path),
                          "--cwd", str(REPO), "--no-progress-bar"], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "did you mean 'alpha'" in run.stderr
    assert not (tmp_path / "demo").exists()  # nothing ran, nothing was written


def test_papermill_sees_every_custom_video_parameter_with_the_api_defaults(caplog):
    from reface_utils.apps import custom

    with caplog.at_level(logging.WARNING, logger="papermill"):
        inspected = pm.inspect_notebook(str(REPO / "notebooks" / "custom_video.ipynb"))
    assert not [r for r in caplog.records if "Unable to parse" in r.getMessage()]
    settings = {f.name: f.default for f in fields(custom.VideoSettings)}
    settings.pop("tracker_options")  # a mapping: Python API only
    assert set(inspected) == set(settings) | set(custom.NOTEBOOK_INPUTS)
    for name, default in settings.items():  # one set of defaults: the notebook's are the API's
        assert eval(inspected[name]["default"]) == default, name
        assert inspected[name]["help"], f"{name} has no help text"


def test_a_misspelt_parameter_stops_custom_video_before_any_work(tmp_path):
    run = subprocess.run([sys.executable, "-m", "papermill", str(REPO / "notebooks" / "custom_video.ipynb"),
                          str(tmp_path / "out.ipynb"), "-p", "aplha", "0.5", "-p", "results_root", str(tmp_path),
                          "--cwd", str(REPO), "--no-progress-bar"], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "did you mean 'alpha'" in run.stderr
    assert not (tmp_path / "custom").exists()
