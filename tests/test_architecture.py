"""The package's layers (docs/ARCHITECTURE.md): each folder imports only from itself and the
layers below it, packages import each other without cycles, and the old flat import paths
still give the same objects."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import reface_utils

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "reface_utils"
#: Bottom to top: a module may import from its own layer and the ones before it.
LAYERS = ("core", "data", "method", "models", "apps")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(module: str, is_init: bool) -> str:
    return module if is_init else module.rsplit(".", 1)[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every reface_utils module a file imports (module level and inside functions), absolute."""
    module = _module_name(path)
    package = _package_of(module, path.name == "__init__.py")
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "reface_utils"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "reface_utils":
                continue
            # "from pkg import mod" imports the submodule pkg.mod when there is one
            subs = [f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}")]
            found += [(node.lineno, t) for t in (subs or [target])]
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (REPO / rel.with_suffix(".py")).is_file() or (REPO / rel / "__init__.py").is_file()


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _files() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def test_every_module_sits_in_a_layer():
    loose = [p.relative_to(REPO) for p in _files() if p.parent == PKG and p.name != "__init__.py"]
    assert not loose, f"modules outside the layers {LAYERS}: {loose}"
    assert sorted(p.name for p in PKG.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(LAYERS)


def test_every_import_names_a_real_module():
    # a relative import that moved with its file but not with the layers would point nowhere
    missing = [f"{path.relative_to(REPO)}:{line} imports {target}" for path in _files()
               for line, target in _imports(path)
               if not (_is_module(target) or _is_module(target.rsplit(".", 1)[0]))]
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(missing)


def _upward_imports(files: list[Path]) -> list[str]:
    upward = []
    for path in files:
        own = _layer(_module_name(path))
        for line, target in _imports(path):
            other = _layer(target)
            if own is None:  # the package's own __init__: only the alias table, no layer import
                if target != "reface_utils":
                    upward.append(f"{path.relative_to(REPO)}:{line} imports {target} (keep __init__ light)")
            elif other is None or LAYERS.index(other) > LAYERS.index(own):
                upward.append(f"{path.relative_to(REPO)}:{line} ({own}) imports {target} ({other})")
    return upward


def test_no_module_imports_from_a_layer_above_it():
    upward = _upward_imports(_files())
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for path in _files():
        src = _package_of(_module_name(path), path.name == "__init__.py")
        for _, target in _imports(path):
            dst = target if (REPO / Path(*target.split(".")) / "__init__.py").is_file() else target.rsplit(".", 1)[0]
            # a package and its own sub-package are one unit here (models.reid is part of models)
            if dst != src and not dst.startswith(src + ".") and not src.startswith(dst + "."):
                graph[src].add(dst)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle between packages: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    # the checks above must be able to fail: in a copy of the package, a core module that
    # imports the method (inside a function, too) is caught
    import shutil

    copy = tmp_path / "reface_utils"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    probe = copy / "core" / "_probe.py"
    probe.write_text("def f():\n    from ..method import fusion\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert _imports(probe) == [(2, "reface_utils.method.fusion")]
    found = _upward_imports(sorted(copy.rglob("*.py")))
    assert found == ["reface_utils/core/_probe.py:2 (core) imports reface_utils.method.fusion (method)"]


@pytest.mark.parametrize("old", sorted(reface_utils._MOVED))
def test_old_import_path_is_the_same_module(old):
    new = importlib.import_module(f"reface_utils.{reface_utils._MOVED[old]}")
    assert importlib.import_module(f"reface_utils.{old}") is new
    assert getattr(reface_utils, old) is new
    assert new.__spec__.name == new.__name__ == f"reface_utils.{reface_utils._MOVED[old]}"


def test_readme_imports_and_light_package():
    code = ("import sys, reface_utils\n"
            "assert 'torch' not in sys.modules and 'cv2' not in sys.modules\n"
            "from reface_utils.custom import identify_people\n"
            "from reface_utils.apps.custom import identify_people as new\n"
            "assert identify_people is new\n"
            "from reface_utils import pipeline, datasets, checkpoints\n"
            "from reface_utils.apps import pipeline as p\n"
            "assert pipeline is p and checkpoints.resolve is reface_utils.core.checkpoints.resolve\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("args, expect", [
    (["reface_utils.runtime", "--gpu-requirement"], "onnxruntime"),
    (["reface_utils.checkpoints", "list"], "lock file"),
    (["reface_utils.demo_layouts", "--help"], "usage: python -m reface_utils.demo_layouts"),
])
def test_old_python_dash_m_commands_run(args, expect):
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO)
    assert expect in done.stdout + done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
