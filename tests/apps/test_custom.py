"""custom + tracking + demo_video: your own gallery folder and video -> who is who, per track.

The end-to-end test runs the real path offline (HOG people detector, ByteTrack from
``trackers``, SFace faces, MobileNetV2 appearance, enrichment, H.264 writer) on the
generated demo video, and checks it against the video's ground truth. The smaller tests
check the pieces on hand-computed cases and the error messages on bad input.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import decoded_frame_count, write_png
from reface_utils.apps import tracking
from reface_utils.apps.custom import run as custom_run
from reface_utils.models import detectors
from reface_utils.data import demo_video
from reface_utils.apps.custom import (TRACK_COLUMNS, UNKNOWN, GalleryError, identify_people, identify_tracks,
                                 load_gallery, select_crops)
from reface_utils.models.face import FaceFeatures
from reface_utils.apps.tracking import (HOGPersonDetector, OnnxYoloPersonDetector, VideoError, iter_frames, nms,
                                   probe_video)


# --------------------------------------------------------------------------- gallery folder
def test_load_gallery_table_and_ignored_files(tmp_path):
    img = np.full((64, 32, 3), 120, np.uint8)
    write_png(tmp_path / "gallery" / "zoe" / "b.png", img)
    write_png(tmp_path / "gallery" / "zoe" / "a.png", img)
    write_png(tmp_path / "gallery" / "adam" / "1.png", img)
    (tmp_path / "gallery" / "adam" / "notes.txt").write_text("not an image")
    write_png(tmp_path / "gallery" / "loose.png", img)
    with pytest.warns(UserWarning, match="directly in the folder are ignored"):
        g = load_gallery(tmp_path / "gallery")
    assert list(g.columns) == ["path", "identity", "pid"]
    assert g["identity"].tolist() == ["adam", "zoe", "zoe"]          # sorted identities, then files
    assert g["pid"].tolist() == [0, 1, 1]
    assert [Path(p).name for p in g["path"]] == ["1.png", "a.png", "b.png"]
    assert all(Path(p).is_absolute() for p in g["path"])


def test_load_gallery_errors_name_the_problem(tmp_path):
    with pytest.raises(GalleryError, match="does not exist"):
        load_gallery(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GalleryError, match="no identity folders"):
        load_gallery(empty)
    g = tmp_path / "g"
    write_png(g / "ann" / "1.png", np.zeros((20, 10, 3), np.uint8))
    (g / "bob").mkdir()
    (g / "bob" / "readme.txt").write_text("x")
    with pytest.raises(GalleryError, match=r"identity folder .*bob has no images"):
        load_gallery(g)
    (g / "bob" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(GalleryError, match=r"broken\.jpg is unreadable"):
        load_gallery(g)


# --------------------------------------------------------------------------- video input
def test_bad_video_inputs_are_named(tmp_path):
    with pytest.raises(VideoError, match="does not exist"):
        probe_video(tmp_path / "missing.mp4")
    doc = tmp_path / "talk.txt"
    doc.write_text("hello")
    with pytest.raises(VideoError, match=r"talk\.txt: unsupported video format '\.txt'"):
        probe_video(doc)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match=r"junk\.mp4"):
        probe_video(junk)
    with pytest.raises(VideoError, match=r"junk\.mp4"):
        list(iter_frames(junk))
    frames = tmp_path / "frames"
    frames.mkdir()
    with pytest.raises(VideoError, match="has no frame images"):
        probe_video(frames)
    # the whole API fails early, before tracking, on a bad video
    gallery = tmp_path / "gallery"
    write_png(gallery / "ann" / "1.png", np.zeros((20, 10, 3), np.uint8))
    with pytest.raises(VideoError, match=r"junk\.mp4"):
        identify_people(gallery, [junk], out_dir=tmp_path / "out", progress=False)


class _OneWalker:
    """A fake detector: one person box moving 6 px right per frame, missed on frame 5."""

    def __init__(self):
        self.calls = 0

    def detect(self, frame):
        k = self.calls
        self.calls += 1
        if k == 5:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        return np.array([[10 + 6 * k, 8, 40 + 6 * k, 70]], np.float32), np.array([0.9], np.float32)


def test_track_video_with_a_pluggable_detector_saves_crops(tmp_path):
    folder = tmp_path / "walk"
    for i in range(12):
        write_png(folder / f"{i:03d}.png", np.full((80, 120, 3), 10 * i, np.uint8))
    crops = tmp_path / "crops"
    (crops / "0007").mkdir(parents=True)
    (crops / "0007" / "000001.jpg").write_bytes(b"stale crop of an earlier run")
    (crops / "keep.txt").write_text("not ours")
    det = tracking.track_video(folder, detector=_OneWalker(), crops_dir=crops, crop_every=2, fps=10,
                               progress=False)
    assert list(det.columns) == list(tracking.DETECTION_COLUMNS)
    # ByteTrack confirms a track on its 2nd consecutive detection; the missed frame 5 is
    # bridged (the track keeps its id); one track in all
    assert det["track_id"].nunique() == 1 and (det["video"] == "walk").all()
    assert det["frame"].tolist() == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    np.testing.assert_allclose(det.loc[det["frame"] == 6, ["x1", "y1", "x2", "y2"]].to_numpy(),
                               [[46, 8, 76, 70]], atol=2)
    saved = det[det["crop"] != ""]
    assert len(saved) == 5                                             # every 2nd box of the track
    tid = int(det["track_id"].iloc[0])
    assert sorted(p.name for p in (crops / f"{tid:04d}").iterdir()) == [Path(c).name for c in saved["crop"]]
    crop = cv2.imread(saved["crop"].iloc[0])
    assert crop.shape[:2] == (62, 30) and abs(int(crop.mean()) - 10) <= 2  # frame 1's box, frame 1's grey
    assert not (crops / "0007").exists() and (crops / "keep.txt").is_file()
    assert custom_run._unique_names([folder, tmp_path / "a" / "walk.mp4", folder]) == ["walk", "walk-2", "walk-3"]


# --------------------------------------------------------------------------- detection
def test_nms_hand_computed():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.5, 0.9, 0.4, 0.5])
    # box 1 (0.9) first; box 0 overlaps it with IoU 90/110 = 0.82 -> dropped; so is box 3
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 0, 2]  # IoU(0, 3) = 1 > 0.9 still drops box 3
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def _constant_onnx(path: Path, output: np.ndarray) -> Path:
    """An ONNX model with a YOLO's input and a fixed output (the input only feeds a zero)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["fixed", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, "yolo_like", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))],
        [numpy_helper.from_array(output.astype(np.float32), "fixed"),
         numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnx_yolo_adapter_decodes_v8_and_v5_layouts(tmp_path):
    # 640 x 640 letterbox of a 320 x 240 frame: scale 2, 80 px of padding on top.
    # Box A: person, cx 320 cy 320 w 100 h 200 (input px) -> frame (135, 70, 185, 170).
    # Box B: same place, lower score -> removed by NMS. Box C: a car -> not a person.
    v8 = np.zeros((1, 84, 3), np.float32)
    v8[0, :4, 0], v8[0, 4, 0] = [320, 320, 100, 200], 0.9
    v8[0, :4, 1], v8[0, 4, 1] = [322, 318, 100, 200], 0.6
    v8[0, :4, 2], v8[0, 4 + 2, 2] = [100, 400, 50, 50], 0.95
    det = OnnxYoloPersonDetector(_constant_onnx(tmp_path / "v8.onnx", v8))
    boxes, scores = det.detect(np.zeros((240, 320, 3), np.uint8))
    np.testing.assert_allclose(boxes, [[135, 70, 185, 170]], atol=1e-4)
    np.testing.assert_allclose(scores, [0.9], atol=1e-6)
    v5 = np.zeros((1, 2, 85), np.float32)
    v5[0, 0, :5], v5[0, 0, 5] = [320, 320, 100, 200, 0.8], 0.5   # score 0.8 * 0.5 = 0.4
    v5[0, 1, :5], v5[0, 1, 5] = [100, 400, 50, 50, 0.9], 0.2     # 0.18 < min_score 0.3
    det5 = OnnxYoloPersonDetector(_constant_onnx(tmp_path / "v5.onnx", v5))
    boxes, scores = det5.detect(np.zeros((240, 320, 3), np.uint8))
    np.testing.assert_allclose(boxes, [[135, 70, 185, 170]], atol=1e-4)
    np.testing.assert_allclose(scores, [0.4], atol=1e-6)
    assert isinstance(det, tracking.PersonDetector)


def test_missing_hog_says_what_to_install(monkeypatch):
    monkeypatch.setattr(detectors, "_hog_class", lambda: None)
    with pytest.raises(RuntimeError, match=r"opencv-python<5"):
        HOGPersonDetector()


# --------------------------------------------------------------------------- identification core
def test_select_crops_keeps_long_tracks_evenly_spaced():
    det = pd.DataFrame({"video": "v", "frame": np.r_[0:10, 0:3], "track_id": [1] * 10 + [2] * 3,
                        "crop": [f"c{i}" for i in range(13)]})
    det.loc[4, "crop"] = ""  # a box whose crop was not saved
    sel = select_crops(det, min_track_frames=5, max_crops_per_track=3)
    # track 2 (3 boxes) is too short; track 1 has 9 saved crops -> ranks 0, 3, 6
    assert sel["crop"].tolist() == ["c0", "c3", "c7"]
    assert sel["track_key"].unique().tolist() == ["v/1"]
    assert len(select_crops(det, min_track_frames=5, max_crops_per_track=None)) == 9


def _faces(emb: np.ndarray, has: list[bool]) -> FaceFeatures:
    n = len(has)
    emb = np.where(np.array(has)[:, None], emb, 0).astype(np.float32)
    return FaceFeatures(np.array(has), np.where(has, 0.9, 0).astype(np.float32), np.zeros((n, 4)),
                        np.zeros((n, 5, 2)), emb)


def test_identify_tracks_hand_computed():
    # two identities, ann (pid 0) and bob (pid 1), one gallery image each
    gallery = pd.DataFrame({"path": ["a", "b"], "identity": ["ann", "bob"], "pid": [0, 1]})
    g_reid = np.array([[1, 0], [0, 1]], np.float32)
    g_face = _faces(np.array([[1, 0], [0, 1]]), [True, True])
    # track x: 2 crops, faces like ann's, clothes like bob's; track y: 2 crops, no face,
    # clothes half-way; track z: a stranger, face orthogonal-ish to both.
    s = np.sqrt(0.5)
    crops = pd.DataFrame({"track_key": ["v/x", "v/x", "v/y", "v/y", "v/z", "v/z"]})
    c_reid = np.array([[0, 1], [0, 1], [s, s], [s, s], [0.6, 0.8], [0.6, 0.8]], np.float32)
    c_face = _faces(np.array([[1, 0], [1, 0], [0, 0], [0, 0], [-s, -s], [-s, -s]]),
                    [True, True, False, False, True, True])
    per, scores, enr = identify_tracks(crops, gallery, crop_reid=c_reid, crop_faces=c_face, gallery_reid=g_reid,
                                       gallery_faces=g_face, alpha=0.5, unknown_threshold=0.6, enrich=False)
    # x: reid ann 0, bob 1; face ann 1, bob 0 -> fused 0.5 / 0.5: tie -> first identity (ann)
    # y: reid s / s, face 0 / 0 -> fused s/2 each; match_score = reid alone = s
    # z: reid 0.6 / 0.8, face -s / -s -> fused 0.3 - s/2 / 0.4 - s/2 -> bob; match = same (faces seen)
    np.testing.assert_allclose(scores.loc["v/x"], [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(scores.loc["v/y"], [s / 2, s / 2], atol=1e-6)
    np.testing.assert_allclose(scores.loc["v/z"], [0.3 - s / 2, 0.4 - s / 2], atol=1e-6)
    assert per.loc["v/x", "best_identity"] == "ann" and per.loc["v/x", "identity"] == UNKNOWN  # 0.5 < 0.6
    assert per.loc["v/y", "match_score"] == pytest.approx(s) and per.loc["v/y", "identity"] == "ann"
    assert per.loc["v/z", "identity"] == UNKNOWN and per.loc["v/z", "best_identity"] == "bob"
    assert per.loc["v/z", "match_score"] == pytest.approx(0.4 - s / 2, abs=1e-6)
    assert per["face_crops"].tolist() == [2, 0, 2] and per["face_seen"].tolist() == [True, False, True]
    assert per.loc["v/x", "runner_up"] == "bob" and per.loc["v/x", "runner_up_score"] == pytest.approx(0.5)
    assert enr.empty and not per["enriched"].any()

    # With enrichment (face cosine >= 0.5): x's faces match ann (cosine 1), so x's crops
    # (bob's clothes) join ann's ReID gallery; y (no face) and z (cosine -s) do not vote.
    per, scores, enr = identify_tracks(crops, gallery, crop_reid=c_reid, crop_faces=c_face, gallery_reid=g_reid,
                                       gallery_faces=g_face, alpha=0.5, unknown_threshold=0.6, enrich=True)
    assert enr["track_key"].tolist() == ["v/x"] and enr["identity"].tolist() == ["ann"]
    assert enr[["votes", "crops_added"]].values.tolist() == [[2, 2]]
    # x now matches its own crops (transductive, the reference's behaviour): reid ann = 1
    np.testing.assert_allclose(scores.loc["v/x"], [1.0, 0.5], atol=1e-6)
    assert per.loc["v/x", "identity"] == "ann" and per.loc["v/x", "identity_before_enrichment"] == "ann"
    assert per.loc["v/x", "enriched"] and per.loc["v/x", "enriched_identity"] == "ann"
    # z's clothes (0.6, 0.8) are closer to x's (0, 1) than to ann's gallery (1, 0): 0.8
    np.testing.assert_allclose(scores.loc["v/z"], [0.4 - s / 2, 0.4 - s / 2], atol=1e-6)
    # leaving a track's own crops out: x is back to its gallery-only ReID score for ann
    per, scores, _ = identify_tracks(crops, gallery, crop_reid=c_reid, crop_faces=c_face, gallery_reid=g_reid,
                                     gallery_faces=g_face, alpha=0.5, enrich=True, leave_own_track_out=True)
    np.testing.assert_allclose(scores.loc["v/x"], [0.5, 0.5], atol=1e-6)


# --------------------------------------------------------------------------- end to end on the demo video
@pytest.fixture(scope="module")
def demo():
    return demo_video.make_demo_video()


@pytest.fixture(scope="module")
def run(demo, tmp_path_factory):
    if not tracking.hog_available():
        pytest.fail("this OpenCV build has no HOG people detector (OpenCV 5 moved it to opencv-contrib); "
                    "the project needs opencv-python<5 / opencv-python-headless<5")
    before = sorted(p.relative_to(demo.gallery) for p in demo.gallery.rglob("*"))
    out = tmp_path_factory.mktemp("custom")
    result = identify_people(demo.gallery, demo.video, out_dir=out, max_crops_per_track=6, progress=False)
    after = sorted(p.relative_to(demo.gallery) for p in demo.gallery.rglob("*"))
    assert before == after, "nothing may be written into the user's gallery folder"
    return result


def test_demo_video_is_what_its_ground_truth_says(demo):
    walks, scene_starts = demo_video.demo_video_plan()
    assert decoded_frame_count(demo.video) == demo.frame_count == scene_starts[-1]
    info = probe_video(demo.video)
    assert (info.width, info.height, info.fps) == (*demo_video.FRAME_SIZE, demo_video.FPS)
    gt = demo.ground_truth
    assert list(gt.columns) == list(demo_video.GT_COLUMNS)
    assert sorted(gt["walk"].unique()) == [w.walk for w in walks]
    # clothes change between scenes: every gallery person wears another outfit in each scene
    outfits = gt[gt["in_gallery"]].groupby("name")["outfit"].nunique()
    assert (outfits == gt[gt["in_gallery"]].groupby("name")["scene"].nunique()).all() and outfits.max() > 1
    gallery = load_gallery(demo.gallery)
    assert sorted(gallery["identity"].unique()) == sorted(demo_video.GALLERY_PEOPLE)
    assert demo_video.STRANGER not in set(gallery["identity"])


def test_demo_tracks_found_and_identified(demo, run):
    tracks = run.tracks
    ev = demo_video.match_ground_truth(tracks, run.detections, demo.ground_truth)
    n_walks = demo.ground_truth["walk"].nunique()
    # measured: 10 tracks for 10 walks, each following one walk (>= 90 % of its frames)
    assert ev["gt_walk"].nunique() >= n_walks - 1, ev
    assert (ev["gt_walk"] < 0).sum() <= 1, ev                       # at most one junk track
    assert (ev["overlap"] >= 0.8).mean() >= 0.8, ev
    # measured: 10 / 10 tracks named right (the stranger as unknown)
    accuracy = ev["correct"].mean()
    assert accuracy >= 0.8, ev
    stranger = ev[ev["gt_name"] == demo_video.STRANGER]
    assert len(stranger) and (stranger["identity"] == UNKNOWN).all(), ev
    # the paper's point: tracks that never show a face are named through tracks of the same
    # person in the same outfit whose face was seen (enrichment); without it they are wrong
    back = tracks.merge(ev[["track_id", "expected"]], on="track_id")
    back = back[~back["face_seen"] & (back["expected"] != "")]
    assert len(back) >= 1
    assert (back["identity"] == back["expected"]).all(), back
    assert (back["identity_before_enrichment"] != back["expected"]).any(), back
    # every enriched track was enriched with its true identity
    enriched = tracks[tracks["enriched"]].merge(ev[["track_id", "expected"]], on="track_id")
    assert len(enriched) >= 5 and (enriched["enriched_identity"] == enriched["expected"]).all(), enriched


def test_demo_outputs_csv_crops_and_annotated_video(demo, run):
    out = run.out_dir
    tracks = pd.read_csv(run.tracks_csv, keep_default_na=False)
    assert list(tracks.columns) == list(TRACK_COLUMNS)
    assert len(tracks) == len(run.tracks) == run.summary["tracks"]
    assert not tracks.duplicated(["video", "track_id"]).any()        # one row per track
    per_track = run.detections.groupby("track_id")["frame"].agg(["size", "min", "max"])
    t = run.tracks.set_index("track_id")
    assert (t["num_frames"] == per_track["size"]).all()
    assert (t["first_frame"] == per_track["min"]).all() and (t["last_frame"] == per_track["max"]).all()
    assert (t["num_frames"] >= 10).all()                              # min_track_frames
    assert (t["scored_crops"] <= 6).all()
    # every box of a kept track has its crop on disk; dropped tracks left none
    for row in run.tracks.itertuples():
        crops = sorted(Path(row.crops_dir).glob("*.jpg"))
        assert len(crops) == row.num_frames
    assert {p.name for p in (out / "crops" / "video").iterdir()} == {f"{i:04d}" for i in run.tracks["track_id"]}
    for name in ("detections.csv", "track_scores.csv", "enrichment.csv", "summary.json"):
        assert (out / name).is_file()
    scores = pd.read_csv(out / "track_scores.csv", index_col=0)
    assert sorted(scores.columns) == sorted(demo_video.GALLERY_PEOPLE) and len(scores) == len(tracks)
    # the annotated video: H.264, the input's size, every frame
    video = run.annotated_videos["video"]
    assert video == out / "annotated" / "video.mp4"
    assert decoded_frame_count(video) == demo.frame_count
    info = probe_video(video)
    assert (info.width, info.height) == demo_video.FRAME_SIZE
    # boxes are drawn: a frame with a named track differs from the input around its box
    row = run.detections.iloc[len(run.detections) // 2]
    src = next(f for i, f in iter_frames(demo.video) if i == row.frame)
    ann = next(f for i, f in iter_frames(video) if i == row.frame)
    y1, x1 = int(row.y1), int(row.x1)
    assert np.abs(ann[y1:y1 + 3, x1:int(row.x2)].astype(int) - src[y1:y1 + 3, x1:int(row.x2)]).mean() > 20


def test_video_settings_speak_the_pipelines_language_and_check_every_value():
    from reface_utils.apps.custom import VideoSettings, video_settings

    s = video_settings(det_threshold=0.7, sim_threshold=0.4, alpha=0.8)
    assert (s.det_threshold, s.sim_threshold, s.alpha) == (0.7, 0.4, 0.8)
    assert video_settings(VideoSettings(alpha=0.5), sim_threshold=0.3).sim_threshold == 0.3
    with pytest.raises(TypeError, match="'face_det_threshold' \\(did you mean 'det_threshold'\\?\\)"):
        video_settings(face_det_threshold=0.65)  # the name before the pipeline's vocabulary
    with pytest.raises(TypeError, match="'aplha' \\(did you mean 'alpha'\\?\\)"):
        video_settings(aplha=0.5)
    for bad, message in ((dict(alpha=1.5), "alpha must lie in"), (dict(det_threshold="x"), "det_threshold must be"),
                         (dict(min_track_frames=0), "min_track_frames must be a whole number >= 1"),
                         (dict(engine="spark"), "engine must be one of"), (dict(enrich="yes"), "enrich must be True")):
        with pytest.raises(ValueError, match=message):
            video_settings(**bad)


def test_bad_settings_stop_identify_people_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="det_threshold must lie in"):
        identify_people(tmp_path / "no-gallery", tmp_path / "no-video.mp4", det_threshold=2.0)


@pytest.mark.parametrize("bad, message", [
    (dict(face_model="sfcae"), r"face_model: unknown face model 'sfcae' \(did you mean 'sface'\?\)"),
    (dict(reid_model="mobilenet"), r"reid_model: unknown ReID model 'mobilenet' \(did you mean 'mobilenetv2-imagenet'\?\)"),
    (dict(tracker="bytetrak"), r"tracker must be one of"),
])
def test_wrong_models_stop_identify_people_before_tracking(demo, tmp_path, monkeypatch, bad, message):
    tracked = []
    monkeypatch.setattr(custom_run, "track_video", lambda **job: tracked.append(job))
    with pytest.raises(ValueError, match=message):
        identify_people(demo.gallery, demo.video, out_dir=tmp_path / "out", progress=False, **bad)
    assert not tracked and not (tmp_path / "out").exists()


def test_cuda_on_a_machine_without_it_stops_before_tracking(demo, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this CPU machine
    monkeypatch.setattr(custom_run, "track_video", lambda **job: pytest.fail("tracked before the check"))
    with pytest.raises(ValueError, match=r"device: device='cuda' was asked for, but torch sees no CUDA GPU"):
        identify_people(demo.gallery, demo.video, out_dir=tmp_path / "out", device="cuda", progress=False)
    assert not (tmp_path / "out").exists()


class _FailingDetector:
    """Finds the one walker for a few frames, then fails (a detector that breaks mid-video)."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, frame):
        self.calls += 1
        if self.calls > 20:
            raise RuntimeError("detector broke")
        return np.array([[10, 8, 60, 120]], np.float32), np.array([0.9], np.float32)


def test_a_run_that_fails_midway_leaves_nothing_behind(demo, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="detector broke"):
        identify_people(demo.gallery, demo.video, out_dir=out, detector=_FailingDetector(), progress=False)
    assert not out.exists()  # no crop folders, no half-written results
    out.mkdir()
    (out / "mine.txt").write_text("the user's")
    with pytest.raises(RuntimeError, match="detector broke"):
        identify_people(demo.gallery, demo.video, out_dir=out, detector=_FailingDetector(), progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]  # what was there stays, nothing added
