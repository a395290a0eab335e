"""The package's layers (docs/ARCHITECTURE.md): each folder imports only from itself and the
layers below it, packages and modules import each other without cycles (imports inside
functions included), and each module has one import path (the layered one)."""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest



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


def _find_cycle(graph: dict[str, set[str]], roots: list[str] | None = None) -> list[str] | None:
    """One cycle of the directed graph (its nodes, the first repeated at the end) reachable
    from ``roots`` (default: every node), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph) if roots is None else roots:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for path in _files():
        src = _package_of(_module_name(path), path.name == "__init__.py")
        for _, target in _imports(path):
            dst = target if (REPO / Path(*target.split(".")) / "__init__.py").is_file() else target.rsplit(".", 1)[0]
            # a package and its own sub-package are one unit here (models.reid is part of models)
            if dst != src and not dst.startswith(src + ".") and not src.startswith(dst + "."):
                graph[src].add(dst)
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle)


def _module_graph(files: list[Path]) -> dict[str, set[str]]:
    """Module -> the reface_utils modules it imports, at module level or inside functions
    (a lazy import is still a dependency: it runs whenever the function does). A package
    is its __init__; "from pkg import name" depends on pkg's __init__ unless name is a
    submodule. The parent packages that Python initialises on the way are not counted:
    a package's __init__ may re-export its submodules, which import each other."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in files:
        src = _module_name(path)
        for _, target in _imports(path):
            if target != src:
                graph[src].add(target)
    return graph


def test_no_import_cycle_between_modules():
    cycle = _find_cycle(_module_graph(_files()))
    assert cycle is None, "import cycle between modules (lazy imports count): " + " -> ".join(cycle)


def test_the_checker_sees_a_module_cycle(tmp_path, monkeypatch):
    # in a copy of the package, two method modules that import each other -- one of them
    # only inside a function, in the same package, so the package check cannot see it
    import shutil

    copy = tmp_path / "reface_utils"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "method" / "_probe_a.py").write_text("from . import _probe_b\n")
    (copy / "method" / "_probe_b.py").write_text("def f():\n    from ._probe_a import g\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    graph = _module_graph(sorted(copy.rglob("*.py")))
    assert graph["reface_utils.method._probe_b"] == {"reface_utils.method._probe_a"}
    cycle = _find_cycle(graph, roots=["reface_utils.method._probe_a"])
    assert cycle == ["reface_utils.method._probe_a", "reface_utils.method._probe_b", "reface_utils.method._probe_a"]
    assert _find_cycle(graph) is not None


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


def test_readme_imports_and_light_package():
    """The layered paths are the only ones (the flat paths of the first releases are gone),
    and importing the package loads neither torch nor OpenCV."""
    code = ("import sys, importlib, reface_utils\n"
            "assert 'torch' not in sys.modules and 'cv2' not in sys.modules\n"
            "from reface_utils.apps.custom import identify_people\n"
            "from reface_utils.apps import pipeline\n"
            "from reface_utils.core import checkpoints\n"
            "for old in ('custom', 'pipeline', 'checkpoints', 'runtime', 'datasets'):\n"
            "    try:\n"
            "        importlib.import_module('reface_utils.' + old)\n"
            "    except ModuleNotFoundError:\n"
            "        continue\n"
            "    raise SystemExit('reface_utils.' + old + ' still imports')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr + done.stdout


@pytest.mark.parametrize("args, expect", [
    (["reface_utils.core.runtime", "--gpu-requirement"], "onnxruntime"),
    (["reface_utils.core.checkpoints", "list"], "lock file"),
    (["reface_utils.data.demo_layouts", "--help"], "usage: "),
])
def test_module_commands_run(args, expect):
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO)
    assert expect in done.stdout + done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr


#: One concept per module: a module longer than this is two concepts (issue 24).
MAX_MODULE_LINES = 500


def test_no_module_is_over_the_size_limit():
    long = {str(p.relative_to(REPO)): n for p in _files()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by concept): {long}"


def test_tests_mirror_the_package():
    """tests/<layer>/ for a layer's modules, tests/notebooks/ for the notebooks; only this
    file sits at the top."""
    tests = REPO / "tests"
    top = sorted(p.name for p in tests.glob("test_*.py"))
    assert top == ["test_architecture.py"], top
    folders = {p.parent.name for p in tests.glob("*/test_*.py")}
    assert folders <= set(LAYERS) | {"notebooks"}, folders
    names = [p.name for p in tests.rglob("test_*.py")]
    assert len(names) == len(set(names)), "test file names must be unique (pytest's prepend import mode)"
