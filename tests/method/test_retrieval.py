"""retrieval.run_retrieval: block-wise == full-matrix, and == a reference-style pipeline
built the way GEFF's inference.py builds it (full matrices, loops)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reface_utils.method.fusion import (
    PRODUCT_TILE,
    EnrichmentLayout,
    apply_enrichment,
    enriched_distance,
    face_distance,
    fuse,
    reid_distance,
)
from reface_utils.method.metrics import evaluate
from reface_utils.method.retrieval import (
    EnrichedGallery,
    FeatureSet,
    RetrievalConfig,
    Workspace,
    default_configs,
    run_retrieval,
    top_k,
)

MODES = ("standard", "CC", "SC")


def _normalise(x):
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    norm[norm == 0] = 1
    return (x / norm).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    """A small clothes-changing set: identity + clothes drive ReID, identity drives faces."""
    rng = np.random.default_rng(7)
    n_q, n_g, dim, fdim, n_pid = 90, 260, 48, 16, 15
    q_pid, g_pid = rng.integers(0, n_pid, n_q), rng.integers(0, n_pid, n_g)
    q_cam, g_cam = rng.integers(0, 4, n_q), rng.integers(0, 4, n_g)
    q_clo, g_clo = rng.integers(0, 2, n_q), rng.integers(0, 2, n_g)
    ident, clothes = rng.standard_normal((n_pid, dim)), rng.standard_normal((n_pid, 2, dim))
    q_reid = _normalise(ident[q_pid] + clothes[q_pid, q_clo] + rng.standard_normal((n_q, dim)))
    g_reid = _normalise(ident[g_pid] + clothes[g_pid, g_clo] + rng.standard_normal((n_g, dim)))
    faces = rng.standard_normal((n_pid, fdim))
    q_has, g_has = rng.random(n_q) < 0.6, rng.random(n_g) < 0.5
    q_face = _normalise(faces[q_pid] + 0.7 * rng.standard_normal((n_q, fdim))) * q_has[:, None]
    g_face = _normalise(faces[g_pid] + 0.7 * rng.standard_normal((n_g, fdim))) * g_has[:, None]
    query = FeatureSet(q_reid, q_pid, q_cam, q_clo, q_face, q_has)
    gallery = FeatureSet(g_reid, g_pid, g_cam, g_clo, g_face, g_has)
    # enrichment as enrich.py does it: best face match in another camera
    sims = q_face @ g_face.T
    sims[q_cam[:, None] == g_cam[None, :]] = -np.inf
    sims[:, ~g_has] = -np.inf
    with_face = np.flatnonzero(q_has)
    best = np.argmax(sims[with_face], axis=1)
    table = pd.DataFrame({"query_index": with_face, "gallery_index": best, "pid": g_pid[best]})
    return query, gallery, table


CONFIGS = default_configs(0.75) + [
    RetrievalConfig("reid+min", 1.0, "min"),
    RetrievalConfig("reid+min own left out", 1.0, "min", exclude_self=True),
    RetrievalConfig("face+min", 0.0, "min"),
    RetrievalConfig("fused+append", 0.75, "append"),
    RetrievalConfig("face+append", 0.0, "append"),
    RetrievalConfig("fused+append, no CC camera rule", 0.75, "append", cc_skip_enriched_only=False),
]


def _full_distances(config, query, gallery, enriched):
    """The full-matrix computation with the same fusion functions."""
    reid = reid_distance(query.reid, gallery.reid)
    face = face_distance(query.face, gallery.face, query.has_face, gallery.has_face, query.camids, gallery.camids)
    enriched_reid = enriched_distance(query.reid, enriched.reid, enriched.gallery_index)
    labels = (gallery.pids, gallery.camids, gallery.clothes_ids)
    if config.enrichment == "append":
        enriched_face = face_distance(query.face, enriched.face, query.has_face, enriched.has_face)
        dist = fuse(np.hstack([reid, enriched_reid]), np.hstack([face, enriched_face]), config.alpha)
        n = len(enriched)
        labels = (np.concatenate([gallery.pids, enriched.pids]), np.concatenate([gallery.camids, -np.ones(n, int)]),
                  np.concatenate([gallery.clothes_ids, np.full(n, -1)]))
        return dist, labels
    if config.enrichment == "min":
        reid = apply_enrichment(reid, enriched_reid, enriched.gallery_index, query_indices=np.arange(len(query)),
                                enriched_query_indices=enriched.source_query, exclude_self=config.exclude_self)
    return fuse(reid, face, config.alpha), labels


@pytest.mark.parametrize("block_size", [1, 13, 500])
def test_blockwise_equals_full_matrix(data, block_size):
    query, gallery, table = data
    enriched = EnrichedGallery.from_table(table, query, gallery)
    res = run_retrieval(query, gallery, CONFIGS, modes=MODES, enriched=enriched, block_size=block_size,
                        topk=5, threads=2, progress=False)
    assert len(res.table) == len(CONFIGS) * len(MODES)
    for config in CONFIGS:
        dist, (g_pids, g_cams, g_clothes) = _full_distances(config, query, gallery, enriched)
        for mode in MODES:
            full = evaluate(dist, query.pids, g_pids, query.camids, g_cams, query.clothes_ids, g_clothes, mode=mode,
                            cc_skip_enriched_only=config.cc_skip_enriched_only)
            got = res.results[(config.name, mode)]
            np.testing.assert_array_equal(got.cmc, full.cmc)
            assert got.mAP == full.mAP and got.num_evaluated == full.num_evaluated
        np.testing.assert_array_equal(res.topk[config.name], np.argsort(dist, axis=1, kind="stable")[:, :5])


@pytest.fixture(scope="module")
def wide_data():
    """Real feature widths (4096-d ReID, 512-d faces) and more queries than one product
    tile: OpenBLAS rounds such products by the shape of the call, so this is where a
    blocking that changed the calls would change bits (the 48-d set above cannot show it)."""
    rng = np.random.default_rng(11)
    n_q, n_g, n_pid = PRODUCT_TILE + 237, 700, 40
    q_pid, g_pid = rng.integers(0, n_pid, n_q), rng.integers(0, n_pid, n_g)
    q_cam, g_cam = rng.integers(0, 6, n_q), rng.integers(0, 6, n_g)
    q_clo, g_clo = rng.integers(0, 3, n_q), rng.integers(0, 3, n_g)
    latent = rng.standard_normal((64, 4096)).astype(np.float32)
    ident, outfit = rng.standard_normal((n_pid, 64)), rng.standard_normal((n_pid, 3, 64))
    q_reid = _normalise((ident[q_pid] + outfit[q_pid, q_clo] + 1.5 * rng.standard_normal((n_q, 64))) @ latent)
    g_reid = _normalise((ident[g_pid] + outfit[g_pid, g_clo] + 1.5 * rng.standard_normal((n_g, 64))) @ latent)
    faces = rng.standard_normal((n_pid, 512))
    q_has, g_has = rng.random(n_q) < 0.45, rng.random(n_g) < 0.45
    q_face = _normalise(faces[q_pid] + 1.5 * rng.standard_normal((n_q, 512))) * q_has[:, None]
    g_face = _normalise(faces[g_pid] + 1.5 * rng.standard_normal((n_g, 512))) * g_has[:, None]
    query = FeatureSet(q_reid, q_pid, q_cam, q_clo, q_face, q_has)
    gallery = FeatureSet(g_reid, g_pid, g_cam, g_clo, g_face, g_has)
    enriched_q = np.flatnonzero(q_has)[::2]
    table = pd.DataFrame({"query_index": enriched_q, "gallery_index": rng.integers(0, n_g, len(enriched_q))})
    return query, gallery, table


def test_products_do_not_depend_on_the_blocking(wide_data):
    """OpenBLAS rounds a 4096-d float32 product by the shape of its call; products formed
    PRODUCT_TILE query rows at a time make any block that starts at a multiple of the tile
    give the full-matrix call's bits (on the 2-core CI machine, one 749-row call and calls
    of 512 + 237 rows differ in the last bit of some entries, so this fails without tiles)."""
    query, gallery, table = wide_data
    reid = reid_distance(query.reid, gallery.reid)
    face = face_distance(query.face, gallery.face, query.has_face, gallery.has_face, query.camids, gallery.camids)
    enriched = EnrichedGallery.from_table(table, query, gallery)
    to_samples = enriched_distance(query.reid, enriched.reid, enriched.gallery_index)
    for start, stop in [(0, PRODUCT_TILE), (PRODUCT_TILE, len(query)), (0, len(query))]:
        rows = slice(start, stop)
        np.testing.assert_array_equal(reid[rows], reid_distance(query.reid[rows], gallery.reid))
        np.testing.assert_array_equal(face[rows], face_distance(query.face[rows], gallery.face, query.has_face[rows],
                                                                gallery.has_face, query.camids[rows], gallery.camids))
        np.testing.assert_array_equal(to_samples[rows],
                                      enriched_distance(query.reid[rows], enriched.reid, enriched.gallery_index))


@pytest.mark.parametrize("block_size", [None, PRODUCT_TILE])
def test_blockwise_equals_full_matrix_bit_for_bit_at_real_widths(wide_data, block_size):
    """Issue 15's acceptance: the block-wise stage gives the full-matrix computation's
    numbers bit for bit on CPU numpy, with the default blocks and with one tile a block."""
    query, gallery, table = wide_data
    enriched = EnrichedGallery.from_table(table, query, gallery)
    configs = default_configs(0.75)
    res = run_retrieval(query, gallery, configs, modes=MODES, enriched=enriched, block_size=block_size,
                        topk=10, progress=False, device="numpy")
    for config in configs:
        dist, (g_pids, g_cams, g_clothes) = _full_distances(config, query, gallery, enriched)
        for mode in MODES:
            full = evaluate(dist, query.pids, g_pids, query.camids, g_cams, query.clothes_ids, g_clothes, mode=mode)
            got = res.results[(config.name, mode)]
            np.testing.assert_array_equal(got.first_good_rank, full.first_good_rank)
            assert got.mAP == full.mAP, (config.name, mode, got.mAP - full.mAP)
        np.testing.assert_array_equal(res.topk[config.name], np.argsort(dist, axis=1, kind="stable")[:, :10])


def test_matches_reference_style_pipeline(data):
    """GEFF inference.py, written as it does it: float32 -cos, the enriched min applied with
    loops, the face similarity matrix initialised to -1 and filled per query (float64),
    fused in float64 and evaluated (the evaluation itself is checked in test_metrics)."""
    query, gallery, table = data
    alpha = 0.75
    reid = -(query.reid @ gallery.reid.T)
    enriched_reid = -(query.reid @ query.reid[table.query_index].T)
    for q in range(len(query)):
        for e, g in enumerate(table.gallery_index):
            if enriched_reid[q, e] < reid[q, g]:
                reid[q, g] = enriched_reid[q, e]
    sims = -np.ones((len(query), len(gallery)))
    for q in range(len(query)):
        if not query.has_face[q]:
            continue
        row = gallery.face @ query.face[q]  # gallery without face: zero vector -> 0
        row[gallery.camids == query.camids[q]] = -np.inf
        sims[q] = row
    ref_dist = alpha * reid + (1 - alpha) * (1 - sims)
    enriched = EnrichedGallery.from_table(table, query, gallery)
    res = run_retrieval(query, gallery, [RetrievalConfig("geff", alpha, "min")], modes=MODES, enriched=enriched,
                        progress=False)
    for mode in MODES:
        ref = evaluate(ref_dist, query.pids, gallery.pids, query.camids, gallery.camids,
                       query.clothes_ids, gallery.clothes_ids, mode=mode)
        got = res.results[("geff", mode)]
        assert got.num_evaluated == ref.num_evaluated
        np.testing.assert_allclose(got.cmc, ref.cmc, atol=1e-9)
        assert abs(got.mAP - ref.mAP) < 1e-9


def test_append_exclude_self_removes_the_own_copy(data):
    query, gallery, table = data
    enriched = EnrichedGallery.from_table(table, query, gallery)
    config = RetrievalConfig("append, own copy out", 0.75, "append", exclude_self=True)
    got = run_retrieval(query, gallery, [config], enriched=enriched, block_size=32, progress=False).results[
        (config.name, "standard")]
    dist, (g_pids, g_cams, _) = _full_distances(config, query, gallery, enriched)
    aps, firsts = [], []
    for q in range(len(query)):
        keep = np.ones(dist.shape[1], bool)
        keep[len(gallery) + np.flatnonzero(enriched.source_query == q)] = False
        r = evaluate(dist[q:q + 1, keep], query.pids[q:q + 1], g_pids[keep], query.camids[q:q + 1], g_cams[keep])
        aps += [r.mAP] if r.num_evaluated else []
        firsts.append(r.first_good_rank[0])
    assert got.num_evaluated == len(aps)
    assert got.mAP == pytest.approx(np.mean(aps), abs=1e-12)
    np.testing.assert_array_equal(got.first_good_rank, firsts)


def test_own_copy_is_what_makes_enriched_queries_rank_first(data):
    """With min-enrichment and alpha = 1, an enriched query's own copy sits at distance -1
    on its face match; leaving it out must change those queries' first rank only."""
    query, gallery, table = data
    enriched = EnrichedGallery.from_table(table, query, gallery)
    configs = [RetrievalConfig("with", 1.0, "min"), RetrievalConfig("without", 1.0, "min", exclude_self=True)]
    res = run_retrieval(query, gallery, configs, enriched=enriched, topk=1, progress=False)
    top_with = res.topk["with"][:, 0]
    enriched_queries = table.query_index.to_numpy()
    np.testing.assert_array_equal(top_with[enriched_queries], table.gallery_index.to_numpy())
    assert res.results[("with", "standard")].mAP != res.results[("without", "standard")].mAP


def test_from_table_offsets_for_two_query_sets(data):
    query, gallery, table = data
    # evaluate the second half of the queries: samples made from the first half map to -1
    enriched = EnrichedGallery.from_table(table, query, gallery, query_offset=45, num_queries=45)
    # samples come in retrieval's layout order (by gallery image); table_row maps them back
    assert sorted(enriched.table_row) == list(range(len(table)))
    rows = table.iloc[enriched.table_row]
    q_idx = rows.query_index.to_numpy()
    np.testing.assert_array_equal(enriched.source_query, np.where(q_idx >= 45, q_idx - 45, -1))
    np.testing.assert_array_equal(enriched.reid, query.reid[q_idx])
    np.testing.assert_array_equal(enriched.pids, rows.pid.to_numpy())
    np.testing.assert_array_equal(enriched.gallery_index, rows.gallery_index.to_numpy())
    np.testing.assert_array_equal(EnrichmentLayout.of(enriched.gallery_index).order, np.arange(len(table)))


def test_appended_columns_map_back_to_table_rows(data):
    """from_table reorders the samples (retrieval's layout); an "append" config ranks a
    query's own copy first (ReID -1, face 0), and columns_by_table_row turns that column
    into the enrichment-table row of the query's own sample."""
    query, gallery, table = data
    enriched = EnrichedGallery.from_table(table, query, gallery)
    assert not np.array_equal(enriched.table_row, np.arange(len(table)))  # the test needs a reordering
    res = run_retrieval(query, gallery, [RetrievalConfig("fused+append", 0.75, "append")], enriched=enriched,
                        topk=3, progress=False, device="numpy")
    top = enriched.columns_by_table_row(res.topk["fused+append"], len(gallery))
    first = top[table.query_index.to_numpy(), 0]
    np.testing.assert_array_equal(first, len(gallery) + np.arange(len(table)))
    untouched = top < len(gallery)
    np.testing.assert_array_equal(top[untouched], res.topk["fused+append"][untouched])


def test_clear_errors(data):
    query, gallery, table = data
    no_face = FeatureSet(query.reid, query.pids, query.camids)
    with pytest.raises(ValueError, match="face embeddings"):
        run_retrieval(no_face, gallery, [RetrievalConfig("fused", 0.5)], progress=False)
    with pytest.raises(ValueError, match="clothes ids"):
        run_retrieval(no_face, gallery, [RetrievalConfig("reid")], modes=("CC",), progress=False)
    with pytest.raises(ValueError, match="enriched="):
        run_retrieval(query, gallery, [RetrievalConfig("e", 1.0, "min")], progress=False)
    with pytest.raises(ValueError, match="exclude_self"):
        RetrievalConfig("x", 1.0, exclude_self=True)
    with pytest.raises(ValueError, match="pids has 3 entries for 90 images"):
        FeatureSet(query.reid, query.pids[:3], query.camids)
    enriched = EnrichedGallery.from_table(table, query, gallery)
    with pytest.raises(TypeError, match="workspace must be a retrieval.Workspace"):
        run_retrieval(query, gallery, [RetrievalConfig("reid")], workspace={}, progress=False)
    with pytest.raises(ValueError, match="table_row has 2 entries"):
        EnrichedGallery(enriched.gallery_index, enriched.reid, enriched.pids, enriched.source_query,
                        table_row=np.arange(2))
    with pytest.raises(ValueError, match="enriched_to_gallery has 3 entries for"):
        enriched_distance(query.reid, enriched.reid, enriched.gallery_index[:3])
    with pytest.raises(ValueError, match="has_face has 5 entries for 260 face embeddings"):
        face_distance(query.face, gallery.face, query.has_face, gallery.has_face[:5])


def test_workspace_reused_between_calls_gives_the_same_numbers(data):
    """One Workspace across calls with different configs and widths (append adds columns)."""
    query, gallery, table = data
    enriched = EnrichedGallery.from_table(table, query, gallery)
    workspace = Workspace()
    for configs in (CONFIGS, CONFIGS[::-1], CONFIGS[:2]):
        fresh = run_retrieval(query, gallery, configs, modes=MODES, enriched=enriched, topk=5, progress=False,
                              device="numpy")
        reused = run_retrieval(query, gallery, configs, modes=MODES, enriched=enriched, topk=5, progress=False,
                               device="numpy", workspace=workspace)
        pd.testing.assert_frame_equal(fresh.table, reused.table)
        for name in fresh.topk:
            np.testing.assert_array_equal(fresh.topk[name], reused.topk[name])


def test_top_k_with_ties_and_wide_rows():
    rng = np.random.default_rng(2)
    dist = np.round(rng.standard_normal((6, 5000)), 1).astype(np.float32)
    dist[0] = 2.0  # a whole row tied
    dist[1, ::7] = -np.inf
    for k in (1, 10, 20):
        np.testing.assert_array_equal(top_k(dist, k), np.argsort(dist, axis=1, kind="stable")[:, :k])


def test_public_names_and_numpy_runs_without_torch():
    """The package re-exports what the single module did, and the numpy path never imports
    torch (the torch backend is imported only for a torch device)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import numpy as np\n"
            "from reface_utils.method.retrieval import (BlockScores, QueryBlock, RetrievalPlan, Workspace, "
            "merge_blocks, plan_retrieval, query_blocks, resolve_device, score_block, FeatureSet, EnrichedGallery, "
            "RetrievalConfig, RetrievalResult, default_configs, run_retrieval, top_k, DEVICES, ENRICHMENT_KINDS)\n"
            "x = np.eye(4, dtype=np.float32)\n"
            "fs = FeatureSet(x, np.arange(4), np.zeros(4))\n"
            "run_retrieval(fs, FeatureSet(x, np.arange(4), np.ones(4)), [RetrievalConfig('reid')], device='numpy',"
            " progress=False)\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_plan_options_are_plan_retrievals_keywords():
    """run_retrieval and rerank_retrieval forward **options to plan_retrieval: the TypedDicts
    that type them must name exactly its keyword-only parameters (defaults live there)."""
    import inspect
    import typing

    from reface_utils.method.rerank import rerank_retrieval
    from reface_utils.method.retrieval import PlanOptions, PlanOptionsWithDevice, plan_retrieval, run_retrieval

    params = inspect.signature(plan_retrieval).parameters
    keywords = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    assert set(typing.get_type_hints(PlanOptionsWithDevice)) == keywords
    assert set(typing.get_type_hints(PlanOptions)) == keywords - {"device"}
    # the entry points take none of them by name: nothing to drift apart
    for entry in (run_retrieval, rerank_retrieval):
        own = set(inspect.signature(entry).parameters)
        assert not own & (keywords - {"device"}), (entry.__name__, own & keywords)
