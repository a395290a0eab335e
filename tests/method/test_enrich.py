"""Gallery enrichment on hand-made face features, with hand-computed expectations."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reface_utils.method.enrich import best_matches, enrich_gallery, enrichment_sweep
from reface_utils.models.face import FaceFeatures

X, Y, Z = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]


def feats(rows, scores=None) -> FaceFeatures:
    """Face features from embedding rows; ``None`` is an image without a face."""
    n = len(rows)
    emb = np.array([r if r is not None else [0.0, 0.0, 0.0] for r in rows], np.float32).reshape(n, 3)
    has = np.array([r is not None for r in rows], bool)
    score = np.where(has, 0.9, 0.0) if scores is None else np.asarray(scores)
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = np.where(norm > 0, emb / np.maximum(norm, 1e-12), 0)
    return FaceFeatures(has, score, np.zeros((n, 4)), np.zeros((n, 5, 2)), emb)


def meta(**columns) -> pd.DataFrame:
    return pd.DataFrame(columns)


def rows(e) -> list[tuple]:
    s = e.samples
    return list(zip(s.query_index, s.gallery_index, s.pid, np.round(s.similarity, 4)))


# --------------------------------------------------------------------------- hand-made cases
def test_camera_exclusion():
    gallery = feats([X, [0.8, 0.6, 0], Y])
    g = meta(pid=[1, 2, 3], camid=[0, 1, 1], clothes_id=[10, 20, 30])
    query = feats([X, X])
    q = meta(pid=[1, 1], camid=[0, 2], clothes_id=[11, 11])
    e = enrich_gallery(query, gallery, q, g, det_threshold=0.5, sim_threshold=0.5, clothes_changing=False)
    # query 0 shares camera 0 with g0 -> g1 (0.8, pid 2); query 1 may use g0 (1.0)
    assert rows(e) == [(0, 1, 2, 0.8), (1, 0, 1, 1.0)]
    assert e.samples.true_pid.tolist() == [1, 1]
    assert e.summary["enriched"] == 2 and e.summary["correct"] == 1 and e.summary["precision"] == 0.5


def test_clothes_exclusion_only_with_cc_flag():
    gallery = feats([X, [0.6, 0.8, 0], [0.7, 0, np.sqrt(0.51)]])
    g = meta(pid=[1, 1, 2], camid=[1, 1, 1], clothes_id=[10, 11, 20])
    query = feats([X])
    q = meta(pid=[1], camid=[0], clothes_id=[10])
    plain = enrich_gallery(query, gallery, q, g, det_threshold=0.5, sim_threshold=0.5, clothes_changing=False)
    assert rows(plain) == [(0, 0, 1, 1.0)]
    cc = enrich_gallery(query, gallery, q, g, det_threshold=0.5, sim_threshold=0.5, clothes_changing=True)
    # g0 wears the query's clothes: next best is g2 (0.7, pid 2), not g1 (0.6)
    assert rows(cc) == [(0, 2, 2, 0.7)]
    assert cc.summary["precision"] == 0.0


def test_similarity_threshold_is_inclusive():
    gallery = feats([X, [0.6, 0.8, 0]])
    g = meta(pid=[1, 2], camid=[1, 1])
    query = feats([X, Y])  # best: 1.0 (g0) and 0.8 (g1)
    q = meta(pid=[1, 2], camid=[0, 0])
    run = lambda t: rows(enrich_gallery(query, gallery, q, g, det_threshold=0.5, sim_threshold=t,  # noqa: E731
                                        clothes_changing=False))
    assert run(0.79) == [(0, 0, 1, 1.0), (1, 1, 2, 0.8)]
    assert run(0.81) == [(0, 0, 1, 1.0)]
    assert run(1.0) == [(0, 0, 1, 1.0)]  # >= threshold, as the reference
    assert run(1.01) == []


def test_rank_diff_uses_identity_scores():
    # identity scores for query X: pid 1 -> max(1.0, 0.8) = 1.0, pid 2 -> 0.6, pid 3 -> 0.0
    gallery = feats([X, [0.8, 0.6, 0], [0.6, 0.8, 0], Z])
    g = meta(pid=[1, 1, 2, 3], camid=[1, 1, 1, 1])
    query = feats([X])
    q = meta(pid=[1], camid=[0])
    run = lambda d, **kw: enrich_gallery(query, gallery, q, g, det_threshold=0.5, sim_threshold=0.5,  # noqa: E731
                                         clothes_changing=False, rank_diff=d, **kw)
    e = run(0.3)
    assert rows(e) == [(0, 0, 1, 1.0)]  # gap 0.4 (the image-level runner-up, 0.8, is the same pid)
    assert e.queries.identity_gap[0] == pytest.approx(0.4, abs=1e-6)
    assert rows(run(0.41)) == []
    assert rows(run(0.0)) == [(0, 0, 1, 1.0)]
    # the runner-up identity seen from the query's camera does not compete: gap 1.0 (pid 3)
    g2 = g.assign(camid=[1, 1, 0, 1])
    e = enrich_gallery(query, gallery, q, g2, det_threshold=0.5, sim_threshold=0.5, clothes_changing=False,
                       rank_diff=0.9)
    assert rows(e) == [(0, 0, 1, 1.0)] and e.queries.identity_gap[0] == pytest.approx(1.0)
    # every other identity excluded by the camera: gap +inf
    g3 = g.assign(camid=[1, 1, 0, 0])
    e = enrich_gallery(query, gallery, q, g3, det_threshold=0.5, sim_threshold=0.5, clothes_changing=False,
                       rank_diff=5.0)
    assert rows(e) == [(0, 0, 1, 1.0)] and np.isposinf(e.queries.identity_gap[0])
    # a single competing identity: gap is +inf, any rank_diff passes
    single = enrich_gallery(query, gallery.subset([0, 1]), q, g.iloc[:2], det_threshold=0.5, sim_threshold=0.5,
                            clothes_changing=False, rank_diff=5.0)
    assert rows(single) == [(0, 0, 1, 1.0)] and np.isinf(single.queries.identity_gap[0])


def test_no_face_queries_and_detection_threshold():
    gallery = feats([X, Y], scores=[0.95, 0.7])
    g = meta(pid=[1, 2], camid=[1, 1])
    query = feats([None, X, Y, Y], scores=[0.0, 0.95, 0.95, 0.75])
    q = meta(pid=[1, 1, 2, 2], camid=[0, 0, 0, 0])
    e = enrich_gallery(query, gallery, q, g, det_threshold=0.8, sim_threshold=-1.0, clothes_changing=False)
    # query 0: no face; query 3: face below 0.8; query 2: its match g1 is below 0.8, so its
    # best allowed face is g0 (similarity 0), which passes sim_threshold -1
    assert rows(e) == [(1, 0, 1, 1.0), (2, 0, 1, 0.0)]
    assert e.summary["queries_with_face"] == 2 and e.summary["gallery_with_face"] == 1
    assert e.queries.has_face.tolist() == [False, True, True, False]
    assert e.queries.best_gallery_index.tolist() == [-1, 0, 0, -1]
    lower = enrich_gallery(query, gallery, q, g, det_threshold=0.5, sim_threshold=0.5, clothes_changing=False)
    assert rows(lower) == [(1, 0, 1, 1.0), (2, 1, 2, 1.0), (3, 1, 2, 1.0)]


def test_empty_gallery_and_faceless_gallery():
    query = feats([X, Y])
    q = meta(pid=[1, 2], camid=[0, 0], clothes_id=[1, 2])
    empty = enrich_gallery(query, FaceFeatures.empty(0, 3), q, meta(pid=[], camid=[], clothes_id=[]),
                           det_threshold=0.5, sim_threshold=-1.0, clothes_changing=True)
    assert empty.samples.empty and list(empty.samples.columns)[:4] == ["query_index", "gallery_index", "pid",
                                                                       "similarity"]
    assert empty.summary["enriched"] == 0 and np.isnan(empty.summary["precision"])
    assert (empty.queries.best_gallery_index == -1).all() and np.isneginf(empty.queries.best_similarity).all()
    faceless = enrich_gallery(query, feats([None, None]), q, meta(pid=[1, 2], camid=[1, 1], clothes_id=[5, 6]),
                              det_threshold=0.5, sim_threshold=-1.0, clothes_changing=False, rank_diff=0.1)
    assert faceless.samples.empty and faceless.summary["gallery_with_face"] == 0
    no_queries = enrich_gallery(FaceFeatures.empty(0, 3), feats([X]), meta(pid=[], camid=[]),
                                meta(pid=[1], camid=[1]), det_threshold=0.5, sim_threshold=0.5,
                                clothes_changing=False)
    assert no_queries.samples.empty and no_queries.summary["queries"] == 0


def test_majority_vote_by_track():
    gallery = feats([X, Y, [0.6, 0.8, 0]])
    g = meta(pid=[1, 2, 1], camid=[0, 0, 0])
    # Track A: f0 -> pid 1 (g0, 1.0); f1 -> pid 2 (g1, 1.0); f2 -> pid 1 (g2, 0.96);
    #          f3 no face; f4 matches nothing above 0.5 (does not vote). Majority: pid 1.
    # Track B: f5 -> pid 1 (g0, 1.0), f6 -> pid 2 (g1, 1.0): tie, equal sums -> smaller pid 1.
    # Track C: f7 -> pid 1 (g2, 0.96), f8 -> pid 2 (g1, 1.0): tie -> larger sum, pid 2.
    # Track D: no faces -> no label.
    query = feats([X, Y, [0.8, 0.6, 0], None, Z, X, Y, [0.8, 0.6, 0], Y, None, None])
    q = meta(pid=[1] * 5 + [2, 2] + [2, 2] + [3, 3], camid=[5] * 11,
             track=["A"] * 5 + ["B"] * 2 + ["C"] * 2 + ["D"] * 2)
    e = enrich_gallery(query, gallery, q, g, det_threshold=0.5, sim_threshold=0.5, clothes_changing=False,
                       vote_by_track=True)
    s = e.samples
    assert s.query_index.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert s.pid.tolist() == [1, 1, 1, 1, 1, 1, 1, 2, 2]
    assert s.track.tolist() == ["A"] * 5 + ["B"] * 2 + ["C"] * 2
    # own matches keep their gallery image; f1 goes to its best pid-1 image (g2, 0.8);
    # f3 (no face) to the anchor f0's match g0; f4 to its best pid-1 image (tie 0/0 -> g0);
    # f6 to g2 (0.8); f7 to the only pid-2 image g1 (0.6)
    assert s.gallery_index.tolist() == [0, 2, 2, 0, 0, 0, 2, 1, 1]
    np.testing.assert_allclose(s.similarity.to_numpy(), [1.0, 0.8, 0.96, np.nan, 0.0, 1.0, 0.8, 0.6, 1.0], atol=1e-6)
    assert s.own_match.tolist() == [True, False, True, False, False, True, False, False, True]
    assert e.summary["tracks"] == 4 and e.summary["tracks_labelled"] == 3 and e.summary["voting_frames"] == 7
    assert e.summary["correct"] == 7 and e.summary["precision"] == pytest.approx(7 / 9)  # track B is pid 2
    # nothing passes: no votes, no samples (integer track ids)
    none = enrich_gallery(query, gallery, q.assign(track=[1] * 11), g, det_threshold=0.5, sim_threshold=1.5,
                          clothes_changing=False, vote_by_track=True)
    assert none.samples.empty and none.summary["tracks_labelled"] == 0
    # the same thresholds, image by image: only the frames that voted
    plain = enrich_gallery(query, gallery, q, g, det_threshold=0.5, sim_threshold=0.5, clothes_changing=False)
    assert plain.samples.query_index.tolist() == [0, 1, 2, 5, 6, 7, 8]
    assert plain.samples.pid.tolist() == [1, 2, 1, 1, 2, 1, 2]


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="2 query face rows but 1"):
        enrich_gallery(feats([X, Y]), feats([X]), meta(camid=[0]), meta(pid=[1], camid=[1]),
                       det_threshold=0.5, sim_threshold=0.5, clothes_changing=False)
    with pytest.raises(KeyError, match="clothes_id"):
        enrich_gallery(feats([X]), feats([X]), meta(camid=[0]), meta(pid=[1], camid=[1]),
                       det_threshold=0.5, sim_threshold=0.5, clothes_changing=True)
    with pytest.raises(ValueError, match="track"):
        enrich_gallery(feats([X]), feats([X]), meta(camid=[0], track=[None]), meta(pid=[1], camid=[1]),
                       det_threshold=0.5, sim_threshold=0.5, clothes_changing=False, vote_by_track=True)
    with pytest.raises(ValueError, match="same face model"):
        enrich_gallery(feats([X]), FaceFeatures.empty(1, 128), meta(camid=[0]), meta(pid=[1], camid=[1]),
                       det_threshold=0.5, sim_threshold=0.5, clothes_changing=False)


# --------------------------------------------------------------------------- block-wise == brute force
def _random_problem(seed: int, nq: int = 150, ng: int = 220, d: int = 16):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, d))
    q_pid, g_pid = rng.integers(0, 12, nq), rng.integers(0, 12, ng)
    q_emb = centres[q_pid] + 0.9 * rng.standard_normal((nq, d))
    g_emb = centres[g_pid] + 0.9 * rng.standard_normal((ng, d))
    q_has, g_has = rng.random(nq) < 0.8, rng.random(ng) < 0.6
    unit = lambda x, h: np.where(h[:, None], x / np.linalg.norm(x, axis=1, keepdims=True), 0)  # noqa: E731
    qf = FaceFeatures(q_has, np.where(q_has, rng.uniform(0.5, 1, nq), 0), np.zeros((nq, 4)), np.zeros((nq, 5, 2)),
                      unit(q_emb, q_has))
    gf = FaceFeatures(g_has, np.where(g_has, rng.uniform(0.5, 1, ng), 0), np.zeros((ng, 4)), np.zeros((ng, 5, 2)),
                      unit(g_emb, g_has))
    qm = meta(pid=q_pid, camid=rng.integers(0, 4, nq), clothes_id=q_pid * 10 + rng.integers(0, 2, nq),
              track=q_pid * 100 + rng.integers(0, 3, nq))
    gm = meta(pid=g_pid, camid=rng.integers(0, 4, ng), clothes_id=g_pid * 10 + rng.integers(0, 2, ng))
    return qf, gf, qm, gm


def _brute_force(qf, gf, qm, gm, det_threshold, sim_threshold, cc, rank_diff):
    """One query at a time, straight from docs/METHOD.md section 3 (test reference only)."""
    out = []
    q_ok = qf.has_face & (qf.det_score >= det_threshold)
    g_ok = gf.has_face & (gf.det_score >= det_threshold)
    for i in np.flatnonzero(q_ok):
        allowed = g_ok & (gm.camid.to_numpy() != qm.camid[i])
        if cc:
            allowed &= gm.clothes_id.to_numpy() != qm.clothes_id[i]
        if not allowed.any():
            continue
        sims = np.where(allowed, gf.embedding.astype(np.float64) @ qf.embedding[i], -np.inf)
        j = int(np.argmax(sims))
        if sims[j] < sim_threshold:
            continue
        if rank_diff > 0:
            ids = sorted((sims[allowed & (gm.pid.to_numpy() == p)].max() for p in set(gm.pid[allowed])),
                         reverse=True)
            if len(ids) > 1 and ids[0] - ids[1] < rank_diff:
                continue
        out.append((i, j, gm.pid[j]))
    return out


@pytest.mark.parametrize("cc,rank_diff", [(False, 0.0), (True, 0.0), (True, 0.05)])
def test_blockwise_equals_brute_force_for_any_block_size(cc, rank_diff):
    qf, gf, qm, gm = _random_problem(seed=1)
    expected = _brute_force(qf, gf, qm, gm, 0.6, 0.3, cc, rank_diff)
    assert len(expected) > 20
    results = [enrich_gallery(qf, gf, qm, gm, det_threshold=0.6, sim_threshold=0.3, clothes_changing=cc,
                              rank_diff=rank_diff, block_size=b) for b in (1, 7, None, 100_000)]
    for e in results:
        assert list(zip(e.samples.query_index, e.samples.gallery_index, e.samples.pid)) == expected
        pd.testing.assert_frame_equal(e.samples, results[0].samples)
        # Block shapes change the BLAS kernel, so float similarities may differ in the last bit.
        pd.testing.assert_frame_equal(e.queries, results[0].queries, check_exact=False, rtol=0, atol=1e-6)
    vote = [enrich_gallery(qf, gf, qm, gm, det_threshold=0.6, sim_threshold=0.3, clothes_changing=cc,
                           rank_diff=rank_diff, vote_by_track=True, block_size=b).samples for b in (1, 5, None)]
    for v in vote[1:]:
        pd.testing.assert_frame_equal(v, vote[0])


def test_sweep_matches_enrich_gallery():
    qf, gf, qm, gm = _random_problem(seed=2)
    thresholds = [0.0, 0.2, 0.4, 0.6]
    for vote in (False, True):
        sweep = enrichment_sweep(qf, gf, qm, gm, det_threshold=0.6, thresholds=thresholds,
                                 clothes_changing=True, rank_diff=0.02, vote_by_track=vote)
        assert sweep.threshold.tolist() == thresholds
        for t, row in zip(thresholds, sweep.itertuples()):
            e = enrich_gallery(qf, gf, qm, gm, det_threshold=0.6, sim_threshold=t, clothes_changing=True,
                               rank_diff=0.02, vote_by_track=vote)
            assert row.enriched == e.summary["enriched"] and row.correct == e.summary["correct"]
            assert row.precision == pytest.approx(e.summary["precision"], nan_ok=True)
        assert sweep.enriched.is_monotonic_decreasing


def test_best_matches_is_the_unthresholded_argmax():
    qf, gf, qm, gm = _random_problem(seed=3, nq=20, ng=30)
    m = best_matches(qf, gf, qm, gm, det_threshold=0.0, clothes_changing=False)
    sims = qf.embedding @ gf.embedding.T
    for i in np.flatnonzero(qf.has_face):
        allowed = gf.has_face & (gm.camid.to_numpy() != qm.camid[i])
        j = int(np.argmax(np.where(allowed, sims[i], -np.inf)))
        assert m.best_index[i] == j and m.best_similarity[i] == pytest.approx(sims[i, j], abs=1e-6)
