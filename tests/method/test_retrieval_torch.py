"""The torch block step (the GPU code path) against the numpy one, run on CPU torch; the
plan / score_block / merge_blocks split that lets blocks run elsewhere; device choice.

Features on a coarse grid (multiples of 1/8, few dimensions) make every product exact in
float32 whatever the summation order, so numpy and torch must give the same distances,
and many of them tie: the ranks, CMC and top-k must then be equal, ties included."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from reface_utils.method.fusion import EnrichmentLayout, fuse, fuse_into
from reface_utils.method.retrieval import (
    EnrichedGallery,
    FeatureSet,
    PhaseClock,
    RetrievalConfig,
    default_configs,
    merge_blocks,
    plan_retrieval,
    query_blocks,
    resolve_device,
    run_retrieval,
    score_block,
)

MODES = ("standard", "CC", "SC")
CONFIGS = default_configs(0.75) + [
    RetrievalConfig("reid+min", 1.0, "min"),
    RetrievalConfig("reid+min own left out", 1.0, "min", exclude_self=True),
    RetrievalConfig("face+min", 0.0, "min"),
    RetrievalConfig("fused+append", 0.75, "append"),
    RetrievalConfig("face+append own left out", 0.0, "append", exclude_self=True),
    RetrievalConfig("fused 0.5+append, no CC camera rule", 0.5, "append", cc_skip_enriched_only=False),
]


def _make(rng, grid: bool):
    n_q, n_g, dim, fdim, n_pid = 70, 230, 12, 6, 12
    q_pid, g_pid = rng.integers(0, n_pid, n_q), rng.integers(0, n_pid, n_g)
    q_cam, g_cam = rng.integers(0, 4, n_q), rng.integers(0, 4, n_g)
    q_clo, g_clo = rng.integers(0, 2, n_q), rng.integers(0, 2, n_g)
    ident, clothes, faces = rng.standard_normal((n_pid, dim)), rng.standard_normal((n_pid, 2, dim)), \
        rng.standard_normal((n_pid, fdim))

    def feats(base, noise):
        x = base + noise * rng.standard_normal(base.shape)
        if grid:  # multiples of 1/8 in [-1, 1]: exact products in float32
            return (np.clip(np.round(x * 2), -8, 8) / 8).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    q_has, g_has = rng.random(n_q) < 0.6, rng.random(n_g) < 0.5
    query = FeatureSet(feats(ident[q_pid] + clothes[q_pid, q_clo], 1.0), q_pid, q_cam, q_clo,
                       feats(faces[q_pid], 0.7) * q_has[:, None], q_has)
    gallery = FeatureSet(feats(ident[g_pid] + clothes[g_pid, g_clo], 1.0), g_pid, g_cam, g_clo,
                         feats(faces[g_pid], 0.7) * g_has[:, None], g_has)
    with_face = np.flatnonzero(q_has)
    table = pd.DataFrame({"query_index": with_face, "gallery_index": rng.integers(0, n_g, len(with_face))})
    return query, gallery, EnrichedGallery.from_table(table, query, gallery)


@pytest.mark.parametrize("grid", [True, False])
def test_torch_cpu_equals_numpy(grid):
    query, gallery, enriched = _make(np.random.default_rng(11 + grid), grid)
    kw = dict(modes=MODES, enriched=enriched, topk=7, progress=False)
    ref = run_retrieval(query, gallery, CONFIGS, device="numpy", block_size=16, **kw)
    got = run_retrieval(query, gallery, CONFIGS, device="torch-cpu", block_size=25, **kw)
    if grid:  # plenty of exact ties: they must be broken the same way
        reid = query.reid @ gallery.reid.T
        assert np.mean([len(np.unique(r)) < len(r) for r in reid]) > 0.9
    for key, want in ref.results.items():
        have = got.results[key]
        assert have.num_evaluated == want.num_evaluated and have.num_skipped == want.num_skipped, key
        np.testing.assert_array_equal(have.first_good_rank, want.first_good_rank, err_msg=str(key))
        np.testing.assert_array_equal(have.cmc, want.cmc, err_msg=str(key))
        assert abs(have.mAP - want.mAP) < 1e-6, key
        if grid:
            assert have.mAP == want.mAP, key
    for name in ref.topk:
        np.testing.assert_array_equal(got.topk[name], ref.topk[name], err_msg=name)


def test_torch_rejects_nan():
    query, gallery, enriched = _make(np.random.default_rng(3), True)
    query.reid[5, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        run_retrieval(query, gallery, [RetrievalConfig("reid")], device="torch-cpu", progress=False)


@pytest.mark.parametrize("device", ["numpy", "torch-cpu"])
def test_blocks_scored_apart_merge_to_the_same_bits(device):
    """The contract for running blocks elsewhere (threads, processes, Ray): plan and blocks
    survive pickling, blocks can be scored in any order, the merge equals one run."""
    query, gallery, enriched = _make(np.random.default_rng(5), False)
    kw = dict(modes=MODES, enriched=enriched, topk=3)
    whole = run_retrieval(query, gallery, CONFIGS, device=device, progress=False, **kw)
    plan = pickle.loads(pickle.dumps(plan_retrieval(query, gallery, CONFIGS, device=device, **kw)))
    blocks = list(query_blocks(plan, query, block_size=9))
    order = np.random.default_rng(0).permutation(len(blocks))
    scored = [pickle.loads(pickle.dumps(score_block(plan, pickle.loads(pickle.dumps(blocks[i]))))) for i in order]
    merged = merge_blocks(plan, scored)
    pd.testing.assert_frame_equal(merged.table, whole.table)
    for key, want in whole.results.items():
        np.testing.assert_array_equal(merged.results[key].cmc, want.cmc)
        assert merged.results[key].mAP == want.mAP
    for name in whole.topk:
        np.testing.assert_array_equal(merged.topk[name], whole.topk[name])
    with pytest.raises(ValueError, match="never scored"):
        merge_blocks(plan, scored[1:])
    with pytest.raises(ValueError, match="twice"):
        merge_blocks(plan, scored + scored[:1])


def test_device_choice():
    has_cuda = torch.cuda.is_available()
    assert resolve_device("auto") == ("cuda" if has_cuda else "numpy")
    assert resolve_device("cpu") == "numpy" and resolve_device("torch-cpu") == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not has_cuda:
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_numpy_on_exact_products():
    query, gallery, enriched = _make(np.random.default_rng(12), True)
    kw = dict(modes=MODES, enriched=enriched, topk=7, progress=False)
    ref = run_retrieval(query, gallery, CONFIGS, device="numpy", **kw)
    got = run_retrieval(query, gallery, CONFIGS, device="cuda", **kw)
    for key, want in ref.results.items():
        np.testing.assert_array_equal(got.results[key].first_good_rank, want.first_good_rank)
        assert abs(got.results[key].mAP - want.mAP) < 1e-6
    for name in ref.topk:
        np.testing.assert_array_equal(got.topk[name], ref.topk[name])


def test_every_image_its_own_camera():
    """LaST: no query shares a camera with the gallery, so the face camera rule marks
    nothing; both paths must handle a block without any same-camera pair."""
    query, gallery, enriched = _make(np.random.default_rng(9), True)
    query.camids = np.arange(len(query))
    gallery.camids = len(query) + np.arange(len(gallery))
    kw = dict(modes=MODES, enriched=enriched, topk=3, progress=False)
    ref = run_retrieval(query, gallery, CONFIGS, device="numpy", **kw)
    got = run_retrieval(query, gallery, CONFIGS, device="torch-cpu", **kw)
    assert ref.results[("fused", "standard")].num_evaluated > 0
    for key, want in ref.results.items():
        np.testing.assert_array_equal(got.results[key].first_good_rank, want.first_good_rank, err_msg=str(key))
        assert got.results[key].mAP == want.mAP, key


def test_one_definition_of_fusion_and_enrichment_gives_numpy_bits_on_torch():
    """fusion.fuse_into and EnrichmentLayout.lowest are what both backends run: on torch
    tensors they give numpy's bits (infinities and -0.0 included)."""
    rng = np.random.default_rng(4)
    reid = rng.uniform(-1, 1, (37, 53)).astype(np.float32)
    face = rng.uniform(0, 2, (37, 53)).astype(np.float32)
    face[rng.random(face.shape) < 0.1] = np.inf
    reid[0, :5] = -0.0
    for alpha in (0.75, 0.5, 0.3, 0.9):
        want = fuse(reid, face, alpha)
        got = fuse_into(torch.from_numpy(reid), torch.from_numpy(face), alpha, torch.empty(reid.shape), xp=torch)
        np.testing.assert_array_equal(got.numpy().view(np.uint32), want.view(np.uint32), err_msg=str(alpha))
    layout = EnrichmentLayout.of(rng.integers(0, 11, 53))
    samples = reid[:, layout.order]
    want = layout.lowest(samples)
    got = layout.lowest(torch.from_numpy(samples), out=torch.empty(want.shape), xp=torch)
    np.testing.assert_array_equal(got.numpy().view(np.uint32), want.view(np.uint32))


def test_torch_backend_step_and_phase_timings():
    """The shared block step on the torch backend gives what score_block gives for a torch
    plan; both backends time the same phases with the one PhaseClock."""
    from reface_utils.method.retrieval.blockstep import score_block_on
    from reface_utils.method.retrieval.contract import Workspace
    from reface_utils.method.retrieval.torch_backend import TorchBackend

    def score_block_torch(plan, block):
        return score_block_on(TorchBackend(plan, Workspace()), plan, block, None)

    query, gallery, enriched = _make(np.random.default_rng(6), True)
    plan = plan_retrieval(query, gallery, CONFIGS, modes=MODES, enriched=enriched, topk=4, device="torch-cpu")
    blocks = list(query_blocks(plan, query, block_size=32))
    old = merge_blocks(plan, [score_block_torch(plan, b) for b in blocks])
    new = merge_blocks(plan, [score_block(plan, b) for b in blocks])
    pd.testing.assert_frame_equal(old.table, new.table)
    phases = {}
    for device in ("numpy", "torch-cpu"):
        phases[device] = {}
        run_retrieval(query, gallery, CONFIGS, modes=MODES, enriched=enriched, topk=4, device=device,
                      progress=False, timings=phases[device])
    assert set(phases["numpy"]) == set(phases["torch-cpu"]) == {
        "reid gallery product", "reid enriched product", "face", "fusion and enrichment", "metrics", "top-k"}
    ticks = []
    clock = PhaseClock({}, synchronize=lambda: ticks.append(1))
    with clock("a"):
        pass
    assert len(ticks) == 2 and set(clock.sink) == {"a"}
    with PhaseClock(None, synchronize=lambda: ticks.append(1))("b"):  # not timing: no synchronisation
        pass
    assert len(ticks) == 2
