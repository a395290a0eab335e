"""The ReID model interface: pre-processing, the DataLoader pipeline, flip-averaged cached extraction."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ...core import cache
from ...core.images import ImageLike, describe, read_rgb, warn_unreadable
from ...core.runtime import library_versions, torch_device
from ...method.features import unreadable_mask
from .weights import _state_dict_sha256


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Bump when pre-processing changes, so cached features of the old pipeline are not reused.
_PREPROCESS_VERSION = "rgb-bilinear-aa/v1"


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
    amp: bool | str = False  # fp32 unless asked: the reference runs fp32
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
