"""Face backends on real photos (sface) and the insightface code path on small ONNX packs;
unreadable (permission-denied) images skipped, counted and retried once readable."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import onnx
import pytest
import skimage.data
from onnx import TensorProto, helper, numpy_helper

import insightface
from reface_utils.models.face import FaceFeatures, InsightFaceModel, SFaceModel, load_face_model
from conftest import NO_DAC, face_png, run_python
from reface_utils.core.images import UnreadableImageError, UnreadableImagesWarning, read_rgb
from reface_utils.models.reid import load_reid_model

INSIGHTFACE_IMAGES = Path(insightface.__file__).parent / "data" / "images"
T1 = INSIGHTFACE_IMAGES / "t1.jpg"
TOM_HANKS = INSIGHTFACE_IMAGES / "Tom_Hanks_54745.png"
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


@pytest.fixture(scope="module")
def sface() -> SFaceModel:
    return load_face_model("sface")


@pytest.fixture(scope="module")
def t1_faces(sface):
    return sface.detect_all(T1)


def _crop_around(img: np.ndarray, box: np.ndarray, factor: float = 1.0) -> tuple[np.ndarray, tuple[int, int]]:
    """The face box grown by ``factor`` of its size on every side (a head-and-shoulders crop)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    X1, Y1 = int(max(0, x1 - factor * w)), int(max(0, y1 - factor * h))
    X2, Y2 = int(min(img.shape[1], x2 + factor * w)), int(min(img.shape[0], y2 + factor * h))
    return img[Y1:Y2, X1:X2].copy(), (X1, Y1)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


# --------------------------------------------------------------------------- FaceFeatures
def test_face_features_threshold_subset_concat_save(tmp_path):
    emb = np.eye(3, 4, dtype=np.float32)
    f = FaceFeatures(has_face=[True, True, False], det_score=[0.9, 0.6, 0.0],
                     bbox=[[0, 0, 10, 10], [1, 1, 5, 5], [np.nan] * 4], kps=np.zeros((3, 5, 2)),
                     embedding=emb * [[1], [1], [0]])
    t = f.thresholded(0.8)
    assert t.has_face.tolist() == [True, False, False]
    assert np.array_equal(t.embedding[1], np.zeros(4)) and np.array_equal(t.embedding[0], emb[0])
    assert t.det_score[1] == pytest.approx(0.6)  # the raw detection is kept for inspection
    assert f.thresholded(0.6).has_face.tolist() == [True, True, False]  # >= threshold
    assert len(f.subset([2, 0])) == 2 and f.subset([2, 0]).has_face.tolist() == [False, True]
    both = FaceFeatures.concat([f, t])
    assert len(both) == 6 and both.dim == 4
    f.save(tmp_path / "f.npz")
    g = FaceFeatures.load(tmp_path / "f.npz")
    for name in ("has_face", "det_score", "bbox", "kps", "embedding"):
        np.testing.assert_array_equal(getattr(g, name), getattr(f, name))
    with pytest.raises(ValueError, match="embedding"):
        FaceFeatures([True], [0.9], np.zeros((1, 4)), np.zeros((1, 5, 2)), np.zeros((2, 4)))


# --------------------------------------------------------------------------- sface on real photos
def test_sface_recogniser_has_dynamic_batch(sface):
    # the wheel's file pins batch 1; we rewrite it so that recognition is batched
    assert sface.session.get_inputs()[0].shape == ["batch", 3, 112, 112]
    assert sface.embedding_dim == 128


def test_sface_finds_the_six_faces_of_t1(sface, t1_faces):
    img = read_rgb(T1)
    assert len(t1_faces) == 6
    assert (t1_faces.det_score > 0.85).all()
    # eyes, nose and mouth inside the box, left eye left of right eye (alignment order)
    for box, kps in zip(t1_faces.bbox, t1_faces.kps):
        assert (kps[:, 0] > box[0]).all() and (kps[:, 0] < box[2]).all()
        assert (kps[:, 1] > box[1]).all() and (kps[:, 1] < box[3]).all()
        assert kps[0, 0] < kps[1, 0] and kps[3, 0] < kps[4, 0] and kps[2, 1] < kps[3, 1]
    centers = (t1_faces.bbox[:, :2] + t1_faces.bbox[:, 2:]) / 2
    assert np.min(np.linalg.norm(centers[:, None] - centers[None], axis=2) + np.eye(6) * 1e9) > 80  # 6 distinct
    # one face per crop: the best face of each crop is the same face, at the same place
    crops, offsets = zip(*(_crop_around(img, box) for box in t1_faces.bbox))
    per_crop = sface.extract(list(crops), cache_dir=None, progress=False)
    assert per_crop.has_face.all()
    for i, off in enumerate(offsets):
        assert _iou(per_crop.bbox[i] + np.r_[off, off], t1_faces.bbox[i]) > 0.7
    # and the same identity as the face found in the full photo. At native resolution:
    # the default det_size halves this 1280 px photo, which blurs the landmarks of the
    # tilted head #4 (measured 0.38 there).
    native = load_face_model("sface", det_size=None).detect_all(img)
    assert len(native) == 6
    order = [int(np.argmax([_iou(b, n) for n in native.bbox])) for b in t1_faces.bbox]
    sim = per_crop.embedding @ native.embedding[order].T
    assert (np.argmax(sim, axis=1) == np.arange(6)).all()
    # measured 0.79..0.96 on the diagonal, <= 0.24 off it (YuNet int8 landmarks are noisy)
    assert np.diag(sim).min() > 0.7
    assert np.diag(sim).min() - (sim - np.eye(6) * 9).max() > 0.3


def test_sface_same_face_augmented_beats_different_faces(sface, t1_faces):
    img = read_rgb(T1)
    people = [_crop_around(img, box)[0] for box in t1_faces.bbox]
    people += [read_rgb(GRACE_HOPPER), skimage.data.astronaut(),
               cv2.copyMakeBorder(read_rgb(TOM_HANKS), 56, 56, 56, 56, cv2.BORDER_REPLICATE)]
    images, person = [], []
    for i, x in enumerate(people):
        variants = [x, cv2.resize(x, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
                    cv2.resize(x, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR),
                    np.ascontiguousarray(x[:, ::-1]), cv2.GaussianBlur(x, (0, 0), 1.0)]
        images += variants
        person += [i] * len(variants)
    f = sface.extract(images, cache_dir=None, progress=False)
    assert f.has_face.all()
    np.testing.assert_allclose(np.linalg.norm(f.embedding, axis=1), 1.0, atol=1e-5)
    person = np.array(person)
    sim = f.embedding @ f.embedding.T
    same = (person[:, None] == person[None]) & ~np.eye(len(person), dtype=bool)
    different = person[:, None] != person[None]
    originals = np.flatnonzero(np.r_[True, np.diff(person) != 0])
    to_original = sim[originals][same[originals]]
    # measured: augmented vs original >= 0.92 (mean 0.96), any two of the same person
    # >= 0.89; different people <= 0.29 (mean 0.09)
    assert to_original.min() > 0.85
    assert sim[same].min() > 0.75
    assert sim[different].max() < 0.35
    assert sim[same].min() - sim[different].max() > 0.45


def test_sface_no_face_gives_zero_embedding(sface):
    f = sface.extract([skimage.data.coffee(), skimage.data.rocket(), np.full((200, 150, 3), 128, np.uint8),
                       np.zeros((4, 4, 3), np.uint8)], cache_dir=None, progress=False)
    assert not f.has_face.any()
    assert (f.det_score == 0).all() and np.isnan(f.bbox).all() and np.isnan(f.kps).all()
    assert (f.embedding == 0).all() and f.embedding.shape == (4, 128)
    empty = sface.extract([], cache_dir=None, progress=False)
    assert len(empty) == 0 and empty.embedding.shape == (0, 128)


def test_sface_batching_equals_one_at_a_time_and_is_batched(sface, t1_faces, monkeypatch):
    img = read_rgb(T1)
    crops = [_crop_around(img, box)[0] for box in t1_faces.bbox] + [skimage.data.coffee()]
    one = sface.extract(crops, batch_size=1, cache_dir=None, progress=False)
    calls = []
    run = sface.session.run

    def counting_run(names, feeds):
        calls.append(len(next(iter(feeds.values()))))
        return run(names, feeds)

    monkeypatch.setattr(sface.session, "run", counting_run)
    many = sface.extract(crops, batch_size=4, cache_dir=None, progress=False)
    assert calls == [4, 2]  # six faces, batches of at most four, the coffee cup has none
    np.testing.assert_allclose(many.embedding, one.embedding, atol=1e-5)
    np.testing.assert_array_equal(many.has_face, one.has_face)


def test_sface_unreadable_images_warn_once(sface, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    good = tmp_path / "t1.jpg"
    good.write_bytes(T1.read_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f = sface.extract([bad, good, tmp_path / "missing.png"], cache_dir=None, progress=False)
    unreadable = [w for w in caught if issubclass(w.category, UnreadableImagesWarning)]
    assert len(unreadable) == 1 and "2 unreadable" in str(unreadable[0].message)
    assert f.has_face.tolist() == [False, True, False]


def test_face_cache_hit_and_invalidation(sface, tmp_path, monkeypatch):
    img = read_rgb(T1)
    paths = []
    for i in range(3):
        p = tmp_path / "imgs" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(p), cv2.cvtColor(img[:, i * 400:i * 400 + 500], cv2.COLOR_RGB2BGR))
        paths.append(p)
    calls = []
    detect = sface._detect
    monkeypatch.setattr(sface, "_detect", lambda bgr: calls.append(1) or detect(bgr))
    cache_dir = tmp_path / "cache"
    first = sface.extract(paths, cache_dir=cache_dir, progress=False, chunk_size=2)
    assert len(calls) == 3
    second = sface.extract(paths, cache_dir=cache_dir, progress=False, chunk_size=2)
    assert len(calls) == 3  # nothing recomputed
    np.testing.assert_array_equal(second.embedding, first.embedding)
    # another detector setting is another cache key
    assert SFaceModel(det_thresh=0.6).model_key != sface.model_key
    assert SFaceModel(det_size=(320, 320)).model_key != sface.model_key
    # an edited image invalidates the cache
    cv2.imwrite(str(paths[0]), np.zeros((64, 64, 3), np.uint8))
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = sface.extract(paths, cache_dir=cache_dir, progress=False, chunk_size=2)
    assert len(calls) == 6
    assert not third.has_face[0] and first.has_face[0]


def test_load_face_model_rejects_unknown_names():
    with pytest.raises(ValueError, match="sface"):
        load_face_model("dlib")


# --------------------------------------------------------------------------- insightface code path
def _write(model: onnx.ModelProto, path: Path) -> None:
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _scrfd_like(path: Path, rng: np.random.Generator) -> None:
    """Signature of buffalo_l's det_10g.onnx: input ``input.1`` 1x3x?x?, 9 rank-2 outputs
    (scores, boxes, landmarks for strides 8, 16, 32; 2 anchors per location), random weights."""
    nodes, weights, outputs = [], [], {"score": [], "bbox": [], "kps": []}
    width = {"score": 1, "bbox": 4, "kps": 10}
    for stride in (8, 16, 32):
        for kind, w in width.items():
            k = f"{kind}{stride}"
            weights += [numpy_helper.from_array((rng.standard_normal((2 * w, 3, stride, stride))
                                                 * 2 / (stride * np.sqrt(3))).astype(np.float32), f"{k}_w"),
                        numpy_helper.from_array(np.full(2 * w, -1.0 if kind == "score" else 1.0, np.float32), f"{k}_b"),
                        numpy_helper.from_array(np.array([-1, w], np.int64), f"{k}_shape")]
            last = {"score": "Sigmoid", "bbox": "Abs", "kps": None}[kind]
            nodes += [helper.make_node("Conv", ["input.1", f"{k}_w", f"{k}_b"], [f"{k}_conv"],
                                       kernel_shape=[stride, stride], strides=[stride, stride]),
                      helper.make_node("Transpose", [f"{k}_conv"], [f"{k}_nhwc"], perm=[0, 2, 3, 1]),
                      helper.make_node("Reshape", [f"{k}_nhwc", f"{k}_shape"], [f"{k}_flat" if last else k])]
            if last:
                nodes.append(helper.make_node(last, [f"{k}_flat"], [k]))
            outputs[kind].append(helper.make_tensor_value_info(k, TensorProto.FLOAT, [f"n{k}", w]))
    graph = helper.make_graph(
        nodes, "scrfd_like", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])],
        outputs["score"] + outputs["bbox"] + outputs["kps"], weights)
    _write(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def _arcface_like(path: Path, rng: np.random.Generator, dim: int = 512) -> None:
    """Signature of buffalo_l's w600k_r50.onnx: input N x 3 x 112 x 112 -> N x 512."""
    nodes = [helper.make_node("Conv", ["input.1", "w1"], ["c1"], kernel_shape=[8, 8], strides=[8, 8], name="Conv_0"),
             helper.make_node("Relu", ["c1"], ["r1"], name="Relu_1"),
             helper.make_node("Flatten", ["r1"], ["f1"], name="Flatten_2"),
             helper.make_node("Gemm", ["f1", "w2"], ["683"], transB=1, name="Gemm_3")]
    weights = [numpy_helper.from_array((rng.standard_normal((16, 3, 8, 8)) * 0.05).astype(np.float32), "w1"),
               numpy_helper.from_array((rng.standard_normal((dim, 16 * 14 * 14)) * 0.02).astype(np.float32), "w2")]
    graph = helper.make_graph(
        nodes, "arcface_like", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", dim])], weights)
    _write(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


@pytest.fixture(scope="module")
def fake_pack(tmp_path_factory) -> Path:
    pack = tmp_path_factory.mktemp("buffalo_l_like")
    rng = np.random.default_rng(0)
    _scrfd_like(pack / "det_10g.onnx", rng)
    _arcface_like(pack / "w600k_r50.onnx", rng)
    return pack


@pytest.fixture(scope="module")
def fake_insightface(fake_pack) -> InsightFaceModel:
    return load_face_model("insightface", pack_dir=fake_pack, det_size=(128, 128))


def test_insightface_routes_the_pack_through_insightface(fake_insightface, fake_pack):
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD
    m = fake_insightface
    assert isinstance(m.detector, SCRFD) and m.detector.use_kps and m.detector.fmc == 3
    assert isinstance(m.recogniser, ArcFaceONNX)
    assert set(m.app.models) == {"detection", "recognition"}
    assert (m.recogniser.input_mean, m.recogniser.input_std) == (127.5, 127.5)
    assert m.embedding_dim == 512 and m.crop_size == 112
    assert m.providers[-1] == "CPUExecutionProvider"
    key = m.model_key
    assert key["name"] == "face-insightface" and key["det_size"] == [128, 128] and key["det_thresh"] == 0.5
    digest = hashlib.sha256((fake_pack / "w600k_r50.onnx").read_bytes()).hexdigest()
    assert key["files"]["recogniser"] == {"file": "w600k_r50.onnx", "sha256": digest}


@pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")  # inside insightface's own get()
def test_insightface_extract_shapes_batching_and_reference_embeddings(fake_insightface):
    m = fake_insightface
    images = [read_rgb(T1), skimage.data.astronaut(), read_rgb(GRACE_HOPPER), skimage.data.coffee()]
    f = m.extract(images, batch_size=3, cache_dir=None, progress=False)
    assert f.embedding.shape == (4, 512) and f.embedding.dtype == np.float32
    assert f.bbox.shape == (4, 4) and f.kps.shape == (4, 5, 2) and f.det_score.dtype == np.float32
    assert f.has_face.any()
    np.testing.assert_allclose(np.linalg.norm(f.embedding[f.has_face], axis=1), 1.0, atol=1e-5)
    assert (f.embedding[~f.has_face] == 0).all()
    one = m.extract(images, batch_size=1, cache_dir=None, progress=False)
    np.testing.assert_allclose(f.embedding, one.embedding, atol=1e-5)
    # our batched recognition equals insightface's own per-face FaceAnalysis.get
    for i in np.flatnonzero(f.has_face):
        faces = m.app.get(np.ascontiguousarray(images[i][:, :, ::-1]))
        best = max(faces, key=lambda face: face.det_score)
        assert best.det_score == pytest.approx(f.det_score[i])
        np.testing.assert_allclose(best.bbox, f.bbox[i], rtol=1e-5)
        ref = best.embedding / np.linalg.norm(best.embedding)
        np.testing.assert_allclose(f.embedding[i], ref, atol=1e-5)


def test_insightface_without_pack_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="buffalo_l"):
        load_face_model("insightface", pack_dir=tmp_path / "nowhere")


def test_register_face_model(monkeypatch):
    from reface_utils.models import face as face_mod
    from reface_utils.models import face_registry

    monkeypatch.setattr(face_registry, "_REGISTRY", dict(face_registry._REGISTRY))
    made = []
    face_mod.register_face_model("Mine", lambda **options: made.append(options) or "a model")
    assert face_mod.load_face_model("mine", det_size=(64, 64)) == "a model"
    assert made == [{"det_size": (64, 64)}]
    assert {"sface", "insightface", "mine"} <= set(face_mod.available_face_models())
    with pytest.raises(ValueError, match="registered already"):
        face_mod.register_face_model("sface", lambda **o: None)
    with pytest.raises(ValueError, match="unknown face model 'nope'"):
        face_mod.load_face_model("nope")



@pytest.mark.parametrize("thresholds, message", [
    ({"det_threshold": "0.6", "sim_threshold": 0.4}, r"threshold det_threshold of face model 'mine' must be a number "
                                                     r"in \[0, 1\], got '0.6' \(str\)"),
    ({"det_threshold": True, "sim_threshold": 0.4}, r"det_threshold .* must be a number .*got True \(bool\)"),
    ({"det_threshold": 0.6, "sim_threshold": float("nan")}, r"sim_threshold .* must be a number .*got nan"),
    ({"det_threshold": 60, "sim_threshold": 0.4}, r"det_threshold of face model 'mine' must lie in \[0, 1\].*got 60: "
                                                  r"rescale"),
    ({"det_threshold": 0.6, "sim_threshold": 0.4, "enrich_det_threshold": -0.1}, r"enrich_det_threshold .* must lie in"),
    ({"det_threshold": 0.6}, r"must give det_threshold and sim_threshold .*got \['det_threshold'\]"),
    ({"det_threshold": 0.6, "sim_threshold": 0.4, "det_thresh": 0.5}, r"may give enrich_det_threshold.*'det_thresh'"),
    ([0.6, 0.4], r"thresholds of face model 'mine' must be a dict"),
])
def test_register_face_model_refuses_bad_thresholds(monkeypatch, thresholds, message):
    from reface_utils.models import face_registry
    from reface_utils.models.face import face_model_thresholds, register_face_model

    monkeypatch.setattr(face_registry, "_REGISTRY", dict(face_registry._REGISTRY))
    monkeypatch.setattr(face_registry, "_THRESHOLDS", dict(face_registry._THRESHOLDS))
    with pytest.raises(ValueError, match=message):
        register_face_model("mine", SFaceModel, thresholds=thresholds)
    # refused before anything is registered
    assert "mine" not in face_registry.available_face_models() and face_model_thresholds("mine") is None
    register_face_model("mine", SFaceModel, thresholds={"det_threshold": 1, "sim_threshold": 0})  # the bounds are fine
    assert face_model_thresholds("MINE") == {"det_threshold": 1.0, "sim_threshold": 0.0, "enrich_det_threshold": 1.0}

# ---------------------------------------------------------------- faults (issue 12)
def test_permission_error_is_skipped_by_both_extractors_alike(tmp_path, demo_images, monkeypatch):
    """A PermissionError (simulated in this process; really denied in the setpriv test)
    used to escape from the face backend; now both extractors skip and count it."""
    good = face_png(demo_images)
    locked = str(tmp_path / "locked.png")
    shutil.copyfile(good, locked)
    real = np.fromfile

    def fromfile(path, *args, **kwargs):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(np, "fromfile", fromfile)
    with pytest.raises(UnreadableImageError, match=r"cannot read image .*locked\.png: Permission denied"):
        read_rgb(locked)
    with pytest.warns(UnreadableImagesWarning, match=r"skipped 1 unreadable image\(s\): .*locked\.png"):
        faces, unreadable = load_face_model("sface").extract_with_status([good, locked], cache_dir=None,
                                                                          progress=False)
    assert unreadable.tolist() == [False, True] and faces.has_face.tolist() == [True, False]
    reid = load_reid_model("mobilenetv2-imagenet", device="cpu")
    with pytest.warns(UnreadableImagesWarning, match=r"ReID .*skipped 1 unreadable image\(s\): .*locked\.png"):
        feats = reid.extract([good, locked], cache_dir=tmp_path / "cache", progress=False, num_workers=0)
    assert np.any(feats[0] != 0) and not np.any(feats[1] != 0)
    monkeypatch.undo()  # permission fixed: the cached zero row is not served again
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreadableImagesWarning)
        fixed = reid.extract([good, locked], cache_dir=tmp_path / "cache", progress=False, num_workers=0)
    np.testing.assert_allclose(fixed[1], fixed[0], atol=1e-5)  # the same picture, now read


@pytest.mark.skipif(NO_DAC is None, reason="setpriv is not installed")
def test_permission_denied_for_real_then_fixed_is_not_cached_for_good(tmp_path, demo_images):
    """chmod 000, read without root's override: skipped and counted. After chmod 644 the
    same cache entry (size and mtime unchanged) reads the image again: no zero row for good."""
    image = tmp_path / "img.png"
    shutil.copyfile(face_png(demo_images), image)
    cache_dir = tmp_path / "cache"
    image.chmod(0)
    try:
        code = ("import json, sys, warnings\n"
                "from reface_utils.models.face import load_face_model\n"
                "from reface_utils.core.images import read_rgb, UnreadableImageError\n"
                "try:\n    read_rgb(sys.argv[1]); err = ''\n"
                "except UnreadableImageError as e:\n    err = str(e)\n"
                "with warnings.catch_warnings(record=True) as w:\n"
                "    warnings.simplefilter('always')\n"
                "    f, bad = load_face_model('sface').extract_with_status([sys.argv[1]], cache_dir=sys.argv[2],"
                " progress=False)\n"
                "print(json.dumps({'error': err, 'unreadable': bad.tolist(),\n"
                "                  'warnings': [str(x.message) for x in w]}))\n")
        done = run_python(code, str(image), str(cache_dir), prefix=NO_DAC)
    finally:
        image.chmod(0o644)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["error"] == f"cannot read image {image}: Permission denied"
    assert out["unreadable"] == [True]
    assert any("skipped 1 unreadable image(s)" in w and str(image) in w for w in out["warnings"])

    model = load_face_model("sface")
    computed = []
    inner = model._compute
    model._compute = lambda chunk, bar, bs: computed.append(len(chunk)) or inner(chunk, bar, bs)
    faces, unreadable = model.extract_with_status([str(image)], cache_dir=cache_dir, progress=False)
    assert unreadable.tolist() == [False] and faces.has_face.tolist() == [True]
    assert computed == [1]  # the one unreadable row was retried
    faces2, unreadable2 = model.extract_with_status([str(image)], cache_dir=cache_dir, progress=False)
    assert computed == [1] and unreadable2.tolist() == [False]  # and the fixed row is cached now
    np.testing.assert_array_equal(faces2.embedding, faces.embedding)
