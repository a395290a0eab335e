"""k-reciprocal re-ranking (reface_utils/method/rerank/): the dense function against a
loop-by-loop reference written from the algorithm (Zhong et al., CVPR 2017, as the classic
code runs it), the memory-bounded feature path against the dense function, torch against
numpy, and the evaluation (CC/SC filtering after re-ranking; enrichment inside the
query x gallery block). Inputs are random, hence without ties."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reface_utils.method.fusion import apply_enrichment, enriched_distance, face_distance, fuse, reid_distance
from reface_utils.method.metrics import evaluate
from reface_utils.method.rerank import (
    combine_results,
    k_reciprocal_rerank,
    k_reciprocal_rerank_features,
    rerank_blocks,
    rerank_configs,
    rerank_retrieval,
)
from reface_utils.method.retrieval import EnrichedGallery, FeatureSet, RetrievalConfig, run_retrieval

TOL = 1e-5


def reference_rerank(q_g, q_q, g_g, k1, k2, lam):
    """The algorithm one image and one pair at a time, in float64, with Python sets."""
    n_q, n_g = q_g.shape
    n = n_q + n_g
    dist = np.zeros((n, n))
    dist[:n_q, :n_q], dist[:n_q, n_q:], dist[n_q:, :n_q], dist[n_q:, n_q:] = q_q, q_g, q_g.T, g_g
    sq = dist ** 2
    # the classic normalises each column by its maximum, then transposes
    orig = np.array([[sq[j, i] / sq[:, i].max() for j in range(n)] for i in range(n)])
    ranks = [sorted(range(n), key=lambda j: (orig[i, j], j)) for i in range(n)]

    def reciprocal(i, k):
        return [j for j in ranks[i][:k] if i in ranks[j][:k]]

    half = int(round(k1 / 2))
    v = np.zeros((n, n))
    for i in range(n):
        own = reciprocal(i, k1 + 1)
        expanded = set(own)
        for c in own:
            theirs = reciprocal(c, half + 1)
            if len(set(theirs) & set(own)) > 2 / 3 * len(theirs):
                expanded |= set(theirs)
        members = sorted(expanded)
        if members:
            weight = np.exp(-orig[i, members])
            v[i, members] = weight / weight.sum()
    if k2 != 1:
        v = np.array([v[ranks[i][:k2]].mean(axis=0) for i in range(n)])
    out = np.empty((n_q, n_g))
    for i in range(n_q):
        for j in range(n_g):
            shared = np.minimum(v[i], v[n_q + j]).sum()
            out[i, j] = (1 - shared / (2 - shared)) * (1 - lam) + orig[i, n_q + j] * lam
    return out


def _unit(rng, n, dim=12):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _cosine_blocks(xq, xg):
    """1 - cos, the distance the feature path re-ranks (1 + fusion.reid_distance)."""
    one = np.float32(1)
    return one + reid_distance(xq, xg), one + reid_distance(xq, xq), one + reid_distance(xg, xg)


@pytest.mark.parametrize("n_q,n_g,k1,k2,lam", [
    (6, 30, 5, 3, 0.3),
    (12, 40, 8, 1, 0.5),
    (9, 25, 20, 6, 0.3),    # k1 >= Q and Q + G < k1 + 1 ... not quite: 34 > 21; Q < k1
    (3, 5, 20, 6, 0.3),     # Q + G < k1 + 1: every list holds everything
    (4, 7, 3, 12, 0.0),     # k2 > Q + G, lambda 0 (Jaccard only)
    (10, 20, 1, 2, 1.0),    # k1 = 1, lambda 1 (original distance only)
])
def test_dense_equals_loop_reference(n_q, n_g, k1, k2, lam):
    rng = np.random.default_rng(n_q * 100 + n_g)
    q_g, q_q, g_g = (m.astype(np.float64) for m in _cosine_blocks(_unit(rng, n_q), _unit(rng, n_g)))
    got = k_reciprocal_rerank(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    assert got.dtype == np.float32 and got.shape == (n_q, n_g)
    np.testing.assert_allclose(got, reference_rerank(q_g, q_q, g_g, k1, k2, lam), atol=TOL, rtol=0)


def test_dense_follows_the_classic_on_matrices_that_are_no_metric():
    # asymmetric blocks, non-zero diagonals: the column normalisation and its transpose,
    # and images that are not their own nearest (empty k-reciprocal sets) must follow the
    # classic exactly
    rng = np.random.default_rng(7)
    q_g, q_q, g_g = rng.random((7, 23)) + 0.1, rng.random((7, 7)) + 0.1, rng.random((23, 23)) + 0.1
    for k1, k2 in ((4, 3), (6, 1), (10, 5)):
        np.testing.assert_allclose(k_reciprocal_rerank(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=0.3),
                                   reference_rerank(q_g, q_q, g_g, k1, k2, 0.3), atol=TOL, rtol=0)


@pytest.mark.parametrize("n_q,n_g,k1,k2,block", [
    (40, 150, 20, 6, 32),   # several query and gallery blocks, the last ones partial
    (13, 90, 7, 3, 5),      # blocks smaller than k1 + 1: lists fill over several blocks
    (5, 11, 20, 6, None),   # Q + G < k1 + 1
    (70, 9, 4, 1, 16),      # G < k1, no query expansion
])
def test_features_path_equals_dense(n_q, n_g, k1, k2, block):
    rng = np.random.default_rng(n_q + n_g)
    xq, xg = _unit(rng, n_q), _unit(rng, n_g)
    dense = k_reciprocal_rerank(*_cosine_blocks(xq, xg), k1=k1, k2=k2, lambda_value=0.3)
    got = k_reciprocal_rerank_features(xq, xg, k1=k1, k2=k2, lambda_value=0.3, block_size=block)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, dense, atol=TOL, rtol=0)
    # the generator gives the same blocks, query rows in order
    rows = [(s.start, s.stop, b.copy()) for s, b in rerank_blocks(xq, xg, k1=k1, k2=k2, block_size=block)]
    assert rows[0][0] == 0 and rows[-1][1] == n_q
    np.testing.assert_array_equal(np.concatenate([b for _, _, b in rows]), got)


@pytest.mark.parametrize("device", ["numpy", "torch-cpu"])
def test_small_memory_budget_splits_tiles_and_still_equals_dense(monkeypatch, device):
    # blocks of 7 rows and a 2 KiB budget: gallery tiles of 7 rows x 73 columns -- the
    # upper triangle in many tiles, each list filled over many pushes
    from reface_utils.method.rerank import blockwise as rerank  # where _budget reads _BLOCK_BYTES

    monkeypatch.setattr(rerank, "_BLOCK_BYTES", 2048)
    rng = np.random.default_rng(5)
    xq, xg = _unit(rng, 45), _unit(rng, 200)
    dense = k_reciprocal_rerank(*_cosine_blocks(xq, xg), k1=9, k2=4)
    got = k_reciprocal_rerank_features(xq, xg, k1=9, k2=4, block_size=7, device=device)
    np.testing.assert_allclose(got, dense, atol=TOL, rtol=0)


def test_torch_equals_numpy():
    rng = np.random.default_rng(3)
    xq, xg = _unit(rng, 37), _unit(rng, 120)
    numpy_out = k_reciprocal_rerank_features(xq, xg, block_size=16)
    torch_out = k_reciprocal_rerank_features(xq, xg, block_size=16, device="torch-cpu")
    np.testing.assert_allclose(torch_out, numpy_out, atol=TOL, rtol=0)


def test_duplicates_break_ties_by_index_in_both_paths():
    # exact duplicates tie at every distance: both paths rank the lower index first
    rng = np.random.default_rng(11)
    xq, xg = _unit(rng, 8, 6), _unit(rng, 30, 6)
    xg[10:14] = xg[3]
    xq[2] = xg[5]
    dense = k_reciprocal_rerank(*_cosine_blocks(xq, xg), k1=5, k2=3)
    np.testing.assert_allclose(k_reciprocal_rerank_features(xq, xg, k1=5, k2=3, block_size=4), dense, atol=TOL)


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(0)
    q_g, q_q, g_g = _cosine_blocks(_unit(rng, 4), _unit(rng, 6))
    with pytest.raises(ValueError, match="k1 must be a whole number >= 1, got 0"):
        k_reciprocal_rerank(q_g, q_q, g_g, k1=0)
    with pytest.raises(ValueError, match="k2 must be a whole number >= 1"):
        k_reciprocal_rerank(q_g, q_q, g_g, k2=2.5)
    with pytest.raises(ValueError, match=r"lambda_value must lie in \[0, 1\], got 1.5"):
        k_reciprocal_rerank(q_g, q_q, g_g, lambda_value=1.5)
    with pytest.raises(ValueError, match=r"g_g must have shape \(6, 6\).*got \(5, 5\)"):
        k_reciprocal_rerank(q_g, q_q, g_g[:5, :5])
    with pytest.raises(ValueError, match=r"q_q must have shape \(4, 4\)"):
        k_reciprocal_rerank(q_g, q_q[:3], g_g)
    with pytest.raises(ValueError, match="q_g must hold finite numbers"):
        k_reciprocal_rerank(np.where(q_g > 1, np.nan, q_g), q_q, g_g)
    xq, xg = _unit(rng, 4), _unit(rng, 6)
    with pytest.raises(ValueError, match="query features are 12-d but gallery features 8-d"):
        rerank_blocks(xq, _unit(rng, 6, 8))
    with pytest.raises(ValueError, match="must be L2-normalised.*row 2"):
        rerank_blocks(xq * np.array([[1], [1], [2], [1]], np.float32), xg)
    with pytest.raises(ValueError, match="lambda_value must lie in"):
        rerank_blocks(xq, xg, lambda_value=-0.1)


# ------------------------------------------------------------------ evaluation
def _rows_unit(a):
    """Rows scaled to norm 1 (zero rows stay zero: images without a face)."""
    return (a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _sets(seed=0, n_q=30, n_g=80, n_pids=8):
    """Queries and gallery with identities, cameras, two outfits per person, faces for
    some; an enrichment table attaching faced queries to a gallery image."""
    rng = np.random.default_rng(seed)
    centre, outfit = rng.standard_normal((n_pids, 16)), rng.standard_normal((n_pids * 2, 16)) * 0.8

    def side(n, n_cams, cam0):
        pid = rng.integers(0, n_pids, n)
        clothes = pid * 2 + rng.integers(0, 2, n)
        x = centre[pid] + outfit[clothes] + rng.standard_normal((n, 16)) * 0.7
        face = centre[pid, :8] + rng.standard_normal((n, 8)) * 0.5
        has = rng.random(n) < 0.6
        face[~has] = 0
        return FeatureSet(_rows_unit(x), pid, cam0 + rng.integers(0, n_cams, n), clothes, _rows_unit(face), has)

    query, gallery = side(n_q, 3, 0), side(n_g, 3, 0)
    faced = np.flatnonzero(query.has_face)[::2]
    g_idx = np.array([rng.choice(np.flatnonzero(gallery.pids == query.pids[q])) if (gallery.pids == query.pids[q]).any()
                      else 0 for q in faced])
    table = pd.DataFrame({"query_index": faced, "gallery_index": g_idx})
    return query, gallery, EnrichedGallery.from_table(table, query, gallery)


def test_evaluation_filters_after_reranking():
    query, gallery, _ = _sets()
    modes = ("standard", "CC", "SC")
    res = rerank_retrieval(query, gallery, [RetrievalConfig("reid+rerank", 1.0)], modes=modes, k1=6, k2=3,
                           progress=False)
    # expected: re-rank against the whole gallery, then evaluate each mode on that matrix
    dist = k_reciprocal_rerank(*_cosine_blocks(query.reid, gallery.reid), k1=6, k2=3)
    for mode in modes:
        want = evaluate(dist, query.pids, gallery.pids, query.camids, gallery.camids, query.clothes_ids,
                        gallery.clothes_ids, mode=mode)
        got = res.results[("reid+rerank", mode)]
        np.testing.assert_array_equal(got.cmc, want.cmc)
        assert got.mAP == pytest.approx(want.mAP, abs=1e-12)
        assert got.num_evaluated == want.num_evaluated
    # and not what re-ranking each query against its CC-filtered gallery would give
    q = 0
    allowed = ~((gallery.pids == query.pids[q]) & ((gallery.camids == query.camids[q])
                                                 | (gallery.clothes_ids == query.clothes_ids[q])))
    sub = gallery.reid[allowed]
    filtered = k_reciprocal_rerank(*_cosine_blocks(query.reid, sub), k1=6, k2=3)[q]
    assert np.abs(filtered - dist[q, allowed]).max() > 1e-3
    assert set(res.table["mode"]) == set(modes) and list(res.table["config"].unique()) == ["reid+rerank"]


def test_hand_made_case_cc_filter_comes_after_reranking():
    # On a circle (angles in degrees from the query q): s1 (20), s2 (26) are q's person in
    # q's outfit -- junk in CC; c1 (44) is q's person in another outfit -- the one CC-good
    # match; d1 (-31), d2 (-37) are other people on the other side of q; three more far
    # away. By distance c1 comes after d1 and d2. Re-ranked over the whole gallery, c1
    # shares its neighbours s1, s2 with q and moves ahead of d1, d2; CC then drops s1, s2
    # from the ranking only. Re-ranking the CC-filtered gallery instead loses that bridge.
    def at(deg, z=0.0):
        t = np.deg2rad(deg)
        v = np.array([np.cos(t), np.sin(t), z], np.float32)
        return v / np.linalg.norm(v)

    near = [at(a) for a in (20, 26, 44, -31, -37)]
    far = [at(180 + 10 * i, 0.3 * i) for i in range(3)]
    gallery = FeatureSet(np.stack(near + far), pids=[1, 1, 1, 2, 3, 4, 5, 6], camids=[1] * 8,
                         clothes_ids=[10, 10, 11, 20, 30, 40, 50, 60])
    query = FeatureSet(at(0)[None], pids=[1], camids=[0], clothes_ids=[10])
    kw = dict(k1=3, k2=2, lambda_value=0.3)
    res = rerank_retrieval(query, gallery, [RetrievalConfig("reid+rerank", 1.0)], modes=("standard", "CC"),
                           progress=False, **kw)
    cc = res.results[("reid+rerank", "CC")]
    assert cc.first_good_rank[0] == 0 and cc.mAP == 1.0
    plain = run_retrieval(query, gallery, [RetrievalConfig("reid", 1.0)], modes=("CC",), progress=False)
    assert plain.results[("reid", "CC")].first_good_rank[0] == 2  # behind d1, d2
    alone = k_reciprocal_rerank(*_cosine_blocks(query.reid, gallery.reid[2:]), **kw)[0]  # c1, d1, d2, far
    assert int((alone[1:] < alone[0]).sum()) == 2
    # standard mode: s1, s2 count (good: other camera), c1 among them
    std = res.results[("reid+rerank", "standard")]
    dist = k_reciprocal_rerank(*_cosine_blocks(query.reid, gallery.reid), **kw)[0]
    assert std.first_good_rank[0] == 0 and np.argmin(dist) in (0, 1, 2)


def test_fused_enriched_rerank_matches_its_definition():
    query, gallery, enriched = _sets(seed=1)
    alpha, modes = 0.75, ("standard", "CC")
    configs = rerank_configs(alpha, exclude_self=True)
    assert [c.name for c in configs] == ["reid+rerank", "fused+enriched+rerank",
                                         "fused+enriched+rerank (own copy left out)"]
    res = rerank_retrieval(query, gallery, configs, modes=modes, enriched=enriched, k1=5, k2=3, topk=5,
                           block_size=8, progress=False)
    q_g, q_q, g_g = _cosine_blocks(query.reid, gallery.reid)
    face = face_distance(query.face, gallery.face, query.has_face, gallery.has_face, query.camids, gallery.camids)
    samples = enriched_distance(query.reid, enriched.reid, enriched.gallery_index)
    for name, exclude_self in (("fused+enriched+rerank", False), ("fused+enriched+rerank (own copy left out)", True)):
        # enrichment inside the query x gallery block, then re-ranking, then fusion with faces
        enriched_qg = apply_enrichment(q_g - np.float32(1), samples, enriched.gallery_index,
                                       query_indices=np.arange(len(query)),
                                       enriched_query_indices=enriched.source_query,
                                       exclude_self=exclude_self) + np.float32(1)
        dist = fuse(k_reciprocal_rerank(enriched_qg, q_q, g_g, k1=5, k2=3), face, alpha)
        for mode in modes:
            want = evaluate(dist, query.pids, gallery.pids, query.camids, gallery.camids, query.clothes_ids,
                            gallery.clothes_ids, mode=mode)
            got = res.results[(name, mode)]
            np.testing.assert_array_equal(got.first_good_rank, want.first_good_rank)
            assert got.mAP == pytest.approx(want.mAP, abs=1e-9)
        assert res.topk[name].shape == (len(query), 5)
        np.testing.assert_array_equal(res.topk[name][:, 0], np.argmin(dist, axis=1))
    # enrichment and faces change the numbers
    assert res.results[("reid+rerank", "standard")].mAP != res.results[("fused+enriched+rerank", "standard")].mAP


def test_torch_evaluation_equals_numpy_and_tables_combine():
    query, gallery, enriched = _sets(seed=2, n_q=20, n_g=60)
    kw = dict(modes=("standard", "SC"), enriched=enriched, k1=6, k2=3, block_size=8, progress=False)
    a = rerank_retrieval(query, gallery, **kw)
    b = rerank_retrieval(query, gallery, device="torch-cpu", **kw)
    assert list(a.table["config"].unique()) == ["reid+rerank", "fused+enriched+rerank"]
    for key, res in a.results.items():
        np.testing.assert_array_equal(res.first_good_rank, b.results[key].first_good_rank)
        assert res.mAP == pytest.approx(b.results[key].mAP, abs=1e-9)
    base = run_retrieval(query, gallery, modes=("standard", "SC"), enriched=enriched, progress=False)
    both = combine_results(base, a)
    assert len(both.table) == len(base.table) + len(a.table)
    assert ("fused+enriched+rerank", "SC") in both.results and ("fused+enriched", "SC") in both.results
    with pytest.raises(ValueError, match="unique"):
        combine_results(a, a)


def test_evaluation_rejects_what_it_cannot_rerank():
    query, gallery, enriched = _sets(seed=3, n_q=6, n_g=20)
    with pytest.raises(ValueError, match="face only"):
        rerank_retrieval(query, gallery, [RetrievalConfig("face", 0.0)], progress=False)
    with pytest.raises(ValueError, match="'min' enrichment"):
        rerank_retrieval(query, gallery, [RetrievalConfig("x", 0.75, "append")], enriched=enriched, progress=False)
    with pytest.raises(ValueError, match="k1 must be"):
        rerank_retrieval(query, gallery, k1=0, progress=False)


# ------------------------------------------------------------- internal pieces
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("axis", [0, 1])
def test_neighbour_lists_against_brute_force(backend, axis):
    # blocks pushed into running lists, by rows or by columns: some lists already full
    # (earlier, lower indices), others empty; many ties (small integers), duplicates of the
    # k-th value included: each list must end as the k smallest (distance, index) pairs
    from reface_utils.method.rerank.neighbours import _Nearest, _push, _unkey

    rng = np.random.default_rng(axis)
    k, n_lists, width = 4, 9, 14
    earlier = rng.integers(0, 12, (n_lists, 6)).astype(np.float32)  # indices 0..5
    nearest = _Nearest(n_lists, k)
    half = np.arange(n_lists) % 2 == 0
    rows = np.repeat(np.flatnonzero(half), 6)
    nearest.push(rows, earlier[half].ravel(), np.tile(np.arange(6), half.sum()))
    block = rng.integers(0, 12, (n_lists, width) if axis == 1 else (width, n_lists)).astype(np.float32)
    given = block if backend == "numpy" else __import__("torch").from_numpy(block)
    _push(nearest, 0, given, k, axis, 6)  # neighbour indices 6..
    got_dist, got_index = _unkey(nearest.key)
    lines = block if axis == 1 else block.T
    for li in range(n_lists):
        pairs = [(float(d), 6 + j) for j, d in enumerate(lines[li])]
        if half[li]:
            pairs += [(float(d), j) for j, d in enumerate(earlier[li])]
        want = sorted(pairs)[:k]
        assert list(zip(got_dist[li].tolist(), got_index[li].tolist())) == want


def test_keys_order_as_distance_then_index():
    from reface_utils.method.rerank.neighbours import _keys, _unkey

    dist = np.array([-2.5, -0.0, 0.0, 1e-30, 3.0, -1e-30, 0.0, np.inf], np.float32)
    index = np.array([4, 9, 2, 1, 0, 7, 5, 3])
    keys = _keys(dist, index)
    order = np.argsort(keys)
    assert [(float(dist[i]) + 0.0, int(index[i])) for i in order] == sorted(zip((dist + 0.0).tolist(), index.tolist()))
    back_dist, back_index = _unkey(keys)
    np.testing.assert_array_equal(back_dist, dist + np.float32(0))
    np.testing.assert_array_equal(back_index, index)


def test_pair_distances_follow_each_variant():
    # the dot-product fallback (expansion members beyond a row's stored neighbours) gives
    # the block's distances: plain, enriched, enriched with the own copy left out
    from reface_utils.method.rerank.products import _Products, _QueryGallery
    from reface_utils.method.retrieval import plan_retrieval

    query, gallery, enriched = _sets(seed=4, n_q=12, n_g=25)
    plan = plan_retrieval(query, gallery, rerank_configs(0.75, exclude_self=True), enriched=enriched,
                          device="numpy")
    source = _QueryGallery(_Products("numpy", {"q": query.reid, "g": gallery.reid, "e": plan.e_reid}),
                           (None, False, True), plan)
    n_q, n = len(query), len(query) + len(gallery)
    i, j = np.divmod(np.arange(n * n), n)
    qq, gg = reid_distance(query.reid, query.reid), reid_distance(gallery.reid, gallery.reid)
    samples = enriched_distance(query.reid, enriched.reid, enriched.gallery_index)
    for variant, block in source.blocks(0, n_q):
        full = np.block([[qq, block], [block.T, gg]])
        np.testing.assert_allclose(source.pairs(i, j, variant), full.ravel(), atol=1e-6)
        if variant is not None:
            want = apply_enrichment(reid_distance(query.reid, gallery.reid), samples, enriched.gallery_index,
                                    query_indices=np.arange(n_q), enriched_query_indices=enriched.source_query,
                                    exclude_self=variant)
            np.testing.assert_array_equal(block, want)


def test_the_pipelines_rerank_parameter_adds_the_rows_on_the_demo():
    """rerank=True: the re-ranked configs in every mode beside the others (the demo's numbers
    are in docs/METHOD.md); rerank=False (the default) adds nothing."""
    from reface_utils.apps import pipeline
    from reface_utils.data.datasets import load_dataset

    settings = pipeline.settings_for(dataset="demo", rerank=True, rerank_k1=20, rerank_k2=6, rerank_lambda=0.3)
    dataset = load_dataset("demo")
    features = pipeline.compute_features(dataset, settings, progress=False)
    enrichment = pipeline.run_enrichment(dataset, features, settings)
    table = pipeline.evaluate(dataset, features, enrichment, settings, progress=False).table
    for config in ("reid+rerank", "fused+enriched+rerank"):
        assert set(table.loc[table["config"] == config, "mode"]) == {"standard", "CC", "SC"}, config
    cc = table[table["mode"] == "CC"].set_index("config")
    assert cc.loc["reid+rerank", "top1"] > cc.loc["reid", "top1"]  # the demo's measured effect
    plain = pipeline.evaluate(dataset, features, enrichment, pipeline.settings_for(dataset="demo"), progress=False)
    assert not plain.table["config"].str.contains("rerank").any()
    with pytest.raises(ValueError, match="rerank_lambda must lie in"):
        pipeline.settings_for(dataset="demo", rerank_lambda=1.5)
