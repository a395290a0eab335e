"""Any ReID network exported to ONNX, run with onnxruntime."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ...core.runtime import onnx_providers
from ...core.checkpoints import CheckpointError
from ...core.files import sha256_file
from .extractor import IMAGENET_MEAN, IMAGENET_STD, ReIDModel


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
                         weights_id="onnx-sha256:" + sha256_file(path))
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


def _load_onnx(checkpoint: str | os.PathLike | None, device: str | torch.device,
               **options: Any) -> ReIDModel:
    if checkpoint is None:
        raise ValueError("load_reid_model('onnx') needs checkpoint=<path to the .onnx file>")
    return OnnxReIDModel(Path(checkpoint), device=device, **options)
