"""The CAL ResNet-50 of the paper (Simple-CCReID's image ResNet50, torchvision key names) and its loader."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...core.checkpoints import CheckpointError
from ...core.files import sha256_file
from .extractor import ReIDModel, _pick_device
from .weights import (CAL_FEATURE_DIM, _confirm_registry_file, _extract_state_dict, _guess_model, _require_finite,
                      _resolve_checkpoint, _show, _state_dict_sha256, _torch_load)


CAL_INPUT_SIZE = (384, 192)  # (height, width), configs/default_img.py


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
    return sha256_file(path)


def _load_cal(checkpoint: str | os.PathLike | None, device: str | torch.device, *,
              trusted: bool = False, amp: bool | str = False,
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
