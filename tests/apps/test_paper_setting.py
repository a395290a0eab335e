"""The paper's setting by default, every published number labelled, and the extra protocols
(PRCC single-shot, VC-Clothes cameras 3 and 4) on hand-computed cases."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reface_utils.apps import paper, pipeline
from reface_utils.method.metrics import evaluate as evaluate_metrics
from reface_utils.method.protocols import single_shot_galleries, subset_enrichment, take_rows
from reface_utils.method.retrieval import FeatureSet, RetrievalConfig, run_retrieval

REAL = ("prcc", "ltcc", "last", "ccvid", "vcclothes", "street42")


@pytest.mark.parametrize("dataset", REAL)
def test_real_datasets_default_to_the_papers_face_model(dataset):
    s = pipeline.settings_for(dataset=dataset, data_root="/data/x")
    assert s.face_model == "insightface" and s.reid_model == "cal" and s.amp is False
    assert (s.enrich_det_threshold, s.det_threshold, s.sim_threshold) == (0.8, 0.7, 0.5)  # the reference's


def test_the_demo_keeps_the_offline_models():
    s = pipeline.settings_for(dataset="demo")
    assert (s.face_model, s.reid_model) == ("sface", "mobilenetv2-imagenet")
    assert s.paper_setting and "not the paper's setting" in paper.setting_summary(s)["statement"]


def test_paper_setting_names_every_difference():
    assert pipeline.settings_for(dataset="prcc").paper_setting == []
    s = pipeline.settings_for(dataset="prcc", face_model="sface", reid_checkpoint="cal_ltcc", amp=True)
    assert s.paper_setting == ["face model sface (paper: insightface buffalo_l)",
                               "ReID checkpoint cal_ltcc (paper: cal_prcc)", "ReID in fp16 autocast (paper: fp32)"]
    summary = paper.setting_summary(s)
    assert summary["is_paper_setting"] is False and summary["reid_checkpoint"] == "cal_ltcc"


def test_buffalo_l_offline_fails_fast_and_says_how_to_choose_the_offline_model(tmp_path, monkeypatch):
    monkeypatch.setenv("REFACE_HOME", str(tmp_path))  # an empty home: nothing downloaded
    s = pipeline.settings_for(dataset="demo", face_model="buffalo_l")
    requirements = pipeline.check_requirements(s, download=False)
    face = requirements[requirements["what"] == "face model"].iloc[0]
    assert face["status"] == "missing" and "face_model='sface'" in face["detail"]
    with pytest.raises(pipeline.MissingRequirementsError, match="face model buffalo_l"):
        pipeline.require(requirements)


def test_no_published_cal_checkpoint_is_a_missing_requirement_not_random_weights():
    s = pipeline.settings_for(dataset="vcclothes", data_root="/nowhere", face_model="sface")
    row = pipeline.check_requirements(s, download=False).iloc[0]
    assert (row["what"], row["status"]) == ("reid weights", "missing")
    assert "no CAL checkpoint is published for 'vcclothes'" in row["detail"]


def test_every_published_number_is_listed_with_its_commit():
    ltcc = paper.PAPER_RESULTS[paper.PAPER_RESULTS["dataset"] == "ltcc"]
    assert list(zip(ltcc["commit"], ltcc["top1"], ltcc["mAP"])) == [
        ("43cc526", 74.8, 48.4), ("ea46015", 76.3, 42.3), ("8b5b32e", 45.7, 20.3), ("09be7de", 76.3, 42.3),
        ("90717cc", 76.3, 42.3)]
    extra = paper.PAPER_RESULTS[(paper.PAPER_RESULTS["dataset"] == "street42")
                                & (paper.PAPER_RESULTS["variant"] == "with extra data")]
    assert list(extra["top1"]) == [80.7, 92.2]
    assert set(paper.PAPER_RESULTS["date"]) == set(paper.README_VERSIONS["date"])


def test_ltcc_comparison_shows_our_general_and_cc_rows():
    table = pd.DataFrame({"query_set": ["query"] * 3, "config": ["fused"] * 3, "mode": ["standard", "CC", "SC"],
                          "top1": [0.8, 0.5, 0.9], "mAP": [0.4, 0.2, 0.5]})
    out = paper.paper_table("ltcc", table)
    ours = out[out["source"].str.startswith("ours")]
    assert list(ours["mode"]) == ["CC", "standard"] and list(ours["top1"]) == [0.5, 0.8]
    assert (out["source"].str.startswith("paper")).sum() == 5


# ------------------------------------------------------------------ protocols, by hand
def test_single_shot_draws_one_image_per_identity_from_a_fixed_seed():
    pids = np.array([3, 3, 5, 7, 7, 7])
    draws = single_shot_galleries(pids, draws=10, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(draws, single_shot_galleries(pids, draws=10, seed=0)))
    for g in draws:
        assert sorted(pids[g]) == [3, 5, 7]
    assert len({tuple(g) for g in draws}) > 1  # the draws differ


def _sets():
    # gallery: identity 1 at g0 (near the query) and g1 (far); identity 2 at g2 (middle)
    e = np.eye(4, dtype=np.float32)
    q = np.array([[1, 0, 0, 0]], np.float32)
    g = np.stack([e[0] * 0.9 + e[1] * np.sqrt(1 - 0.81),   # cos 0.9 to the query
                  e[2],                                    # cos 0.0
                  e[0] * 0.5 + e[3] * np.sqrt(0.75)]).astype(np.float32)  # cos 0.5
    query = FeatureSet(q, np.array([1]), np.array([0]), np.array([0]))
    gallery = FeatureSet(g, np.array([1, 1, 2]), np.array([1, 1, 1]), np.array([0, 0, 0]))
    return query, gallery


def test_single_shot_metrics_are_the_mean_over_draws_by_hand():
    query, gallery = _sets()
    draws = single_shot_galleries(gallery.pids, draws=10, seed=0)
    # by hand: the drawn image of identity 1 is g0 (top-1, AP 1) or g1 (rank 2 behind g2: AP 1/2)
    near = sum(0 in g for g in draws)
    expected_top1, expected_map = near / 10, (near * 1.0 + (10 - near) * 0.5) / 10
    per_draw = [run_retrieval(query, take_rows(gallery, g), [RetrievalConfig("reid", 1.0)], progress=False).table
                for g in draws]
    assert np.mean([t["top1"].iloc[0] for t in per_draw]) == pytest.approx(expected_top1)
    assert np.mean([t["mAP"].iloc[0] for t in per_draw]) == pytest.approx(expected_map)
    assert 0 < near < 10  # the case exercises both outcomes


def test_subset_enrichment_reattaches_by_identity_or_drops():
    query, gallery = _sets()
    sources = FeatureSet(np.array([[0, 1, 0, 0], [1, 0, 0, 0]], np.float32), np.array([1, 1]), np.array([0, 0]))
    samples = pd.DataFrame({"query_index": [0, 1], "gallery_index": [1, 2], "pid": [1, 2]})
    # single-shot gallery {g0, g2}: sample 0 (pid 1, attached to g1) moves to g0; sample 1 stays on g2
    by_id = subset_enrichment(samples, sources, gallery, gallery_rows=np.array([0, 2]), query_rows=np.array([1]),
                              by_identity=True)
    assert sorted(by_id.gallery_index.tolist()) == [0, 1]
    # camera-style subset {g0, g2}: the sample on g1 is dropped with g1
    dropped = subset_enrichment(samples, sources, gallery, gallery_rows=np.array([0, 2]), query_rows=np.array([1]),
                                by_identity=False)
    assert dropped.gallery_index.tolist() == [1]
    # the evaluated query (source row 1) comes first: its own sample is recognised as its own copy
    assert dropped.source_query.tolist() == [0]


def test_camera_subset_rows_equal_evaluating_the_subset_directly():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((30, 8)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    pids, cams = rng.integers(0, 5, 30), rng.integers(0, 4, 30)
    q, g = np.arange(10), np.arange(10, 30)
    sub_q, sub_g = q[np.isin(cams[q], (2, 3))], g[np.isin(cams[g], (2, 3))]
    direct = evaluate_metrics(-(feats[sub_q] @ feats[sub_g].T), pids[sub_q], pids[sub_g], cams[sub_q], cams[sub_g])
    query = FeatureSet(feats[q], pids[q], cams[q])
    gallery = FeatureSet(feats[g], pids[g], cams[g])
    local_q = np.flatnonzero(np.isin(query.camids, (2, 3)))
    local_g = np.flatnonzero(np.isin(gallery.camids, (2, 3)))
    ours = run_retrieval(take_rows(query, local_q), take_rows(gallery, local_g), [RetrievalConfig("reid", 1.0)],
                         progress=False).table.iloc[0]
    assert ours["top1"] == pytest.approx(direct.top1) and ours["mAP"] == pytest.approx(direct.mAP)
