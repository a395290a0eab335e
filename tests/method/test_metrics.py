"""metrics.evaluate / MetricAccumulator against hand-computed cases and against a direct,
readable implementation of the reference protocol (Simple-CCReID tools/eval_metrics.py
with GEFF's CC camera -1 rule), written below with a stable argsort so ties agree."""
from __future__ import annotations

import numpy as np
import pytest

from reface_utils.method.metrics import EvalLabels, EvalResult, MetricAccumulator, evaluate
from reface_utils.method.metrics import rank_counts


@pytest.fixture(params=["packed", "packed-chunks", "passes", "sort"])
def counting(request, monkeypatch):
    """Force each way of counting the entries before a good match (all must be exact):
    packed keys for float32 rows (default; "packed-chunks": a few rows per chunk and most
    rows handed on to the row-by-row counting), or row by row with passes or a sort."""
    if request.param in ("passes", "sort"):
        monkeypatch.setattr(rank_counts, "_KEY_COL_LIMIT", 0)  # no packed keys
        monkeypatch.setattr(rank_counts, "_SORT_NS_PER_ENTRY", 1e12 if request.param == "passes" else 0.0)
    elif request.param == "packed-chunks":
        monkeypatch.setattr(rank_counts, "_PACKED_CHUNK_ENTRIES", 64)
        monkeypatch.setattr(rank_counts, "_PACKED_DENSE", 0.2)
    return request.param


# --------------------------------------------------------------------------- reference
def reference_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None, mode="standard"):
    """The reference protocol, one query at a time (stable argsort instead of quicksort)."""
    order = np.argsort(distmat, axis=1, kind="stable")
    cmc_sum = np.zeros(len(g_pids))
    ap_sum = 0.0
    skipped = 0
    for i in range(len(q_pids)):
        same_pid = np.flatnonzero(g_pids == q_pids[i])
        same_cam = np.flatnonzero(g_camids == q_camids[i])
        good = np.setdiff1d(same_pid, same_cam)
        junk = np.intersect1d(same_pid, same_cam)
        if mode != "standard":
            same_clothes = np.flatnonzero(g_clothes == q_clothes[i])
            if mode == "CC":
                good = np.setdiff1d(good, same_clothes)
                junk = np.union1d(junk, np.intersect1d(same_pid, same_clothes))
            else:
                good = np.intersect1d(good, same_clothes)
                junk = np.union1d(junk, np.setdiff1d(same_pid, same_clothes))
        if good.size == 0:
            skipped += 1
            continue
        if mode == "CC":
            cams = np.unique(g_camids[good])
            if len(cams) == 1 and cams[0] == -1:
                skipped += 1
                continue
        ranking = order[i][~np.isin(order[i], junk)]
        rows_good = np.flatnonzero(np.isin(ranking, good))
        cmc = np.zeros(len(g_pids))
        cmc[rows_good[0]:] = 1.0
        ap = 0.0
        for k in range(len(good)):
            ap += (1.0 / len(good)) * ((k + 1.0) / (rows_good[k] + 1.0))
        cmc_sum += cmc
        ap_sum += ap
    n = len(q_pids) - skipped
    if n == 0:  # the reference returns zeros here; ReFace says undefined (NaN)
        return np.full(len(g_pids), np.nan), float("nan"), 0
    return cmc_sum / n, ap_sum / n, n


def random_case(rng, ties: bool):
    n_q, n_g = int(rng.integers(1, 25)), int(rng.integers(1, 50))
    n_pid, n_cam, n_clothes = int(rng.integers(1, 6)), int(rng.integers(1, 4)), int(rng.integers(1, 3))
    case = dict(
        q_pids=rng.integers(0, n_pid, n_q), g_pids=rng.integers(0, n_pid, n_g),
        q_camids=rng.integers(0, n_cam, n_q), g_camids=rng.integers(-1, n_cam, n_g),  # -1: enriched
        q_clothes=rng.integers(0, n_clothes, n_q), g_clothes=rng.integers(0, n_clothes, n_g),
    )
    if ties:
        dist = rng.integers(0, 4, (n_q, n_g)).astype(np.float32)
        dist[rng.random(dist.shape) < 0.1] = np.inf
    else:
        dist = rng.standard_normal((n_q, n_g))
        if rng.random() < 0.5:  # retrieval's dtype (packed keys), else float64
            dist = dist.astype(np.float32)
    return dist, case


def check_same(ours: EvalResult, ref) -> None:
    cmc, m_ap, n = ref
    assert ours.num_evaluated == n
    assert ours.cmc.shape == cmc.shape
    np.testing.assert_allclose(ours.cmc, cmc, rtol=0, atol=1e-9)
    assert abs(ours.mAP - m_ap) < 1e-9 or (n == 0 and np.isnan(ours.mAP) and np.isnan(m_ap))


# ------------------------------------------------------------------------ hand-made
def test_hand_computed_standard():
    # gallery:        0    1    2(junk) 3    4
    g_pids = np.array([1, 2, 1, 1, 3])
    g_cams = np.array([1, 1, 0, 1, 1])
    dist = np.array([[0.5, 0.1, 0.05, 0.9, 0.3]])
    # ranking without junk: 1, 4, 0, 3 -> good (0, 3) at ranks 2 and 3
    res = evaluate(dist, np.array([1]), g_pids, np.array([0]), g_cams)
    assert res.num_evaluated == 1 and res.num_skipped == 0
    assert res.mAP == pytest.approx((1 / 3 + 2 / 4) / 2)
    np.testing.assert_array_equal(res.cmc, [0, 0, 1, 1, 1])
    assert (res.top1, res.top(3), res.top(20)) == (0.0, 1.0, 1.0)
    assert res.first_good_rank.tolist() == [2]
    assert res.as_dict()["top5"] == 1.0


def test_ties_broken_by_gallery_index(counting):
    # all distances equal: the ranking is the gallery order 0, 1, 2, 3; good = 1 and 3
    dist = np.zeros((1, 4), np.float32)
    res = evaluate(dist, np.array([7]), np.array([5, 7, 5, 7]), np.array([0]), np.array([1, 1, 1, 1]))
    assert res.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    np.testing.assert_array_equal(res.cmc, [0, 1, 1, 1])
    # -0.0 and 0.0 tie too (numpy orders them as equal)
    dist = np.array([[0.0, -0.0]], np.float32)
    res = evaluate(dist, np.array([1]), np.array([2, 1]), np.array([0]), np.array([1, 1]))
    assert res.first_good_rank.tolist() == [1]


def test_no_good_match_and_all_junk_are_skipped():
    g_pids, g_cams = np.array([1, 1, 2]), np.array([0, 0, 1])
    dist = np.array([[0.1, 0.2, 0.3],   # pid 1, cam 0: both pid-1 entries junk -> skipped
                     [0.3, 0.2, 0.1],   # pid 9: no match -> skipped
                     [0.3, 0.2, 0.1]])  # pid 2, cam 0: good = 2 at rank 0
    res = evaluate(dist, np.array([1, 9, 2]), g_pids, np.array([0, 0, 0]), g_cams)
    assert (res.num_evaluated, res.num_skipped) == (1, 2)
    assert res.mAP == 1.0 and res.top1 == 1.0
    assert res.first_good_rank.tolist() == [-1, -1, 0]


def test_nothing_evaluated_is_undefined_not_zero():
    res = evaluate(np.zeros((2, 2)), np.array([1, 1]), np.array([2, 3]), np.array([0, 0]), np.array([1, 1]))
    assert res.num_evaluated == 0 and np.isnan(res.mAP) and np.isnan(res.top1)
    assert np.isnan(res.cmc).all() and res.cmc.shape == (2,)


def test_clothes_rules():
    # query pid 1, cam 0, clothes 5.   gallery: 0: other pid; 1: same clothes; 2: other clothes;
    # 3: same camera (junk everywhere)
    g = dict(g_pids=np.array([2, 1, 1, 1]), g_camids=np.array([1, 1, 1, 0]), g_clothes_ids=np.array([5, 5, 6, 6]))
    q = dict(q_pids=np.array([1]), q_camids=np.array([0]), q_clothes_ids=np.array([5]))
    dist = np.array([[0.1, 0.2, 0.3, 0.0]])
    std = evaluate(dist, **q, **g, mode="standard")   # ranking 0, 1, 2 -> good 1, 2 at ranks 1, 2
    assert std.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    cc = evaluate(dist, **q, **g, mode="CC")          # 1 junk; ranking 0, 2 -> good 2 at rank 1
    assert cc.mAP == pytest.approx(1 / 2) and cc.first_good_rank.tolist() == [1]
    sc = evaluate(dist, **q, **g, mode="SC")          # 2 junk; ranking 0, 1 -> good 1 at rank 1
    assert sc.mAP == pytest.approx(1 / 2) and sc.first_good_rank.tolist() == [1]


def test_cc_skips_queries_matched_only_by_enriched_samples():
    # GEFF: enriched samples carry camera -1; a CC query whose good matches are all such
    # samples is skipped, in CC mode only.
    g = dict(g_pids=np.array([1, 1, 2]), g_camids=np.array([-1, -1, 3]), g_clothes_ids=np.array([9, 9, 4]))
    q = dict(q_pids=np.array([1, 2]), q_camids=np.array([0, 0]), q_clothes_ids=np.array([5, 5]))
    dist = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    assert evaluate(dist, **q, **g, mode="CC").num_evaluated == 1
    assert evaluate(dist, **q, **g, mode="standard").num_evaluated == 2
    # ReFace's first release evaluated without the rule
    assert evaluate(dist, **q, **g, mode="CC", cc_skip_enriched_only=False).num_evaluated == 2
    # one real camera among the good matches: evaluated
    g["g_camids"] = np.array([-1, 4, 3])
    assert evaluate(dist, **q, **g, mode="CC").num_evaluated == 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])  # float32: the packed-key path
def test_nan_is_rejected(dtype):
    dist = np.array([[0.1, np.nan]], dtype)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(dist, np.array([1]), np.array([1, 2]), np.array([0]), np.array([1, 1]))


def test_bad_input_messages():
    with pytest.raises(ValueError, match="clothes ids"):
        evaluate(np.zeros((1, 1)), [1], [1], [0], [1], mode="CC")
    with pytest.raises(ValueError, match="unknown evaluation mode"):
        evaluate(np.zeros((1, 1)), [1], [1], [0], [1], mode="cc")
    with pytest.raises(ValueError, match="shape"):
        evaluate(np.zeros((2, 1)), [1], [1], [0], [1])
    acc = MetricAccumulator(EvalLabels([1], [1], [0], [1]))
    acc.add_block(np.zeros((1, 1)), slice(0, 1))
    with pytest.raises(ValueError, match="twice"):
        acc.add_block(np.zeros((1, 1)), slice(0, 1))


# ----------------------------------------------------------------- random vs reference
@pytest.mark.parametrize("mode", ["standard", "CC", "SC"])
@pytest.mark.parametrize("ties", [False, True])
def test_random_against_reference(mode, ties, counting):
    rng = np.random.default_rng(12 + 2 * ties + ["standard", "CC", "SC"].index(mode))
    for _ in range(60):
        dist, c = random_case(rng, ties)
        ref = reference_evaluate(dist, c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"],
                                 c["q_clothes"], c["g_clothes"], mode)
        ours = evaluate(dist, c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"],
                        c["q_clothes"], c["g_clothes"], mode=mode, block_size=int(rng.integers(1, 8)))
        check_same(ours, ref)


def test_blocks_in_any_order_with_threads_match_full(counting):
    rng = np.random.default_rng(3)
    n_q, n_g = 300, 900
    q_pids, g_pids = rng.integers(0, 40, n_q), rng.integers(0, 40, n_g)
    q_cams, g_cams = rng.integers(0, 5, n_q), rng.integers(0, 5, n_g)
    q_clo, g_clo = rng.integers(0, 3, n_q), rng.integers(0, 3, n_g)
    dist = rng.standard_normal((n_q, n_g)).astype(np.float32)
    dist[:40] = np.round(dist[:40])  # rows full of ties
    modes = ("standard", "CC", "SC")
    full = {m: evaluate(dist, q_pids, g_pids, q_cams, g_cams, q_clo, g_clo, mode=m, block_size=n_q) for m in modes}
    for block, threads in [(1, 1), (17, 2), (128, 3)]:
        acc = MetricAccumulator(EvalLabels(q_pids, g_pids, q_cams, g_cams, q_clo, g_clo), modes=modes, threads=threads)
        starts = rng.permutation(np.arange(0, n_q, block))
        for s in starts:
            acc.add_block(dist[s:s + block], np.arange(s, min(s + block, n_q)))
        assert acc.complete
        for m in modes:
            got = acc.result(m)
            np.testing.assert_array_equal(got.cmc, full[m].cmc)
            assert got.mAP == full[m].mAP  # bit-identical: per-query APs summed once
            np.testing.assert_array_equal(got.first_good_rank, full[m].first_good_rank)


def test_exclude_pairs_equal_removing_the_columns():
    rng = np.random.default_rng(5)
    n_q, n_g = 20, 60
    q_pids, g_pids = rng.integers(0, 4, n_q), rng.integers(0, 4, n_g)
    q_cams, g_cams = rng.integers(0, 3, n_q), rng.integers(0, 3, n_g)
    dist = rng.standard_normal((n_q, n_g))
    drop = rng.integers(0, n_g, n_q)  # one column per query
    acc = MetricAccumulator(EvalLabels(q_pids, g_pids, q_cams, g_cams))
    acc.add_block(dist, slice(0, n_q), exclude=(np.arange(n_q), drop))
    got = acc.result()
    ap, first = [], []
    for i in range(n_q):
        keep = np.arange(n_g) != drop[i]
        r = evaluate(dist[i:i + 1, keep], q_pids[i:i + 1], g_pids[keep], q_cams[i:i + 1], g_cams[keep])
        if r.num_evaluated:
            ap.append(r.mAP)
        first.append(r.first_good_rank[0])
    assert got.num_evaluated == len(ap)
    assert got.mAP == pytest.approx(np.mean(ap), abs=1e-12)
    np.testing.assert_array_equal(got.first_good_rank, first)


def test_no_evaluable_query_gives_nan_not_zero():
    # one query whose only good match is in its own camera: junk in standard mode
    res = evaluate(np.array([[0.2, 0.5]], np.float32), np.array([1]), np.array([1, 2]),
                   np.array([0]), np.array([0, 1]))
    assert res.num_evaluated == 0 and res.num_skipped == 1
    assert np.isnan(res.mAP) and np.isnan(res.top1) and np.isnan(res.cmc).all()
    assert np.isnan(res.as_dict()["top5"])
