"""fusion: the distance conventions of the reference (GEFF inference.py / insightface.py),
checked on hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from reface_utils.method import fusion
from reface_utils.method.fusion import (
    CameraIndex,
    apply_enrichment,
    face_distance,
    fuse,
    reid_distance,
    same_camera_pairs,
    zero_faceless_rows,
)

S = np.sqrt(0.5)


def test_reid_distance_is_minus_cosine():
    q = np.array([[1, 0], [S, S]], np.float32)
    g = np.array([[1, 0], [0, 1], [-1, 0]], np.float32)
    d = reid_distance(q, g)
    assert d.dtype == np.float32
    np.testing.assert_allclose(d, [[-1, 0, 1], [-S, -S, S]], atol=1e-6)


def test_face_distance_conventions():
    q_emb = np.array([[1, 0], [0, 0]], np.float32)          # query 1 has no face
    g_emb = np.array([[1, 0], [0, 1], [9, 9], [S, S]], np.float32)  # gallery 2: no face (garbage row)
    q_has = np.array([True, False])
    g_has = np.array([True, True, False, True])
    q_cam, g_cam = np.array([0, 0]), np.array([1, 1, 1, 0])  # gallery 3 shares query 0's camera
    d = face_distance(q_emb, g_emb, q_has, g_has, q_cam, g_cam)
    expected = np.array([
        [0.0, 1.0, 1.0, np.inf],   # cos 1, cos 0, no-face gallery -> sim 0, same camera -> inf
        [2.0, 2.0, 2.0, 2.0],      # no-face query: similarity -1 everywhere, camera rule not applied
    ])
    np.testing.assert_allclose(d, expected, atol=1e-6)
    # without cameras (42Street) or with the rule off: no inf
    d2 = face_distance(q_emb, g_emb, q_has, g_has, q_cam, g_cam, exclude_same_camera=False)
    assert np.isfinite(d2).all() and d2[0, 3] == pytest.approx(1 - S)
    assert np.isfinite(face_distance(q_emb, g_emb, q_has, g_has)).all()
    # the caller's arrays are not changed
    assert g_emb[2, 0] == 9


def test_zero_faceless_rows_copies_only_when_needed():
    emb = np.array([[1, 0], [0, 0]], np.float32)
    assert zero_faceless_rows(emb, [True, False]) is emb
    emb[1] = 3
    out = zero_faceless_rows(emb, [True, False])
    assert out is not emb and not out[1].any() and emb[1, 0] == 3


def test_same_camera_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    q, g = rng.integers(0, 5, 30), rng.integers(1, 7, 50)
    rows, cols = same_camera_pairs(q, g)
    expected = set(zip(*np.nonzero(q[:, None] == g[None, :])))
    assert set(zip(rows.tolist(), cols.tolist())) == {(int(a), int(b)) for a, b in expected}
    assert len(rows) == len(expected)
    assert len(CameraIndex(np.array(["a", "b"])).pairs(np.array(["c"]))[0]) == 0


def test_apply_enrichment_hand_case():
    dist = np.array([[0.5, 0.4, 0.3], [0.1, 0.2, 0.3]], np.float32)
    enriched = np.array([[0.6, 0.2, 0.0], [0.0, 0.9, 0.5]], np.float32)
    to_gallery = np.array([0, 0, 2])  # samples 0 and 1 attached to gallery 0, sample 2 to gallery 2
    out = apply_enrichment(dist, enriched, to_gallery)
    np.testing.assert_allclose(out, [[0.2, 0.4, 0.0], [0.0, 0.2, 0.3]])
    np.testing.assert_allclose(dist[0], [0.5, 0.4, 0.3])  # input untouched
    # leave each query's own copy out: sample 1 was made from query 0, sample 0 from query 1
    out = apply_enrichment(dist, enriched, to_gallery, query_indices=np.array([0, 1]),
                           enriched_query_indices=np.array([1, 0, 5]), exclude_self=True)
    np.testing.assert_allclose(out, [[0.5, 0.4, 0.0], [0.1, 0.2, 0.3]])
    # in place
    same = apply_enrichment(dist, enriched, to_gallery, out=dist)
    assert same is dist and dist[0, 0] == pytest.approx(0.2)


def test_apply_enrichment_without_samples_and_bad_index():
    dist = np.ones((2, 3))
    np.testing.assert_array_equal(apply_enrichment(dist, np.ones((2, 0)), np.array([], int)), dist)
    with pytest.raises(ValueError, match="gallery columns"):
        apply_enrichment(dist, np.ones((2, 1)), np.array([3]))
    with pytest.raises(ValueError, match="exclude_self"):
        apply_enrichment(dist, np.ones((2, 1)), np.array([0]), exclude_self=True)


def test_fuse_extremes_are_exact_and_inf_safe():
    reid = np.array([[-0.9, -0.2]], np.float32)
    face = np.array([[np.inf, 0.4]], np.float32)
    only_reid = fuse(reid, face, 1.0)
    np.testing.assert_array_equal(only_reid, reid)       # no 0 * inf = NaN
    np.testing.assert_array_equal(fuse(reid, face, 0.0), face)
    mixed = fuse(reid, face, 0.75)
    assert mixed[0, 0] == np.inf and not np.isnan(mixed).any()
    assert mixed[0, 1] == pytest.approx(0.75 * -0.2 + 0.25 * 0.4, abs=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        fuse(reid, face, 1.5)


def test_fuse_matches_textbook_formula():
    rng = np.random.default_rng(1)
    reid = rng.uniform(-1, 1, (20, 30)).astype(np.float32)
    face = rng.uniform(0, 2, (20, 30)).astype(np.float32)
    for alpha in (0.1, 0.5, 0.75, 0.99):
        np.testing.assert_allclose(fuse(reid, face, alpha), alpha * reid.astype(float) + (1 - alpha) * face,
                                   atol=2e-6)


@pytest.mark.parametrize("dense", [False, True])
def test_face_distance_any_row_order_and_gallery_density(monkeypatch, dense):
    """Compact (only face-to-face products) and dense paths, faced rows first or not:
    all equal the formula written out."""
    monkeypatch.setattr(fusion.FaceGallery, "DENSE_ABOVE", -1.0 if dense else 2.0)
    rng = np.random.default_rng(3)
    q = rng.standard_normal((30, 8)).astype(np.float32)
    g = rng.standard_normal((40, 8)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q_has, g_has = rng.random(30) < 0.5, rng.random(40) < 0.5
    q_cam, g_cam = rng.integers(0, 3, 30), rng.integers(0, 3, 40)
    expected = 1.0 - (q @ g.T) * g_has[None, :]
    expected[(q_cam[:, None] == g_cam[None, :]) & q_has[:, None]] = np.inf
    expected[~q_has] = 2.0
    for order in (np.arange(30), np.argsort(~q_has, kind="stable")):  # interleaved, then faced first
        d = face_distance(q[order], g, q_has[order], g_has, q_cam[order], g_cam)
        np.testing.assert_allclose(d, expected[order], atol=1e-6)


def test_enrichment_layout_lowest_equals_per_group_minimum():
    rng = np.random.default_rng(4)
    to_gallery = rng.integers(0, 9, 40)  # groups of many sizes, some gallery images without samples
    layout = fusion.EnrichmentLayout.of(to_gallery)
    assert sorted(layout.order.tolist()) == list(range(40))
    np.testing.assert_array_equal(layout.order[layout.position], np.arange(40))
    dist = rng.standard_normal((5, 40)).astype(np.float32)
    lowest = layout.lowest(dist[:, layout.order])
    expected = np.stack([dist[:, to_gallery == c].min(axis=1) for c in layout.cols], axis=1)
    np.testing.assert_array_equal(lowest, expected)
    assert set(layout.cols.tolist()) == set(to_gallery.tolist())
    assert fusion.EnrichmentLayout.of(np.array([], int)).lowest(np.zeros((3, 0), np.float32)).shape == (3, 0)


def test_camera_fill_equals_pairs():
    rng = np.random.default_rng(8)
    q, g = rng.integers(0, 5, 30), rng.integers(1, 7, 50)
    index = CameraIndex(g)
    rows = np.flatnonzero(rng.random(30) < 0.6)
    out = np.zeros((30, 50), np.float32)
    index.fill(out, q, rows, np.inf)
    expected = np.zeros((30, 50), np.float32)
    r, c = index.pairs(q)
    keep = np.isin(r, rows)
    expected[r[keep], c[keep]] = np.inf
    np.testing.assert_array_equal(out, expected)
    index.fill(out, np.full(30, 99), np.arange(30), -1.0)  # no query camera in the gallery (LaST)
    np.testing.assert_array_equal(out, expected)
