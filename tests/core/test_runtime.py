"""runtime.py: which onnxruntime build matches the CUDA runtime, and --check's real session."""
import onnxruntime
import pytest
import torch

from reface_utils.models import face
from reface_utils.core import runtime


@pytest.mark.parametrize("cuda, requirement", [
    ("11.8", "onnxruntime-gpu>=1.17,<1.19"),
    ("12.1", "onnxruntime-gpu>=1.19,<1.27"),
    ("12.4", "onnxruntime-gpu>=1.19,<1.27"),
    ("12.8", "onnxruntime-gpu>=1.19,<1.27"),
    ("13.0", "onnxruntime-gpu>=1.27"),
    ("13", "onnxruntime-gpu>=1.27"),
    (None, "onnxruntime>=1.17"),
])
def test_requirement_follows_the_cuda_major(cuda, requirement):
    assert runtime.onnxruntime_requirement(cuda) == requirement


@pytest.mark.parametrize("cuda", ["10.2", "14.0", "cuda12", ""])
def test_unknown_or_malformed_cuda_versions_are_refused_with_the_value(cuda):
    with pytest.raises(ValueError) as error:
        runtime.onnxruntime_requirement(cuda)
    assert f"CUDA version {cuda!r}" in str(error.value) or f"CUDA {cuda} " in str(error.value)


def test_cli_prints_the_requirement_for_this_torch(monkeypatch, capsys):
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    assert runtime.main(["--gpu-requirement"]) == 0
    assert capsys.readouterr().out.strip() == "onnxruntime-gpu>=1.19,<1.27"
    monkeypatch.setattr(torch.version, "cuda", None)
    assert runtime.main(["--gpu-requirement"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "onnxruntime>=1.17" and "CPU build" in out.err


def test_session_providers_opens_a_real_session():
    assert runtime.session_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


@pytest.mark.parametrize("torch_cuda, providers, available, fails", [
    (False, ["CPUExecutionProvider"], ["CPUExecutionProvider"], False),          # CPU machine
    (True, ["CUDAExecutionProvider", "CPUExecutionProvider"],
     ["CUDAExecutionProvider", "CPUExecutionProvider"], False),                   # working GPU install
    (True, ["CPUExecutionProvider"], ["CPUExecutionProvider"], True),            # CPU-only build on CUDA
    (True, ["CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"], True),  # failed to load
])
def test_cuda_provider_problem(torch_cuda, providers, available, fails):
    problem = runtime.cuda_provider_problem(torch_cuda, providers, available)
    assert (problem is not None) == fails
    if fails:
        assert "--gpu-requirement" in problem and "pip uninstall -y onnxruntime onnxruntime-gpu" in problem


def test_check_fails_loudly_for_a_cpu_only_onnxruntime_on_a_cuda_machine(monkeypatch, capsys):
    # This machine's onnxruntime is the CPU build; torch is told it sees a GPU.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert "CUDAExecutionProvider" not in onnxruntime.get_available_providers()
    assert runtime.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "torch sees a CUDA GPU" in err and "no CUDA provider" in err and "--gpu-requirement" in err


def test_check_fails_when_the_cuda_provider_is_listed_but_does_not_load(monkeypatch, capsys):
    # A GPU build for the wrong CUDA major lists CUDAExecutionProvider but the session drops it;
    # here the listing is faked and the real (CPU) session does the dropping.
    real = onnxruntime.get_available_providers()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", *real])
    assert runtime.main(["--check"]) == 1
    assert "failed to load" in capsys.readouterr().err


def test_check_passes_on_a_cpu_machine(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.main(["--check"]) == 0
    assert "session" in capsys.readouterr().out


@pytest.mark.parametrize("available, expected", [
    (["CPUExecutionProvider"], ["CPUExecutionProvider"]),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
])
def test_face_models_use_runtimes_provider_picker(monkeypatch, available, expected):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available)
    assert face.onnx_providers is runtime.onnx_providers  # the one provider picker
    assert face.onnx_providers() == expected


def test_requirement_installed_needs_the_right_build_and_no_other(monkeypatch):
    versions = {"onnxruntime-gpu": "1.26.0", "onnxruntime": None}
    monkeypatch.setattr(runtime, "installed_version", lambda dist: versions[dist])
    assert runtime.requirement_installed("onnxruntime-gpu>=1.19,<1.27")
    assert not runtime.requirement_installed("onnxruntime-gpu>=1.27")          # CUDA 12 build, CUDA 13 torch
    versions["onnxruntime"] = "1.32.0"                                         # both: they clash
    assert not runtime.requirement_installed("onnxruntime-gpu>=1.19,<1.27")
    versions["onnxruntime-gpu"] = None
    assert runtime.requirement_installed("onnxruntime>=1.17")


class _Pip:
    """Records the commands --install-gpu runs instead of running pip (no network here)."""

    def __init__(self):
        self.commands = []

    def __call__(self, command, check=False):
        self.commands.append(command[1:])
        return runtime.subprocess.CompletedProcess(command, 0)


def test_install_gpu_swaps_in_the_matching_build_then_checks(monkeypatch):
    pip = _Pip()
    monkeypatch.setattr(runtime.subprocess, "run", pip)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    assert runtime.main(["--install-gpu"]) == 0
    assert pip.commands == [["-m", "pip", "uninstall", "-y", "onnxruntime", "onnxruntime-gpu"],
                            ["-m", "pip", "install", "--no-deps", "--force-reinstall", "onnxruntime-gpu>=1.19,<1.27"],
                            ["-m", "reface_utils.core.runtime", "--check"]]


def test_install_gpu_leaves_a_matching_install_or_a_cpu_torch_alone(monkeypatch):
    pip = _Pip()
    monkeypatch.setattr(runtime.subprocess, "run", pip)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(runtime, "installed_version", {"onnxruntime-gpu": "1.31.1", "onnxruntime": None}.get)
    runtime.main(["--install-gpu"])
    monkeypatch.setattr(torch.version, "cuda", None)
    runtime.main(["--install-gpu"])
    assert pip.commands == [["-m", "reface_utils.core.runtime", "--check"]] * 2
