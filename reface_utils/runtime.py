"""What this machine offers ReFace: devices, onnxruntime providers, Colab, and sanity checks.

``python -m reface_utils.runtime --check`` prints a short report and fails when the
install is broken in a way that would bite later, notably ``onnxruntime`` and
``onnxruntime-gpu`` both installed: they ship the same ``onnxruntime`` module and
whichever was installed last silently wins.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import sys

__all__ = ["library_versions", "installed_version", "onnxruntime_conflict", "onnx_providers", "torch_device",
           "in_colab", "report"]

GPU_FIX = ("pip uninstall -y onnxruntime onnxruntime-gpu && "
           "pip install --no-deps --force-reinstall onnxruntime-gpu")


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


def in_colab() -> bool:
    return "google.colab" in sys.modules


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
    parser.add_argument("--check", action="store_true", help="fail on a broken install")
    args = parser.parse_args(argv)
    for key, value in report().items():
        print(f"{key:>16}: {value}")
    conflict = onnxruntime_conflict()
    if conflict:
        print(f"ERROR: {conflict}", file=sys.stderr)
        return 1 if args.check else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
