"""The pipeline's per-dataset branches on tiny synthetic datasets, against loop references.

PRCC (two query sets, camera exclusion only), CCVID (tracklets, per-track vote) and
42Street (frame-wise enrichment, extra data): the expected values come from deliberately
simple loops written here from docs/METHOD.md, never from the code under test.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reface_utils.apps import pipeline
from reface_utils.data.datasets import Dataset
from reface_utils.models.face import FaceFeatures

DIM_REID, DIM_FACE = 8, 6


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(images: pd.DataFrame, seed: int, face_rate: float = 0.7):
    """ReID features that follow the outfit (plus noise), faces that follow the identity
    (plus noise), and about ``face_rate`` of images with a face (scores in [0.5, 1])."""
    rng = np.random.default_rng(seed)
    n = len(images)
    outfit = images["pid"].astype(str) + "/" + images["outfit"].astype(str)
    outfit_vec = {k: rng.normal(size=DIM_REID) for k in outfit.unique()}
    person_vec = {k: rng.normal(size=DIM_FACE) for k in images["person"].unique()}
    reid = unit(np.stack([outfit_vec[k] for k in outfit]) + 0.6 * rng.normal(size=(n, DIM_REID)))
    emb = unit(np.stack([person_vec[k] for k in images["person"]]) + 0.5 * rng.normal(size=(n, DIM_FACE)))
    has = rng.random(n) < face_rate
    score = np.where(has, rng.uniform(0.5, 1.0, n), 0.0).astype(np.float32)
    faces = FaceFeatures(has, score, np.zeros((n, 4)), np.zeros((n, 5, 2)), np.where(has[:, None], emb, 0))
    return reid, faces


def make(name: str, images: pd.DataFrame, seed: int, **dataset_kw):
    reid, faces = synthetic(images, seed)
    table = images[["path", "pid", "camid", "clothes_id", "role", "track"]].reset_index(drop=True)
    ds = Dataset(name, Path("/nonexistent"), table, **dataset_kw)
    return ds, pipeline.DatasetFeatures(table, reid, faces)


# --------------------------------------------------------------------------- loop references
def loop_enrichment(q_emb, q_has, q_cam, q_clo, g_emb, g_has, g_cam, g_clo, g_pid, t_sim, cc):
    """Per query with a face: best allowed gallery face (other camera; with cc other
    clothes), kept when its cosine reaches t_sim. Returns {query: gallery index}."""
    out = {}
    for i in range(len(q_emb)):
        if not q_has[i]:
            continue
        best, best_j = -np.inf, -1
        for j in range(len(g_emb)):
            if not g_has[j] or g_cam[j] == q_cam[i] or (cc and g_clo[j] == q_clo[i]):
                continue
            s = float(np.dot(q_emb[i], g_emb[j]))
            if s > best:
                best, best_j = s, j
        if best_j >= 0 and best >= t_sim:
            out[i] = best_j
    return out


def loop_rank_metrics(dist, q_pid, q_cam, g_pid, g_cam):
    """Standard mode: same pid + same camera is junk; top-1 and mAP over queries with a
    good match (ties: stable order of the gallery)."""
    top1, aps = [], []
    for i in range(len(dist)):
        keep = [j for j in np.argsort(dist[i], kind="stable") if not (g_pid[j] == q_pid[i] and g_cam[j] == q_cam[i])]
        good = [g_pid[j] == q_pid[i] for j in keep]
        if not any(good):
            continue
        top1.append(good[0])
        hits, precisions = 0, []
        for rank, ok in enumerate(good, start=1):
            if ok:
                hits += 1
                precisions.append(hits / rank)
        aps.append(np.mean(precisions))
    return np.mean(top1), np.mean(aps)


def loop_fused_enriched(q_reid, q_face, q_has, q_cam, g_reid, g_face, g_has, g_cam, e_reid, e_gallery, alpha):
    """docs/METHOD.md section 4: enriched ReID distance (minimum over a gallery image's
    attached samples), face distance with the reference's conventions, fusion."""
    nq, ng = len(q_reid), len(g_reid)
    dist = np.zeros((nq, ng))
    for i in range(nq):
        for j in range(ng):
            d_reid = -float(np.dot(q_reid[i], g_reid[j]))
            for e, gj in zip(e_reid, e_gallery):
                if gj == j:
                    d_reid = min(d_reid, -float(np.dot(q_reid[i], e)))
            if not q_has[i]:
                sim = -1.0
            elif not g_has[j]:
                sim = 0.0
            else:
                sim = float(np.dot(q_face[i], g_face[j]))
            if q_cam[i] == g_cam[j]:
                sim = -1.0  # same camera: excluded (as a query without a face)
            dist[i, j] = alpha * d_reid + (1 - alpha) * (1 - sim)
    return dist


# --------------------------------------------------------------------------- PRCC
def prcc_images() -> pd.DataFrame:
    rows = []
    for pid in range(6):
        for cam, role, outfit, n in ((0, "gallery", 0, 4), (1, "query_same", 0, 3), (2, "query_diff", 1, 3)):
            for k in range(n):
                rows.append({"path": f"/p/{cam}/{pid}/{k}.jpg", "pid": pid, "person": pid, "outfit": outfit,
                             "camid": cam, "clothes_id": 2 * pid + (cam == 2), "role": role, "track": ""})
    return pd.DataFrame(rows)


def test_prcc_enriches_with_camera_exclusion_only_and_evaluates_each_query_set():
    images = prcc_images()
    ds, features = make("prcc", images, seed=3, query_roles=("query_same", "query_diff"))
    settings = pipeline.settings_for(dataset="prcc", reid_model="mobilenetv2-imagenet", face_model="sface", sim_threshold=0.5,
                                     det_threshold=0.6)
    assert settings.clothes_changing is False and settings.enrich_det_threshold == 0.6
    enrichment = pipeline.run_enrichment(ds, features, settings)

    faces = features.faces.thresholded(0.6)
    q = features.rows(("query_same", "query_diff"))
    g = features.rows("gallery")
    meta = features.images
    expected = loop_enrichment(faces.embedding[q], faces.has_face[q], meta.camid.to_numpy()[q],
                               meta.clothes_id.to_numpy()[q], faces.embedding[g], faces.has_face[g],
                               meta.camid.to_numpy()[g], meta.clothes_id.to_numpy()[g], meta.pid.to_numpy()[g],
                               0.5, cc=False)
    got = dict(zip(enrichment.samples.query_index, enrichment.samples.gallery_index))
    assert got == expected
    same_clothes = [i for i in expected if meta.role.to_numpy()[q][i] == "query_same"]
    assert same_clothes, "same-clothes queries must be enrichable on PRCC (no clothes filter)"

    # With the clothes filter forced on, a same-clothes query can never join its own identity.
    forced = pipeline.run_enrichment(ds, features, pipeline.settings_for(
        dataset="prcc", reid_model="mobilenetv2-imagenet", face_model="sface", sim_threshold=0.5, det_threshold=0.6,
        clothes_changing=True))
    s = forced.samples
    own = (meta.role.to_numpy()[q][s.query_index] == "query_same") & (s.pid == meta.pid.to_numpy()[q][s.query_index])
    assert not own.any() and len(s) < len(enrichment.samples)

    evaluation = pipeline.evaluate(ds, features, enrichment, settings, progress=False)
    table = evaluation.table.set_index(["query_set", "config"])
    e_rows = np.array(list(expected))
    e_reid = features.reid[q][e_rows]
    e_gallery = np.array([expected[i] for i in e_rows])
    for role in ("query_same", "query_diff"):
        r = features.rows(role)
        dist = loop_fused_enriched(features.reid[r], faces.embedding[r], faces.has_face[r], meta.camid.to_numpy()[r],
                                   features.reid[g], faces.embedding[g], faces.has_face[g], meta.camid.to_numpy()[g],
                                   e_reid, e_gallery, settings.alpha)
        top1, mAP = loop_rank_metrics(dist, meta.pid.to_numpy()[r], meta.camid.to_numpy()[r],
                                      meta.pid.to_numpy()[g], meta.camid.to_numpy()[g])
        row = table.loc[(role, "fused+enriched")]
        assert row["top1"] == pytest.approx(top1, abs=1e-6)
        assert row["mAP"] == pytest.approx(mAP, abs=1e-4)
        assert row["evaluated"] == len(r)


# --------------------------------------------------------------------------- video
def loop_track_accuracy(q_reid, q_face, q_track, q_pid, q_cam, g_reid, g_face, g_pid, g_cam,
                        e_reid, e_face, e_pid, alpha, min_frames=0, unknown=None):
    """Per tracklet and identity: mean over frames of the best similarity to that
    identity's gallery frames (other camera) and appended frames (never excluded); fused;
    arg-max (ties: the smallest identity)."""
    pids = sorted(set(g_pid) | set(e_pid))
    correct = scored = 0
    for t in sorted(set(q_track)):
        frames = [i for i in range(len(q_track)) if q_track[i] == t]
        if len(frames) < min_frames or q_pid[frames[0]] == unknown:
            continue
        scores = []
        for p in pids:
            per_modality = []
            for q_feat, g_feat, e_feat in ((q_reid, g_reid, e_reid), (q_face, g_face, e_face)):
                total = 0.0
                for i in frames:
                    best = -np.inf
                    for j in range(len(g_pid)):
                        if g_pid[j] == p and g_cam[j] != q_cam[i]:
                            best = max(best, float(np.dot(q_feat[i], g_feat[j])))
                    for e in range(len(e_pid)):
                        if e_pid[e] == p:
                            best = max(best, float(np.dot(q_feat[i], e_feat[e])))
                    total += best
                per_modality.append(total / len(frames))
            scores.append(alpha * per_modality[0] + (1 - alpha) * per_modality[1])
        scored += 1
        correct += pids[int(np.argmax(scores))] == q_pid[frames[0]]
    return correct / scored, scored


def ccvid_images() -> pd.DataFrame:
    rows = []
    for pid in range(5):
        for role, cam, outfit, tracks in (("gallery", 1, 0, 2), ("query", 2, 0, 1), ("query", 3, 1, 2)):
            for t in range(tracks):
                track = f"session1/{pid:03d}_{cam:02d}_{t}"
                for k in range(5):
                    rows.append({"path": f"/c/{track}/{k}.jpg", "pid": pid, "person": pid, "outfit": outfit,
                                 "camid": cam, "clothes_id": 2 * pid + outfit, "role": role, "track": track})
    return pd.DataFrame(rows)


def loop_track_vote(frames_pid: dict[int, int], frames_sim: dict[int, float], q_track) -> dict[str, int]:
    """Majority pid per track among its matched frames; ties: larger summed similarity,
    then the smaller pid (docs/METHOD.md: ReFace's documented tie rule)."""
    out = {}
    for t in sorted(set(q_track)):
        votes: dict[int, list[float]] = {}
        for i, p in frames_pid.items():
            if q_track[i] == t:
                votes.setdefault(p, []).append(frames_sim[i])
        if votes:
            out[t] = sorted(votes, key=lambda p: (-len(votes[p]), -sum(votes[p]), p))[0]
    return out


def test_ccvid_votes_per_track_and_scores_tracklets():
    images = ccvid_images()
    ds, features = make("ccvid", images, seed=5, eval_modes=("tracklet",), is_video=True)
    settings = pipeline.settings_for(dataset="ccvid", reid_model="mobilenetv2-imagenet", face_model="sface", sim_threshold=0.6)
    assert settings.vote_by_track is True and settings.clothes_changing is False
    enrichment = pipeline.run_enrichment(ds, features, settings)

    faces = features.faces.thresholded(settings.enrich_det_threshold)
    meta = features.images
    q, g = features.rows("query"), features.rows("gallery")
    q_track = meta.track.to_numpy()[q]
    matched = loop_enrichment(faces.embedding[q], faces.has_face[q], meta.camid.to_numpy()[q],
                              meta.clothes_id.to_numpy()[q], faces.embedding[g], faces.has_face[g],
                              meta.camid.to_numpy()[g], meta.clothes_id.to_numpy()[g], meta.pid.to_numpy()[g],
                              0.6, cc=False)
    g_pid = meta.pid.to_numpy()[g]
    frame_pid = {i: int(g_pid[j]) for i, j in matched.items()}
    frame_sim = {i: float(np.dot(faces.embedding[q][i], faces.embedding[g][j])) for i, j in matched.items()}
    vote = loop_track_vote(frame_pid, frame_sim, q_track)
    expected = {i: vote[q_track[i]] for i in range(len(q)) if q_track[i] in vote}  # every frame of a voted track
    got = dict(zip(enrichment.samples.query_index, enrichment.samples.pid))
    assert got == expected and len(vote) >= 3

    evaluation = pipeline.evaluate(ds, features, enrichment, settings)
    table = evaluation.table.set_index("config")
    assert list(table.index) == ["reid", "face", "fused", "fused+enriched"]
    inf = features.faces.thresholded(settings.det_threshold)
    e_idx = np.array(sorted(expected))
    for config, alpha, enriched in (("reid", 1.0, False), ("fused", settings.alpha, False),
                                    ("fused+enriched", settings.alpha, True)):
        e = e_idx if enriched else e_idx[:0]
        acc, scored = loop_track_accuracy(
            features.reid[q], inf.embedding[q], q_track, meta.pid.to_numpy()[q], meta.camid.to_numpy()[q],
            features.reid[g], inf.embedding[g], g_pid, meta.camid.to_numpy()[g],
            features.reid[q][e], inf.embedding[q][e], np.array([expected[i] for i in e]), alpha)
        assert table.loc[config, "top1"] == pytest.approx(acc, abs=1e-9), config
        assert table.loc[config, "evaluated"] == scored


def street42_images(with_extra: bool) -> pd.DataFrame:
    rows = []
    for pid in range(4):
        for k in range(4):
            rows.append({"path": f"/s/gallery/{pid:03d}_{k}.png", "pid": pid, "person": pid, "outfit": 0,
                         "camid": 0, "clothes_id": -1, "role": "gallery", "track": ""})
        for t, n in ((0, 12), (1, 12), (2, 5)):  # the 5-frame tracklet is too short to score
            track = f"part1/{pid:03d}_{t}"
            for k in range(n):
                rows.append({"path": f"/s/test/tracklets/{track}/{k}.png", "pid": pid, "person": pid, "outfit": 1,
                             "camid": 1, "clothes_id": -1, "role": "query", "track": track})
        if with_extra:
            for k in range(3):
                rows.append({"path": f"/s/extra_data/{pid}_{k}.png", "pid": -1, "person": pid, "outfit": 1,
                             "camid": 1, "clothes_id": -1, "role": "extra", "track": ""})
    return pd.DataFrame(rows)


def test_street42_enriches_frame_by_frame_and_reports_extra_data_separately():
    images = street42_images(with_extra=True)
    ds, features = make("street42", images, seed=11, eval_modes=("tracklet",), is_video=True,
                        extra_roles=("extra",))
    settings = pipeline.settings_for(dataset="street42", reid_model="mobilenetv2-imagenet", face_model="sface", sim_threshold=0.6)
    assert settings.vote_by_track is False
    assert pipeline.uses_extra_data(ds, settings)
    enrichment = pipeline.run_enrichment(ds, features, settings)

    faces = features.faces.thresholded(settings.enrich_det_threshold)
    meta = features.images
    s_idx = features.rows(("query", "extra"))
    g = features.rows("gallery")
    expected = loop_enrichment(faces.embedding[s_idx], faces.has_face[s_idx], meta.camid.to_numpy()[s_idx],
                               meta.clothes_id.to_numpy()[s_idx], faces.embedding[g], faces.has_face[g],
                               meta.camid.to_numpy()[g], meta.clothes_id.to_numpy()[g], meta.pid.to_numpy()[g],
                               0.6, cc=False)
    got = dict(zip(enrichment.samples.query_index, enrichment.samples.gallery_index))
    assert got == expected  # frame-wise: exactly the frames whose own face matched
    source = np.where(meta.role.to_numpy()[s_idx] == "extra", "extra", "query")
    assert list(enrichment.samples.source) == [source[i] for i in sorted(expected)]
    n_extra = sum(source[i] == "extra" for i in expected)
    assert 0 < n_extra == enrichment.summary["enriched_from_extra"]
    # Precision counts only the frames with a known identity.
    known = [i for i in expected if source[i] == "query"]
    g_pid = meta.pid.to_numpy()[g]
    correct = sum(g_pid[expected[i]] == meta.pid.to_numpy()[s_idx][i] for i in known)
    assert enrichment.summary["precision"] == pytest.approx(correct / len(known))

    evaluation = pipeline.evaluate(ds, features, enrichment, settings)
    table = evaluation.table.set_index("config")
    assert list(table.index) == ["reid", "face", "fused", "fused+enriched", "fused+enriched+extra"]
    inf = features.faces.thresholded(settings.det_threshold)
    q = features.rows("query")
    q_track = meta.track.to_numpy()[q]
    g_pid = meta.pid.to_numpy()[g]
    for config, sources in (("fused+enriched", ("query",)), ("fused+enriched+extra", ("query", "extra"))):
        e = np.array([i for i in sorted(expected) if source[i] in sources])
        acc, scored = loop_track_accuracy(
            features.reid[q], inf.embedding[q], q_track, meta.pid.to_numpy()[q], meta.camid.to_numpy()[q],
            features.reid[g], inf.embedding[g], g_pid, meta.camid.to_numpy()[g],
            features.reid[s_idx][e], inf.embedding[s_idx][e], g_pid[[expected[i] for i in e]], settings.alpha,
            min_frames=10, unknown=12)
        assert table.loc[config, "top1"] == pytest.approx(acc, abs=1e-9), config
        assert table.loc[config, "evaluated"] == scored == 8  # 4 people x 2 long tracklets
        assert table.loc[config, "skipped"] == 4  # the short tracklets

    # Without extra data: the extra images are not used and there is one enriched row.
    off = pipeline.settings_for(dataset="street42", reid_model="mobilenetv2-imagenet", face_model="sface", sim_threshold=0.6,
                                extra_data=False)
    assert not pipeline.uses_extra_data(ds, off)
    plain_ds = ds.without_extra()
    plain_features = pipeline.DatasetFeatures(*_rows(features, ~meta.role.eq("extra").to_numpy()))
    plain = pipeline.run_enrichment(plain_ds, plain_features, off)
    assert len(plain.samples) == len(known) and (plain.samples.source == "query").all()
    rows_off = pipeline.evaluate(plain_ds, plain_features, plain, off).table.set_index("config")
    assert list(rows_off.index) == ["reid", "face", "fused", "fused+enriched"]
    assert rows_off.loc["fused+enriched", "top1"] == table.loc["fused+enriched", "top1"]


def _rows(features: pipeline.DatasetFeatures, keep: np.ndarray):
    return (features.images[keep].reset_index(drop=True), features.reid[keep], features.faces.subset(keep))


def test_street42_vote_by_track_stays_available_as_an_option():
    images = street42_images(with_extra=False)
    ds, features = make("street42", images, seed=11, eval_modes=("tracklet",), is_video=True)
    frame = pipeline.run_enrichment(ds, features, pipeline.settings_for(
        dataset="street42", reid_model="mobilenetv2-imagenet", face_model="sface", sim_threshold=0.6))
    track = pipeline.run_enrichment(ds, features, pipeline.settings_for(
        dataset="street42", reid_model="mobilenetv2-imagenet", face_model="sface", sim_threshold=0.6, vote_by_track=True))
    assert track.summary["vote_by_track"] and not frame.summary["vote_by_track"]
    assert len(track.samples) > len(frame.samples)  # every frame of a voted track


def test_extra_data_true_without_a_folder_is_an_error():
    images = street42_images(with_extra=False)
    ds, _ = make("street42", images, seed=1, eval_modes=("tracklet",), is_video=True)
    settings = pipeline.settings_for(dataset="street42", reid_model="mobilenetv2-imagenet", face_model="sface", extra_data=True)
    with pytest.raises(Exception, match="extra-data folder"):
        pipeline.uses_extra_data(ds, settings)
    with pytest.raises(ValueError, match="only 42Street"):
        pipeline.settings_for(dataset="ltcc", reid_model="mobilenetv2-imagenet", face_model="sface", extra_data=True)


@pytest.mark.parametrize("face_model,enrich,infer", [("insightface", 0.8, 0.7), ("sface", 0.6, 0.6)])
def test_two_detection_thresholds_with_the_references_defaults(face_model, enrich, infer):
    s = pipeline.settings_for(dataset="ltcc", reid_model="mobilenetv2-imagenet", face_model=face_model)
    assert (s.enrich_det_threshold, s.det_threshold) == (enrich, infer)
    # The single-threshold shorthand: one value serves both steps ...
    one = pipeline.settings_for(dataset="ltcc", reid_model="mobilenetv2-imagenet", face_model=face_model,
                                det_threshold=0.65)
    assert (one.enrich_det_threshold, one.det_threshold) == (0.65, 0.65)
    # ... and both can be set apart.
    two = pipeline.settings_for(dataset="ltcc", reid_model="mobilenetv2-imagenet", face_model=face_model,
                                det_threshold=0.5, enrich_det_threshold=0.9)
    assert (two.enrich_det_threshold, two.det_threshold) == (0.9, 0.5)


def test_enrichment_defaults_follow_the_reference():
    table = pipeline.enrichment_defaults_table().set_index("dataset")
    assert table.loc["ltcc", "clothes_changing"] and table.loc["demo", "clothes_changing"]
    for name in ("prcc", "last", "ccvid", "vcclothes", "street42"):
        assert not table.loc[name, "clothes_changing"], name
    assert table.loc["ccvid", "vote"] == "per tracklet" and table.loc["street42", "vote"] == "per image/frame"
    assert pipeline.settings_for(dataset="LaST", reid_model="mobilenetv2-imagenet", face_model="sface").dataset == "last"


def test_the_demo_is_never_generated_inside_a_users_folder(tmp_path):
    from reface_utils.data.datasets import DatasetError, load_dataset

    users = tmp_path / "LTCC_ReID"
    (users / "query").mkdir(parents=True)
    (users / "query" / "001_1_c1_0001.png").write_bytes(b"not touched")
    before = sorted(p.relative_to(users) for p in users.rglob("*"))
    with pytest.raises(DatasetError, match="never written into a folder of yours.*dataset='ltcc'"):
        load_dataset("demo", users)
    assert sorted(p.relative_to(users) for p in users.rglob("*")) == before
