"""Features from another model (reface_utils.method.feature_files): matching, normalising, every error."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reface_utils.method.features import FaceFeatures
from reface_utils.method.feature_files import (FeatureFileError, FeatureFileWarning, load_face_features,
                                               load_reid_features, save_features)

N, D = 7, 5


@pytest.fixture
def data(tmp_path):
    """A dataset-like table of N images under ``tmp_path/ds`` and raw features for them."""
    root = tmp_path / "ds"
    rel = [f"{'gallery' if i < 4 else 'query'}/{i:03d}.jpg" for i in range(N)]
    for r in rel:
        (root / r).parent.mkdir(parents=True, exist_ok=True)
        (root / r).write_bytes(b"")
    images = pd.DataFrame({"path": [str(root / r) for r in rel], "pid": range(N)})
    raw = np.random.default_rng(0).normal(size=(N, D)).astype(np.float32) * 7.5
    return root, rel, images, raw


def unit64(x):
    x = np.asarray(x, np.float64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_shuffled_raw_equals_ordered_normalised(data, tmp_path):
    root, rel, images, raw = data
    order = np.random.default_rng(1).permutation(N)
    scale = np.random.default_rng(2).uniform(0.1, 50, size=(N, 1)).astype(np.float32)
    scaled = raw * scale
    shuffled = save_features(tmp_path / "shuffled.npz", [rel[i] for i in order], scaled[order])
    normalised = save_features(tmp_path / "normalised.npz", images["path"].tolist(), unit64(scaled))
    a = load_reid_features(shuffled, images, root)
    b = load_reid_features(normalised, images, root)
    assert a.dtype == b.dtype == np.float32 and a.shape == (N, D)
    np.testing.assert_array_equal(a, b)  # exactly
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(a, unit64(raw), rtol=1e-6, atol=1e-7)
    # a loaded file saved again and loaded round-trips bit for bit
    again = save_features(tmp_path / "again.npz", images["path"], a)
    np.testing.assert_array_equal(load_reid_features(again, images, root), a)


def test_paths_absolute_relative_and_via_symlink(data, tmp_path):
    root, rel, images, raw = data
    link = tmp_path / "link"
    link.symlink_to(root)
    mixed = [str(root / rel[0]), rel[1], f"gallery/../{rel[2]}", str(link / rel[3])] + rel[4:]
    f = save_features(tmp_path / "f.npz", mixed, raw)
    np.testing.assert_array_equal(load_reid_features(f, images, root), unit64(raw))
    # images given as a plain list of paths, features as float64 / integers
    f64 = save_features(tmp_path / "f64.npz", rel, raw.astype(np.float64))
    np.testing.assert_allclose(load_reid_features(f64, images["path"].tolist(), root), unit64(raw), rtol=1e-6)
    ints = save_features(tmp_path / "ints.npz", rel, np.arange(1, N * D + 1).reshape(N, D))
    assert load_reid_features(ints, images, root).dtype == np.float32


def test_extra_rows_are_ignored_with_a_warning(data, tmp_path):
    root, rel, images, raw = data
    extra = np.random.default_rng(3).normal(size=(2, D))
    f = save_features(tmp_path / "f.npz", rel + ["other/x.jpg", "/elsewhere/y.jpg"], np.vstack([raw, extra]))
    with pytest.warns(FeatureFileWarning, match=r"2 row\(s\) for images the dataset does not have are ignored: "
                                                r"other/x\.jpg, /elsewhere/y\.jpg"):
        got = load_reid_features(f, images, root)
    np.testing.assert_array_equal(got, unit64(raw))


def test_face_features(data, tmp_path):
    root, rel, images, raw = data
    has_face = np.array([1, 0, 1, 1, 0, 0, 1], bool)
    feats = raw.copy()
    feats[1] = 0          # no face: zeros
    feats[4] = np.nan     # no face: anything, dropped
    feats[5] = 3.0
    order = np.arange(N)[::-1]
    f = save_features(tmp_path / "faces.npz", [rel[i] for i in order], feats[order], has_face[order])
    faces = load_face_features(f, images, root)
    assert isinstance(faces, FaceFeatures) and len(faces) == N and faces.dim == D
    np.testing.assert_array_equal(faces.has_face, has_face)
    np.testing.assert_array_equal(faces.det_score, has_face.astype(np.float32))
    assert np.isnan(faces.bbox).all() and np.isnan(faces.kps).all()
    np.testing.assert_array_equal(faces.embedding[~has_face], 0)
    np.testing.assert_array_equal(faces.embedding[has_face], unit64(raw[has_face]))
    # the file's faces pass any detection threshold up to 1
    kept = faces.thresholded(0.99)
    np.testing.assert_array_equal(kept.has_face, has_face)
    np.testing.assert_array_equal(kept.embedding, faces.embedding)
    # the same normalised and in order: identical arrays
    g = save_features(tmp_path / "faces2.npz", rel, np.where(has_face[:, None], unit64(raw), 0), has_face)
    other = load_face_features(g, images, root)
    for k, v in faces.to_arrays().items():
        np.testing.assert_array_equal(v, other.to_arrays()[k])


def test_face_has_face_inferred_and_integers(data, tmp_path):
    root, rel, images, raw = data
    feats = raw.copy()
    feats[[2, 5]] = 0
    f = save_features(tmp_path / "f.npz", rel, feats)  # no has_face key
    faces = load_face_features(f, images, root)
    np.testing.assert_array_equal(faces.has_face, np.any(feats != 0, axis=1))
    ints = tmp_path / "ints.npz"
    np.savez(ints, paths=np.array(rel), features=feats, has_face=np.any(feats != 0, axis=1).astype(np.int8))
    np.testing.assert_array_equal(load_face_features(ints, images, root).has_face, faces.has_face)


def test_zero_rows_allowed_when_asked(data, tmp_path):
    root, rel, images, raw = data
    feats = raw.copy()
    feats[3] = 0
    f = save_features(tmp_path / "f.npz", rel, feats)
    got = load_reid_features(f, images, root, allow_zero_rows=True)
    np.testing.assert_array_equal(got[3], 0)


# --------------------------------------------------------------------------- errors

def bad(file: Path, images, root, faces: bool = False, match: str = "") -> str:
    with pytest.raises(FeatureFileError) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FeatureFileWarning)
            (load_face_features if faces else load_reid_features)(file, images, root)
    message = str(info.value)
    assert f"features file {file}" in message, message  # every error names the file
    assert isinstance(info.value, ValueError)
    if match:
        assert match in message, message
    return message


def test_images_without_features_listed(data, tmp_path):
    root, rel, images, raw = data
    f = save_features(tmp_path / "f.npz", rel[:2], raw[:2])
    msg = bad(f, images, root, match="5 of the dataset's 7 images have no features: ")
    assert str(root / rel[2]) in msg and str(root / rel[6]) in msg


def test_no_path_matches_gives_a_hint(data, tmp_path):
    root, rel, images, raw = data
    f = save_features(tmp_path / "f.npz", [f"/other/machine/{r}" for r in rel], raw)
    bad(f, images, root, match="No path matches: the file has e.g. '/other/machine/gallery/000.jpg'")


def test_duplicate_paths(data, tmp_path):
    root, rel, images, raw = data
    f = save_features(tmp_path / "f.npz", rel + [str(root / rel[1])], np.vstack([raw, raw[1:2]]))
    bad(f, images, root, match=f"image {str(root / rel[1])!r} is listed twice (rows 1 and 7")


@pytest.mark.parametrize("features, expect", [
    (np.zeros((N, D, 2)), "features must be 2-D (N images x D), got shape (7, 5, 2)"),
    (np.zeros(N), "features must be 2-D"),
    (np.zeros((N + 1, D)), "7 paths but 8 feature rows"),
    (np.array([["a"] * D] * N), "features must be numbers"),
    (np.ones((N, D), bool), "features must be numbers (float), got dtype bool"),
    (np.zeros((N, 0)), "features have 0 columns"),
])
def test_wrong_shape_or_dtype(data, tmp_path, features, expect):
    root, rel, images, raw = data
    f = tmp_path / "f.npz"
    np.savez(f, paths=np.array(rel), features=features)
    bad(f, images, root, match=expect)
    with pytest.raises(FeatureFileError, match=expect.split("(")[0].strip()):  # save_features refuses it too
        save_features(tmp_path / "g.npz", rel, features)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_names_the_first_path(data, tmp_path, value):
    root, rel, images, raw = data
    feats = raw.copy()
    feats[4, 2] = value
    feats[6, 0] = value
    f = save_features(tmp_path / "f.npz", rel, feats)
    bad(f, images, root, match=f"2 row(s) hold NaN or inf, the first for {rel[4]}")


def test_all_zero_row_is_unreadable(data, tmp_path):
    root, rel, images, raw = data
    feats = raw.copy()
    feats[5] = 0
    f = save_features(tmp_path / "f.npz", rel, feats)
    bad(f, images, root, match=f"1 row(s) are all zeros (an unreadable image?), the first for {rel[5]}")


def test_face_zero_row_only_an_error_with_has_face(data, tmp_path):
    root, rel, images, raw = data
    feats = raw.copy()
    feats[5] = 0
    has_face = np.ones(N, bool)
    f = save_features(tmp_path / "f.npz", rel, feats, has_face)
    bad(f, images, root, faces=True, match="marked has_face but all zeros (an unreadable image?), the first for "
                                           f"{rel[5]}")
    has_face[5] = False
    g = save_features(tmp_path / "g.npz", rel, feats, has_face)
    assert not load_face_features(g, images, root).has_face[5]


def test_missing_keys(data, tmp_path):
    root, rel, images, raw = data
    f = tmp_path / "f.npz"
    np.savez(f, paths=np.array(rel), feats=raw)
    bad(f, images, root, match="has no key(s) features; it has paths, feats, needed: an .npz with keys paths, "
                               "features")
    bad(f, images, root, faces=True, match="(and optionally has_face)")


def test_not_an_npz_or_unreadable(data, tmp_path):
    root, rel, images, raw = data
    text = tmp_path / "f.npz"
    text.write_text("path,feature\n")
    bad(text, images, root, match="is not an .npz with keys paths, features")
    npy = tmp_path / "f.npy"
    np.save(npy, raw)
    bad(npy, images, root, match="holds a single array (an .npy file)")
    bad(tmp_path / "missing.npz", images, root, match="does not exist")
    bad(tmp_path, images, root, match="is a folder")
    truncated = tmp_path / "truncated.npz"
    good = save_features(tmp_path / "good.npz", rel, raw).read_bytes()
    truncated.write_bytes(good[: len(good) // 2])
    bad(truncated, images, root)


def test_object_paths_need_no_pickle(data, tmp_path):
    root, rel, images, raw = data
    f = tmp_path / "f.npz"
    np.savez(f, paths=np.array(rel, dtype=object), features=raw)
    bad(f, images, root, match="np.array(paths, dtype=str)")


def test_has_face_wrong_length_or_dtype(data, tmp_path):
    root, rel, images, raw = data
    for has_face, expect in ((np.ones(N - 1, bool), "has_face must have one value per path (7), got shape (6,)"),
                             (np.full(N, 0.5), "has_face must be booleans (or 0/1), got dtype float64"),
                             (np.full(N, 2), "has_face must be booleans (or 0/1), got dtype int64")):
        f = tmp_path / "f.npz"
        np.savez(f, paths=np.array(rel), features=raw, has_face=has_face)
        bad(f, images, root, faces=True, match=expect)


def test_relative_paths_need_root_and_empty_paths(data, tmp_path):
    root, rel, images, raw = data
    f = save_features(tmp_path / "f.npz", rel, raw)
    bad(f, images, None, match="relative paths such as 'gallery/000.jpg' need root")
    g = tmp_path / "g.npz"
    np.savez(g, paths=np.array(rel[:-1] + [""]), features=raw)
    bad(g, images, root, match="path 6 (0-based) is empty")


def test_save_is_atomic_and_keeps_the_name(data, tmp_path):
    root, rel, images, raw = data
    out = save_features(tmp_path / "feats.bin", [Path(p) for p in images["path"]], raw)
    assert out == tmp_path / "feats.bin" and sorted(os.listdir(tmp_path)) == ["ds", "feats.bin"]
    with np.load(out) as z:
        assert z["paths"].dtype.kind == "U" and sorted(z.files) == ["features", "paths"]
