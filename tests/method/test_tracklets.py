"""video: per-tracklet identity scores (GEFF find_best_match), fusion and
the CCVID / 42Street accuracies, on hand-computed cases and against a per-tracklet loop."""
from __future__ import annotations

import numpy as np
import pytest

from reface_utils.data.datasets import dataset_spec
from reface_utils.method.tracklets import (
    EnrichedFrames,
    TrackScores,
    evaluate_tracks,
    fuse_track_scores,
    track_identity_scores,
)

S = np.sqrt(0.5)
GALLERY = np.array([[1, 0], [0, 1], [S, S], [-1, 0]], np.float32)
G_PIDS = np.array([1, 1, 2, 2])
G_CAMS = np.array([0, 1, 1, 0])
QUERY = np.array([[1, 0], [0, 1], [-1, 0]], np.float32)
Q_TRACKS = np.array(["t1", "t1", "t2"])
Q_PIDS = np.array([1, 1, 2])
Q_CAMS = np.array([0, 0, 2])


def test_hand_computed_scores_with_camera_exclusion():
    s = track_identity_scores(QUERY, Q_TRACKS, GALLERY, G_PIDS, query_pids=Q_PIDS,
                              query_camids=Q_CAMS, gallery_camids=G_CAMS, progress=False)
    assert s.tracks.tolist() == ["t1", "t2"] and s.pids.tolist() == [1, 2]
    # t1 (camera 0): gallery frames 0 and 3 excluded. pid 1: mean(max{0}, max{1}) = 0.5;
    # pid 2: mean(S, S). t2 (camera 2): nothing excluded: pid 1: max(-1, 0) = 0; pid 2: 1.
    np.testing.assert_allclose(s.scores, [[0.5, S], [0.0, 1.0]], atol=1e-6)
    assert s.num_frames.tolist() == [2, 1]
    assert s.predicted().tolist() == [2, 2]
    res = evaluate_tracks(s)
    assert (res.num_correct, res.num_scored, res.track_accuracy) == (1, 2, 0.5)
    assert res.image_accuracy == pytest.approx(1 / 3)
    # without cameras (42Street) t1 sees every frame: pid 1 scores 1, pid 2 scores S
    s2 = track_identity_scores(QUERY, Q_TRACKS, GALLERY, G_PIDS, progress=False)
    np.testing.assert_allclose(s2.scores[0], [1.0, S], atol=1e-6)


def test_identity_fully_excluded_scores_minus_inf_and_fusion_stays_finite_elsewhere():
    # t1's camera 0 holds all of pid 2's frames here
    cams = np.array([1, 1, 0, 0])
    reid = track_identity_scores(QUERY, Q_TRACKS, GALLERY, G_PIDS, query_camids=Q_CAMS, gallery_camids=cams,
                                 progress=False)
    assert reid.scores[0, 1] == -np.inf and np.isfinite(reid.scores[0, 0])
    assert reid.predicted()[0] == 1
    face = TrackScores(reid.tracks, reid.pids, np.array([[-np.inf, 0.3], [0.2, 0.1]]), reid.num_frames)
    np.testing.assert_array_equal(fuse_track_scores(reid, face, 1.0).scores, reid.scores)  # no 0 * -inf
    np.testing.assert_array_equal(fuse_track_scores(reid, face, 0.0).scores, face.scores)
    mixed = fuse_track_scores(reid, face, 0.75).scores
    assert not np.isnan(mixed).any()
    assert mixed[1, 0] == pytest.approx(0.75 * reid.scores[1, 0] + 0.25 * 0.2)


def test_clothes_exclusion():
    q_clo, g_clo = np.array([5, 5, 5]), np.array([5, 6, 6, 6])
    s = track_identity_scores(QUERY, Q_TRACKS, GALLERY, G_PIDS, query_clothes_ids=q_clo, gallery_clothes_ids=g_clo,
                              exclude_same_clothes=True, progress=False)
    # gallery frame 0 (pid 1) excluded for everybody: t1 pid 1 = mean(0, 1)
    assert s.scores[0, 0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="clothes"):
        track_identity_scores(QUERY, Q_TRACKS, GALLERY, G_PIDS, exclude_same_clothes=True, progress=False)


def test_enrichment_and_exclude_self():
    # t2's own frame appended as identity 1 (a wrong label) would make t2 predict 1
    enr = EnrichedFrames(frame_index=[2], pids=[1], source_track=["t2"])
    s = track_identity_scores(QUERY, Q_TRACKS, GALLERY, G_PIDS, query_pids=Q_PIDS, enriched=enr, progress=False)
    assert s.scores[1, 0] == pytest.approx(1.0) and s.predicted()[1] == 1
    s2 = track_identity_scores(QUERY, Q_TRACKS, GALLERY, G_PIDS, query_pids=Q_PIDS, enriched=enr,
                               exclude_self=True, progress=False)
    assert s2.scores[1, 0] == pytest.approx(0.0) and s2.predicted()[1] == 2
    # another tracklet still sees t2's appended frame: t1 frame 0 . [-1, 0] = -1, no change
    assert s2.scores[0, 0] == pytest.approx(1.0)


def test_street42_protocol():
    street42 = dataset_spec("street42")  # its protocol: min_track_frames 10, unknown_pid 12
    STREET42_MIN_FRAMES, STREET42_UNKNOWN_PID = street42.min_track_frames, street42.unknown_pid
    assert (STREET42_MIN_FRAMES, STREET42_UNKNOWN_PID) == (10, 12)
    # tracklets: correct (12 frames), too short (5), unknown (15), wrong (20)
    scores = np.array([[0.9, 0.1, 0.0], [0.0, 0.9, 0.0], [0.5, 0.0, 0.1], [0.9, 0.0, 0.1]])
    s = TrackScores(np.array([10, 11, 12, 13]), np.array([1, 2, 12]), scores, np.array([12, 5, 15, 20]),
                    track_pids=np.array([1, 2, STREET42_UNKNOWN_PID, 2]))
    res = evaluate_tracks(s, min_frames=STREET42_MIN_FRAMES, unknown_pid=STREET42_UNKNOWN_PID)
    assert (res.num_scored, res.num_correct, res.num_unknown, res.num_too_short) == (2, 1, 1, 1)
    assert res.track_accuracy == 0.5 and res.image_accuracy == pytest.approx(12 / 32)
    assert res.per_track.status.tolist() == ["correct", "too short", "unknown", "wrong"]
    ccvid = evaluate_tracks(s)  # CCVID: every tracklet scored, no unknown label
    assert ccvid.num_scored == 4 and ccvid.num_correct == 2


def test_blockwise_matches_per_tracklet_loop():
    rng = np.random.default_rng(4)

    def normalise(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    n_pid, dim = 6, 8
    centres = rng.standard_normal((n_pid, dim))
    g_pid, g_cam, g_clo = rng.integers(0, n_pid, 70), rng.integers(0, 3, 70), rng.integers(0, 2, 70)
    gallery = normalise(centres[g_pid] + rng.standard_normal((70, dim)))
    lengths = rng.integers(1, 8, 12)
    t_pid, t_cam, t_clo = rng.integers(0, n_pid, 12), rng.integers(0, 3, 12), rng.integers(0, 2, 12)
    tracks = np.repeat(np.arange(12) * 10, lengths)
    perm = rng.permutation(len(tracks))  # frames in any order
    tracks = tracks[perm]
    idx = tracks // 10
    q_pid, q_cam, q_clo = t_pid[idx], t_cam[idx], t_clo[idx]
    query = normalise(centres[q_pid] + rng.standard_normal((len(tracks), dim)))
    labelled = np.flatnonzero(rng.random(len(tracks)) < 0.5)  # frames the face match labelled
    enr = EnrichedFrames(labelled, q_pid[labelled], tracks[labelled])
    for exclude_self in (False, True):
        results = [
            track_identity_scores(query, tracks, gallery, g_pid, query_pids=q_pid, query_camids=q_cam,
                                  gallery_camids=g_cam, query_clothes_ids=q_clo, gallery_clothes_ids=g_clo,
                                  exclude_same_clothes=True, enriched=enr, exclude_self=exclude_self,
                                  block_size=bs, progress=False)
            for bs in (1, 5, 1000)
        ]
        all_feats = np.vstack([gallery, query[enr.frame_index]])
        all_pid = np.concatenate([g_pid, enr.pids])
        all_cam = np.concatenate([g_cam, np.full(len(enr), -9)])
        all_clo = np.concatenate([g_clo, np.full(len(enr), -9)])
        source = np.concatenate([np.full(70, -1), enr.source_track])
        expected = np.empty((len(results[0].tracks), len(results[0].pids)))
        for t_i, track in enumerate(results[0].tracks):
            frames = np.flatnonzero(tracks == track)
            sim = query[frames] @ all_feats.T
            sim[:, (all_cam == q_cam[frames[0]]) | (all_clo == q_clo[frames[0]])] = -np.inf
            if exclude_self:
                sim[:, source == track] = -np.inf
            for p_i, pid in enumerate(results[0].pids):
                expected[t_i, p_i] = sim[:, all_pid == pid].max(axis=1).mean()
        for res in results:
            np.testing.assert_allclose(res.scores, expected, atol=1e-6)
            assert np.array_equal(np.isinf(res.scores), np.isinf(expected))
            np.testing.assert_array_equal(res.track_pids, t_pid)


def test_inconsistent_track_labels_rejected():
    with pytest.raises(ValueError, match="different identities"):
        track_identity_scores(QUERY, np.array(["t", "t", "u"]), GALLERY, G_PIDS, query_pids=np.array([1, 2, 2]),
                              progress=False)
