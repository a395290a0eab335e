"""core.paths: one configurable home (REFACE_HOME) and one results folder per checkout."""
from __future__ import annotations

import pytest

from conftest import REPO
from reface_utils.core import paths


def test_reface_home_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("REFACE_HOME", str(tmp_path / "home"))
    assert paths.reface_home() == tmp_path / "home"
    assert paths.weights_dir() == tmp_path / "home" / "weights"
    assert paths.features_cache_dir() == tmp_path / "home" / "features"
    assert paths.demo_root() == tmp_path / "home" / "datasets"
    assert not (tmp_path / "home").exists()  # naming a folder never creates it


def test_reface_home_expands_the_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("REFACE_HOME", "~/shared/reface")
    assert paths.reface_home() == tmp_path / "shared" / "reface"


@pytest.mark.parametrize("value", [None, ""])
def test_reface_home_defaults_to_the_user_cache(tmp_path, monkeypatch, value):
    monkeypatch.setenv("HOME", str(tmp_path))
    if value is None:
        monkeypatch.delenv("REFACE_HOME", raising=False)
    else:
        monkeypatch.setenv("REFACE_HOME", value)  # set but empty: the default, not the working directory
    assert paths.reface_home() == tmp_path / ".cache" / "reface"
    assert paths.weights_dir() == tmp_path / ".cache" / "reface" / "weights"


def test_project_root_is_the_enclosing_checkout(tmp_path, monkeypatch):
    assert paths.project_root(REPO / "notebooks") == REPO  # Jupyter runs notebooks from notebooks/
    assert paths.project_root(REPO / "reface_utils" / "core") == REPO
    assert paths.project_root(REPO) == REPO  # papermill runs them from the root
    monkeypatch.chdir(REPO / "tests")
    assert paths.project_root() == REPO  # default: the working directory
    # a folder that merely holds a reface_utils folder, without pyproject.toml, is no checkout
    (tmp_path / "reface_utils").mkdir()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert paths.project_root(deep) == deep.resolve()
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert paths.project_root(deep) == tmp_path.resolve()


def test_results_dir_is_under_the_checkout_or_the_given_base(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO / "notebooks")
    assert paths.results_dir("demo") == REPO / "results" / "demo"
    assert paths.results_dir("ltcc", base=tmp_path / "out") == tmp_path / "out" / "ltcc"
    assert paths.results_dir("ltcc", base=str(tmp_path)) == tmp_path / "ltcc"
    assert not (tmp_path / "out").exists()  # not created here: the writers create it
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.chdir(outside)
    assert paths.results_dir("demo") == outside.resolve() / "results" / "demo"
