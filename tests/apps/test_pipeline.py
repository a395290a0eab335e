"""The pipeline's faults (issue 12): parameters refused before any work, unreadable images
left out of the metrics, queries that cannot be evaluated, and a dataset tree left untouched."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_ltcc_tree, tree_digest
from reface_utils.apps import pipeline as pl
from reface_utils.data.datasets import Dataset, SkippedFilesWarning, load_dataset
from reface_utils.models.face import FaceFeatures


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize("params, error, match", [
    ({"det_threshold": "abc"}, ValueError, r"parameter det_threshold must be a number in \[0, 1\], got 'abc' \(str\)"),
    ({"det_threshold": 1.5}, ValueError, r"parameter det_threshold must lie in \[0, 1\], got 1\.5"),
    ({"sim_threshold": 5}, ValueError, r"parameter sim_threshold must lie in \[0, 1\], got 5"),
    ({"alpha": -0.1}, ValueError, r"parameter alpha must lie in \[0, 1\], got -0\.1"),
    ({"alpha": float("nan")}, ValueError, r"parameter alpha must be a number"),
    ({"dataset": "nope"}, ValueError, r"parameter dataset: unknown dataset 'nope'; registered: prcc, ltcc"),
    ({"aplha": 0.5}, TypeError, r"unknown parameter\(s\) 'aplha' \(did you mean 'alpha'\?\)"),
    ({"batch_size": 0}, ValueError, r"parameter batch_size must be a whole number >= 1, got 0"),
    ({"topk": 2.5}, ValueError, r"parameter topk must be a whole number >= 1, got 2\.5"),
    ({"device": "gpu"}, ValueError, r"parameter device must be 'auto', 'cpu', 'cuda', 'cuda:<n>' or 'mps', got 'gpu'"),
    ({"enrichment": "max"}, ValueError, r"parameter enrichment must be one of \['append', 'min'\], got 'max'"),
    ({"face_model": "arcface"}, ValueError, r"parameter face_model: unknown face model 'arcface'.*registered: buffalo_l, insightface, sface"),
    ({"reid_model": "resnet"}, ValueError,
     r"parameter reid_model: unknown ReID model 'resnet'; registered: cal, .*'features'.*register_reid_model.*plugins"),
    ({"clothes_changing": "yes"}, ValueError, r"parameter clothes_changing must be True, False or None, got 'yes'"),
])
def test_bad_parameters_fail_before_any_work(tmp_path, params, error, match):
    with pytest.raises(error, match=match):
        pl.settings_for(results_root=str(tmp_path / "results"), **params)
    assert not (tmp_path / "results").exists()  # nothing created


@pytest.mark.parametrize("given, canonical", [("LTCC", "ltcc"), ("42Street", "street42"), ("VC-Clothes", "vcclothes")])
def test_dataset_name_case_is_normalised(given, canonical):
    s = pl.settings_for(dataset=given, reid_checkpoint="x.pth.tar", face_model="SFace")
    assert s.dataset == canonical and s.face_model == "sface"
    assert s.results_dir.name == canonical  # results/ltcc, never results/LTCC


# ---------------------------------------------------------------- evaluation and data safety
def _toy_dataset(tmp_path: Path, same_clothes_queries: bool = False, seed: int = 0):
    """An LTCC-like Dataset with random (L2-normalised) features: 4 people, 2 outfits each
    (or, with ``same_clothes_queries``, one outfit that the queries wear too)."""
    rng = np.random.default_rng(seed)
    rows = []
    for pid in range(4):
        for k in range(6):
            outfit = 0 if same_clothes_queries else k % 2  # same clothes only: no clothes-changing pair
            rows.append({"pid": pid, "camid": k % 3, "clothes_id": 2 * pid + outfit, "role": "gallery"})
        for k in range(3):
            clothes = 2 * pid if same_clothes_queries else 2 * pid + 1
            rows.append({"pid": pid, "camid": 3 + k % 2, "clothes_id": clothes, "role": "query"})
    images = pd.DataFrame(rows)
    images.insert(0, "path", [str(tmp_path / f"{i:03d}.png") for i in range(len(images))])
    images["track"] = ""
    n = len(images)
    reid = rng.normal(size=(n, 16)).astype(np.float32) + images["pid"].to_numpy()[:, None]
    reid /= np.linalg.norm(reid, axis=1, keepdims=True)
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    has = rng.random(n) < 0.6
    faces = FaceFeatures(has, np.where(has, 0.9, 0).astype(np.float32), np.zeros((n, 4)), np.zeros((n, 5, 2)),
                         np.where(has[:, None], emb, 0))
    ds = Dataset("ltcc", tmp_path, images, eval_modes=("standard", "CC", "SC"))
    return ds, pl.DatasetFeatures(images, reid, faces)


def test_unreadable_images_leave_metrics_as_without_them(tmp_path):
    """The issue's case: an unreadable query got a zero feature that was still ranked and
    changed top-1. Now: same table as a dataset without those images."""
    ds, full = _toy_dataset(tmp_path)
    bad = [3, ds.images.index[ds.images["role"] == "query"][2]]  # a gallery and a query image
    full.reid[bad] = 0  # what the extractor gives an unreadable image
    full.faces.has_face[bad] = False
    full.faces.embedding[bad] = 0
    readable = np.ones(len(ds.images), bool)
    readable[bad] = False
    masked = pl.DatasetFeatures(ds.images, full.reid, full.faces, readable)
    keep = np.flatnonzero(readable)
    images = ds.images.iloc[keep].reset_index(drop=True)
    without = pl.DatasetFeatures(images, full.reid[keep], full.faces.subset(keep))
    ds_without = Dataset("ltcc", tmp_path, images, eval_modes=ds.eval_modes)
    settings = pl.settings_for(dataset="ltcc", reid_checkpoint="x", face_model="sface", sim_threshold=0.2)
    got = pl.evaluate(ds, masked, pl.run_enrichment(ds, masked, settings), settings, progress=False)
    want = pl.evaluate(ds_without, without, pl.run_enrichment(ds_without, without, settings), settings,
                       progress=False)
    pd.testing.assert_frame_equal(got.table, want.table)
    assert got.unreadable == [ds.images["path"][i] for i in bad]
    assert got.table["evaluated"].max() == 11  # 12 queries, one unreadable


def test_zero_evaluated_queries_are_not_evaluated_not_zero(tmp_path):
    ds, feats = _toy_dataset(tmp_path, same_clothes_queries=True)
    settings = pl.settings_for(dataset="ltcc", reid_checkpoint="x", face_model="sface")
    ev = pl.evaluate(ds, feats, None, settings, progress=False)
    cc = ev.table[ev.table["mode"] == "CC"]
    assert (cc["evaluated"] == 0).all() and cc[["top1", "top5", "mAP"]].isna().all().all()
    assert set(cc["note"]) == {"not evaluated: none of the 12 queries has a correct match in the gallery in "
                               "other clothes (clothes-changing)"}
    standard = ev.table[ev.table["mode"] == "standard"]
    assert (standard["note"] == "").all() and standard["top1"].notna().all()
    pl.save_results(ev, tmp_path / "out")
    csv = (tmp_path / "out" / "results.csv").read_text().splitlines()
    cc_line = next(line for line in csv if ",CC," in line)
    assert ",n/a," in cc_line and "not evaluated" in cc_line
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    row = next(r for r in payload["results"] if r["mode"] == "CC")
    assert row["top1"] is None and row["mAP"] is None and row["note"].startswith("not evaluated")
    assert payload["unreadable_images"]["count"] == 0
    paper = pl.paper_table("ltcc", ev)
    ours_cc = paper[paper["source"].str.startswith("ours") & (paper["mode"] == "CC")]
    assert len(ours_cc) and ours_cc["top1"].isna().all()  # never 0.0 next to the paper


def test_pipeline_leaves_a_dataset_tree_untouched_and_skips_a_corrupt_image(tmp_path, demo_images):
    """Data safety: sha256 of every file of the tree before and after every pipeline step:
    identical, nothing added. The corrupt query is left out, counted and listed."""
    root = make_ltcc_tree(demo_images, tmp_path / "LTCC_ReID")
    corrupt = sorted((root / "query").iterdir())[0]
    corrupt.write_bytes(corrupt.read_bytes()[:60])  # truncated PNG
    (root / "query" / "readme.txt").write_bytes(b"")
    before = tree_digest(root)
    settings = pl.settings_for(dataset="LTCC", data_root=str(tmp_path), reid_model="mobilenetv2-imagenet", face_model="sface",
                               device="cpu", results_root=str(tmp_path / "results"))
    requirements = pl.check_requirements(settings, download=False)
    assert requirements.set_index("what").loc["dataset", "status"] == "ok"
    with pytest.warns(SkippedFilesWarning, match=r"readme\.txt"):
        ds = load_dataset(settings.dataset, settings.data_root)
    with pytest.warns(UserWarning, match=rf"1 unreadable image\(s\) are left out .*{corrupt.name}"):
        feats = pl.compute_features(ds, settings, progress=False)
    enrichment = pl.run_enrichment(ds, feats, settings)
    ev = pl.evaluate(ds, feats, enrichment, settings, progress=False)
    pl.alpha_sweep(ds, feats, enrichment, settings, alphas=[0.0, 1.0])
    pl.threshold_sweep(ds, feats, settings, thresholds=[0.4])
    pl.save_results(ev, settings.results_dir, enrichment=enrichment)
    assert tree_digest(root) == before  # nothing modified, nothing added
    assert ev.unreadable == [str(corrupt)]
    n_query = int((ds.images["role"] == "query").sum())
    assert ev.table[ev.table["mode"] == "standard"]["evaluated"].max() <= n_query - 1
    payload = json.loads((settings.results_dir / "results.json").read_text())
    assert payload["unreadable_images"]["count"] == 1 and payload["unreadable_images"]["paths"] == [str(corrupt)]
    assert settings.results_dir == tmp_path / "results" / "ltcc"


def _evaluated_ltcc_run(tmp_path, demo_images):
    """A small LTCC tree's settings, dataset, enrichment and evaluation (not saved yet)."""
    root = make_ltcc_tree(demo_images, tmp_path / "LTCC_ReID")
    settings = pl.settings_for(dataset="ltcc", data_root=str(root), reid_model="mobilenetv2-imagenet",
                               face_model="sface", device="cpu", results_root=str(tmp_path / "results"))
    ds = load_dataset(settings.dataset, settings.data_root)
    feats = pl.compute_features(ds, settings, progress=False)
    enrichment = pl.run_enrichment(ds, feats, settings)
    return settings, ds, enrichment, pl.evaluate(ds, feats, enrichment, settings, progress=False)


def test_the_enrichment_files_are_written_once_per_run(tmp_path, demo_images):
    """save_enrichment writes enrichment.csv/.json (the enrich step); save_results of the same
    run leaves them alone, and writes them when they are missing or another run's."""
    settings, ds, enrichment, ev = _evaluated_ltcc_run(tmp_path, demo_images)
    out = settings.results_dir
    saved = pl.save_enrichment(enrichment, out, ds, settings)
    stamps = {p.name: p.stat().st_ino for p in saved}  # an atomic write is a new file
    written = pl.save_results(ev, out, enrichment=enrichment, dataset=ds)
    assert not {p.name for p in written} & set(stamps) and {p.name: p.stat().st_ino for p in saved} == stamps
    for p in saved:
        p.unlink()
    written = pl.save_results(ev, out, enrichment=enrichment, dataset=ds)
    assert {"enrichment.csv", "enrichment.json"} <= {p.name for p in written}
    reloaded = pl.load_enrichment(out, ds, settings)
    assert reloaded is not None and len(reloaded.samples) == len(enrichment.samples)


@pytest.mark.parametrize("damage", ["another run's key", "corrupt JSON", "not an object"])
def test_saved_files_of_another_run_or_damaged_are_not_served_and_are_rewritten(tmp_path, demo_images, damage):
    settings, ds, enrichment, ev = _evaluated_ltcc_run(tmp_path, demo_images)
    out = settings.results_dir
    pl.save_results(ev, out, enrichment=enrichment, dataset=ds)
    assert pl.load_enrichment(out, ds, settings) is not None and pl.load_results(out, ds, settings) is not None
    for name in ("enrichment.json", "results.json"):
        path = out / name
        if damage == "another run's key":
            path.write_text(json.dumps({**json.loads(path.read_text()), "key": "0" * 64}))
        else:
            path.write_text("{not json" if damage == "corrupt JSON" else "[1, 2]")
    assert pl.load_enrichment(out, ds, settings) is None and pl.load_results(out, ds, settings) is None
    written = {p.name for p in pl.save_results(ev, out, enrichment=enrichment, dataset=ds)}
    assert {"enrichment.csv", "enrichment.json", "results.json"} <= written
    reloaded = pl.load_enrichment(out, ds, settings)
    assert reloaded is not None and len(reloaded.samples) == len(enrichment.samples)
    assert pl.load_results(out, ds, settings) is not None
