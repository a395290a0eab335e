"""What this machine offers ReFace: devices, onnxruntime providers, Colab, and sanity checks.

``reface check`` prints a short report and fails when the
install is broken in a way that would bite later: ``onnxruntime`` and ``onnxruntime-gpu``
both installed (they ship the same ``onnxruntime`` module and whichever was installed
last silently wins), or torch sees a CUDA GPU while a real onnxruntime session runs on
the CPU (a CPU-only build, or a GPU build for another CUDA major whose provider cannot
load: onnxruntime then falls back to the CPU with a log line only).

``python -m reface_utils.core.runtime --gpu-requirement`` prints the pip requirement of the
onnxruntime build that matches torch's CUDA runtime; ``reface install-gpu`` swaps the installed
onnxruntime for it (unless it is already there) and runs the check (``make gpu``, Colab).
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import subprocess
import sys
import warnings
from typing import Sequence

__all__ = ["library_versions", "installed_version", "onnxruntime_conflict", "onnx_providers", "torch_device",
           "report", "torch_cuda_version", "onnxruntime_requirement", "session_providers",
           "cuda_provider_problem", "ONNXRUNTIME_GPU_FOR_CUDA", "requirement_installed", "install_commands"]

GPU_FIX = ("pip uninstall -y onnxruntime onnxruntime-gpu && pip install --no-deps --force-reinstall "
           '"$(python -m reface_utils.core.runtime --gpu-requirement)"')

#: onnxruntime-gpu releases on PyPI by the CUDA major their wheels are built for. Within a
#: major any minor works (NVIDIA's minor version compatibility, as ORT's CUDA EP docs say).
#: Sources, checked 2026-11: ORT docs, CUDA Execution Provider, "Requirements"
#: (https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html): PyPI wheels
#: up to 1.18 are CUDA 11.8 / cuDNN 8, "starting with version 1.19, CUDA 12.x becomes the
#: default ... in PyPI" (cuDNN 9); and the wheels' own metadata (`pip install --dry-run
#: --report`): the "cuda" extra of 1.19.0 .. 1.26.0 requires CUDA 12 packages (nvidia-*-cu12
#: ~=12.0), of 1.27.0 .. 1.31.1 (the newest checked) CUDA 13 ones (nvidia-*-cu13 / nvidia-*
#: ~=13.0), cuDNN 9 in both. So PyPI's CUDA 12 line ends at 1.26; a newer CUDA 12 build has
#: to come from Microsoft's own package feeds (see the ORT install docs).
#: cuDNN must match too: torch >= 2.4 ships cuDNN 9 (fine for CUDA 12/13); a CUDA 11 torch
#: >= 2.4 also ships cuDNN 9, which the CUDA 11 wheels (cuDNN 8) cannot use: ``--check``
#: catches that case.
ONNXRUNTIME_GPU_FOR_CUDA: dict[int, str] = {
    11: "onnxruntime-gpu>=1.17,<1.19",
    12: "onnxruntime-gpu>=1.19,<1.27",
    13: "onnxruntime-gpu>=1.27",
}
#: No CUDA runtime (a CPU torch): the CPU build is the matching one.
ONNXRUNTIME_CPU = "onnxruntime>=1.17"


def installed_version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def library_versions(*modules: str) -> dict[str, str]:
    """Versions of the libraries that shape extracted features (decoders, resizers,
    inference engines). They are part of the feature-cache key: another OpenCV moves
    detected landmarks, so features cached under one must not be served under another."""
    versions = {}
    for name in modules:
        module = sys.modules.get(name) or __import__(name)
        versions[name] = str(getattr(module, "__version__", "unknown"))
    return versions


def onnxruntime_conflict() -> str | None:
    """A message if both onnxruntime distributions are installed, else None."""
    cpu, gpu = installed_version("onnxruntime"), installed_version("onnxruntime-gpu")
    if cpu and gpu:
        return (f"both onnxruntime {cpu} and onnxruntime-gpu {gpu} are installed; they overwrite "
                f"each other's 'onnxruntime' module. Keep one: on a GPU machine run\n  {GPU_FIX}")
    return None


def onnx_providers(device: str = "auto") -> list[str]:
    """onnxruntime execution providers for ``device`` ("auto", "cpu", "cuda")."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise RuntimeError("device='cuda' was asked for, but onnxruntime has no CUDA provider "
                           f"(available: {available}). Install onnxruntime-gpu: {GPU_FIX}")
    return ["CPUExecutionProvider"]


def torch_device(device: str = "auto") -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu"; other values are checked."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was asked for, but torch sees no CUDA GPU "
                           f"(torch {torch.__version__}). Use device='cpu' or install a CUDA build.")
    return device


def torch_cuda_version() -> str | None:
    """The CUDA runtime torch was built for ("12.4"), None for a CPU (or ROCm) build."""
    import torch

    return torch.version.cuda


def onnxruntime_requirement(cuda_version: str | None) -> str:
    """The pip requirement of the onnxruntime build for a CUDA runtime ("12.4", "13.0",
    None: no CUDA). Pure: ``torch_cuda_version()`` gives the installed runtime's version."""
    if cuda_version is None:
        return ONNXRUNTIME_CPU
    try:
        major = int(str(cuda_version).strip().split(".")[0])
    except ValueError:
        raise ValueError(f"CUDA version {cuda_version!r} is not of the form '12.4'") from None
    if major not in ONNXRUNTIME_GPU_FOR_CUDA:
        known = ", ".join(f"{m}.x" for m in ONNXRUNTIME_GPU_FOR_CUDA)
        raise ValueError(f"no onnxruntime-gpu on PyPI is known to be built for CUDA {cuda_version} (known: "
                         f"{known}); install one that is by hand (see onnxruntime.ai/docs/execution-providers/"
                         "CUDA-ExecutionProvider.html), or extend ONNXRUNTIME_GPU_FOR_CUDA in reface_utils/core/runtime.py")
    return ONNXRUNTIME_GPU_FOR_CUDA[major]


def requirement_installed(requirement: str) -> bool:
    """True when the onnxruntime distribution ``requirement`` names is installed in a
    version it allows, and the other one (CPU/GPU, same module) is not."""
    from packaging.requirements import Requirement

    wanted = Requirement(requirement)
    other = "onnxruntime" if wanted.name == "onnxruntime-gpu" else "onnxruntime-gpu"
    version = installed_version(wanted.name)
    return (version is not None and wanted.specifier.contains(version, prereleases=True)
            and installed_version(other) is None)


def install_commands(requirement: str, python: str = sys.executable) -> list[list[str]]:
    """The pip commands that replace whichever onnxruntime is installed by ``requirement``.
    Both distributions go first (they share the module); --no-deps keeps the rest of the
    environment (a CUDA torch in particular) as it is."""
    return [[python, "-m", "pip", "uninstall", "-y", "onnxruntime", "onnxruntime-gpu"],
            [python, "-m", "pip", "install", "--no-deps", "--force-reinstall", requirement]]


def _identity_model() -> bytes:
    """A one-node ONNX model (y = x), built in memory: enough for onnxruntime to load each
    execution provider it is asked for."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "reface_probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # old enough for every onnxruntime >= 1.17 to read
    return model.SerializeToString()


def session_providers(providers: Sequence[str]) -> list[str]:
    """Providers a real InferenceSession ends up with when asked for ``providers``.

    Unlike ``get_available_providers()`` (which lists what the build was compiled with),
    this is what inference runs on: a CUDA provider that cannot load its libraries is
    dropped here, with only a log line from onnxruntime."""
    import onnxruntime as ort

    with warnings.catch_warnings():  # "provider not in available providers": reported by the caller
        warnings.simplefilter("ignore")
        session = ort.InferenceSession(_identity_model(), providers=list(providers))
    return list(session.get_providers())


def cuda_provider_problem(torch_sees_cuda: bool, providers: Sequence[str],
                          available: Sequence[str]) -> str | None:
    """A message when torch sees a CUDA GPU but the onnxruntime session (``providers``)
    runs without CUDAExecutionProvider; None when all is well."""
    if not torch_sees_cuda or "CUDAExecutionProvider" in providers:
        return None
    if "CUDAExecutionProvider" in available:
        why = ("this onnxruntime build has a CUDA provider but it failed to load (a build for another "
               "CUDA or cuDNN major than torch's; onnxruntime's log above names the missing library)")
    else:
        why = "this onnxruntime build has no CUDA provider (the CPU-only 'onnxruntime' package)"
    return (f"torch sees a CUDA GPU, but an onnxruntime session runs on {list(providers)}: {why}. "
            f"Face detection and recognition would run on the CPU. Fix:\n  {GPU_FIX}")


def report() -> dict[str, object]:
    import onnxruntime as ort
    import torch

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.cuda.is_available(),
        "onnxruntime": installed_version("onnxruntime"),
        "onnxruntime-gpu": installed_version("onnxruntime-gpu"),
        "onnx_providers": ort.get_available_providers(),
        "insightface": installed_version("insightface"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="fail on a broken install (opens a real onnxruntime session)")
    parser.add_argument("--gpu-requirement", action="store_true",
                        help="print the pip requirement of the onnxruntime build matching torch's CUDA")
    parser.add_argument("--install-gpu", action="store_true",
                        help="install that build in place of the current onnxruntime, then --check")
    args = parser.parse_args(argv)
    if args.gpu_requirement or args.install_gpu:
        cuda = torch_cuda_version()
        requirement = onnxruntime_requirement(cuda)
        if cuda is None:
            print("note: torch is a CPU build, so the CPU onnxruntime is the matching one; install a "
                  "CUDA torch first to use the GPU", file=sys.stderr)
        if args.gpu_requirement:
            print(requirement)
            return 0
        if cuda is not None:
            if requirement_installed(requirement):
                print(f"{requirement}: already installed")
            else:
                for command in install_commands(requirement):
                    subprocess.run(command, check=True)
        # A fresh process: this one may hold the onnxruntime that was just replaced.
        return subprocess.run([sys.executable, "-m", "reface_utils.core.runtime", "--check"]).returncode
    for key, value in report().items():
        print(f"{key:>16}: {value}")
    problems = [onnxruntime_conflict()]
    if args.check:
        import onnxruntime as ort
        import torch

        providers = session_providers(onnx_providers("auto"))
        print(f"{'session':>16}: {providers}")
        problems.append(cuda_provider_problem(torch.cuda.is_available(), providers, ort.get_available_providers()))
    problems = [p for p in problems if p]
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
