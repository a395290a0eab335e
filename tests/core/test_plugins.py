"""Plugins (reface_utils.core.plugins): files, modules and entry points register once, fail clearly."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reface_utils.core import plugins
from reface_utils.core.plugins import PluginError, load_entry_point_plugins, load_plugins, plugin_module_name
from reface_utils.data import datasets
from reface_utils.models import face, face_registry
from reface_utils.models.reid import registry as reid_registry

REPO = Path(__file__).resolve().parents[2]

PLUGIN = '''
"""A plugin: one dataset, one face model, one ReID model, from the built-in ones."""
import reface_utils
from reface_utils.data.datasets import load_dataset, register_dataset
from reface_utils.models.face import SFaceModel, register_face_model
from reface_utils.models.reid.registry import load_reid_model, register_reid_model

reface_utils._test_plugin_runs = getattr(reface_utils, "_test_plugin_runs", 0) + 1
register_dataset("{prefix}-data", lambda root, seed: load_dataset("demo", root, seed=seed), aliases=["{prefix}-alias"],
                 layout="the demo's")
register_face_model("{prefix}-face", SFaceModel)
register_reid_model("{prefix}-reid", lambda checkpoint=None, device="auto", **options:
                    load_reid_model("mobilenetv2-imagenet", checkpoint, device, **options))
'''


@pytest.fixture
def registries():
    """The registries and sys.modules as they were before the test (plugins register for real)."""
    saved = [(d, dict(d)) for d in (datasets.registry._SPECS, datasets.registry._ALIASES, datasets.LAYOUTS, face_registry._REGISTRY,
                                    reid_registry._REGISTRY)]
    modules = set(sys.modules)
    entry_points = set(plugins.LOADED_ENTRY_POINTS)
    import reface_utils
    yield
    for d, copy in saved:
        d.clear()
        d.update(copy)
    for name in set(sys.modules) - modules:
        if name.startswith(("reface_plugin_", "myplug")):
            del sys.modules[name]
    plugins.LOADED_ENTRY_POINTS.clear()
    plugins.LOADED_ENTRY_POINTS.update(entry_points)
    reface_utils.__dict__.pop("_test_plugin_runs", None)


def write_plugin(path: Path, prefix: str = "plug") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PLUGIN.format(prefix=prefix))
    return path


def test_file_plugin_registers_everything_once(tmp_path, registries, monkeypatch):
    import reface_utils

    plugin = write_plugin(tmp_path / "my plugin.py")
    names = load_plugins(str(plugin))
    assert names == [plugin_module_name(plugin)] and names[0].startswith("reface_plugin_my_plugin_")
    assert reface_utils._test_plugin_runs == 1
    # again, by another spelling of the same file (relative to the working directory): not run twice
    monkeypatch.chdir(tmp_path)
    assert load_plugins(["./my plugin.py", " my plugin.py "]) == names * 2
    assert load_plugins(f"{plugin},") == names
    assert reface_utils._test_plugin_runs == 1
    # what it registered works
    assert "plugdata" in datasets.available_datasets()  # names compare without "-"
    demo = datasets.load_dataset("plug-alias")
    assert len(demo.images) == len(datasets.load_dataset("demo").images)
    assert "plug-face" in face.available_face_models()
    assert isinstance(face.load_face_model("plug-face"), face.SFaceModel)
    assert "plug-reid" in reid_registry.available_reid_models()
    assert reid_registry.load_reid_model("plug-reid", device="cpu").dim == 1280


def test_module_plugins_and_empty_specs(tmp_path, registries, monkeypatch):
    import reface_utils

    write_plugin(tmp_path / "myplug_mod.py", prefix="mod")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_plugins("myplug_mod") == ["myplug_mod"]
    assert load_plugins(["myplug_mod"]) == ["myplug_mod"]
    assert reface_utils._test_plugin_runs == 1 and "moddata" in datasets.available_datasets()
    assert load_plugins(None) == [] and load_plugins("") == [] and load_plugins(" , ") == []
    assert load_plugins("json,os.path") == ["json", "os.path"]


def test_a_folder_in_the_working_directory_is_a_package(tmp_path, registries, monkeypatch):
    package = tmp_path / "myplug_pkg"
    write_plugin(package / "__init__.py", prefix="pkg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_plugins("myplug_pkg") == ["myplug_pkg"]
    assert "pkg-face" in face.available_face_models()


def test_broken_file_plugin(tmp_path, registries):
    broken = tmp_path / "broken.py"
    broken.write_text("import reface_utils\nx = 1\nraise RuntimeError('bad config value')\n")
    with pytest.raises(PluginError) as info:
        load_plugins(str(broken))
    msg = str(info.value)
    assert f"plugin {str(broken)!r} ({broken}) failed while importing: RuntimeError: bad config value" in msg
    assert isinstance(info.value.__cause__, RuntimeError)
    tb = info.value.__cause__.__traceback__
    while tb.tb_next:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_filename == str(broken) and tb.tb_lineno == 3  # the original traceback
    assert plugin_module_name(broken) not in sys.modules
    # fixed, it loads on the next try
    broken.write_text("VALUE = 2\n")
    [name] = load_plugins(str(broken))
    assert sys.modules[name].VALUE == 2


def test_plugin_with_a_failing_import_and_a_syntax_error(tmp_path, registries):
    imp = tmp_path / "needs.py"
    imp.write_text("import no_such_module_for_reface\n")
    with pytest.raises(PluginError, match=r"needs\.py\) failed while importing: ModuleNotFoundError: No module named "
                                          r"'no_such_module_for_reface'") as info:
        load_plugins(str(imp))
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    syn = tmp_path / "syntax.py"
    syn.write_text("def broken(:\n")
    with pytest.raises(PluginError, match=r"syntax\.py\) failed while importing: SyntaxError"):
        load_plugins(str(syn))


def test_missing_or_wrong_plugins(tmp_path, registries, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PluginError, match=r"plugin 'nope\.py': file .*nope\.py not found \(paths are relative to "
                                          r"the working directory"):
        load_plugins("nope.py")
    with pytest.raises(PluginError, match=r"plugin 'no_such_plugin_module': no module of that name is installed"):
        load_plugins("no_such_plugin_module")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(PluginError, match=r"notes\.txt is not a \.py file"):
        load_plugins("notes.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(PluginError, match=r"is a folder, not a \.py file"):
        load_plugins("./folder")
    with pytest.raises(PluginError, match=r"plugin 'my-plugin': file .* not found .*not a module name"):
        load_plugins("my-plugin")
    # a module whose own import fails is named, with the cause chained
    (tmp_path / "myplug_bad.py").write_text("import no_such_module_for_reface\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"plugin 'myplug_bad' failed while importing: ModuleNotFoundError"):
        load_plugins("myplug_bad")
    # the first failure stops the list: plugins after it are not loaded
    write_plugin(tmp_path / "later.py")
    with pytest.raises(PluginError):
        load_plugins(["nope.py", str(tmp_path / "later.py")])
    assert "plugdata" not in datasets.available_datasets()


# --------------------------------------------------------------------------- entry points

def make_distribution(site: Path, dist: str, entries: dict[str, str], modules: dict[str, str]) -> None:
    """A real installed distribution: ``<dist>-1.0.dist-info`` (name normalised as installers write
    it) with METADATA and entry_points.txt."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[reface.plugins]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()))
    for name, code in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(code))


def run_python(code: str, site: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def test_entry_points_in_a_real_distribution(tmp_path):
    site = tmp_path / "site"
    make_distribution(site, "reface-myplug", {"data": "myplug_data", "models": "myplug_models:register"}, {
        "myplug_data": """
            from reface_utils.data.datasets import load_dataset, register_dataset
            register_dataset("ep-data", lambda root, seed: load_dataset("demo", root, seed=seed))
            """,
        "myplug_models": """
            CALLS = []
            def register():
                from reface_utils.models.face import SFaceModel, register_face_model
                CALLS.append(1)
                register_face_model("ep-face", SFaceModel)
            """,
    })
    done = run_python("""
        from reface_utils.core.plugins import load_entry_point_plugins
        from reface_utils.data.datasets import available_datasets
        from reface_utils.models.face import available_face_models
        first = load_entry_point_plugins()
        second = load_entry_point_plugins()
        import myplug_models
        print(first == second, first)
        print("epdata" in available_datasets(), "ep-face" in available_face_models(), len(myplug_models.CALLS))
        """, site)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.startswith("True ") and "'reface-myplug data = myplug_data'" in first
    assert "'reface-myplug models = myplug_models:register'" in first
    assert second == "True True 1"  # registered, and the function called once


def test_a_broken_entry_point_is_named_with_its_distribution(tmp_path):
    site = tmp_path / "site"
    make_distribution(site, "reface-broken", {"oops": "myplug_oops"}, {"myplug_oops": "raise ValueError('no key')\n"})
    make_distribution(site, "reface-missing", {"gone": "myplug_gone_module"}, {})
    done = run_python("""
        from reface_utils.core.plugins import PluginError, load_entry_point_plugins
        try:
            load_entry_point_plugins()
        except PluginError as err:
            print(err)
            print(type(err.__cause__).__name__)
        """, site)
    assert done.returncode == 0, done.stderr
    assert ("plugin entry point 'oops' (myplug_oops) of reface-broken in group 'reface.plugins' failed: "
            "ValueError: no key") in done.stdout
    assert done.stdout.splitlines()[-1] == "ValueError"
    # without the distributions: nothing to load, nothing said
    done = run_python("""
        from reface_utils.core.plugins import load_entry_point_plugins
        print(load_entry_point_plugins(), load_entry_point_plugins("reface.nothing"))
        """, tmp_path / "empty-site")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] []" and done.stderr == ""


def test_entry_point_errors_in_process(monkeypatch, registries):
    """Missing module of an entry point (in-process, with importlib.metadata's own EntryPoint)."""
    import importlib.metadata as md

    ep = md.EntryPoint(name="gone", value="myplug_gone_module", group="reface.plugins")
    monkeypatch.setattr(md, "entry_points", lambda group=None: [ep] if group == "reface.plugins" else [])
    with pytest.raises(PluginError, match=r"plugin entry point 'gone' \(myplug_gone_module\) of an unknown "
                                          r"distribution in group 'reface.plugins' failed: ModuleNotFoundError"):
        load_entry_point_plugins()
    assert load_entry_point_plugins("other.group") == []
