"""Your own data: a folder of labelled people + videos -> who is who, per person track.

The 42Street scenario of the paper (a theatre play: a few people of interest, an unseen
video, clothes that change between scenes), for any user::

    from reface_utils.apps.custom import identify_people
    result = identify_people("my_gallery/", ["act1.mp4", "act2.mp4"], name="my_play")
    result.tracks            # one row per person track (TRACK_COLUMNS)
    result.annotated_videos  # {video name: annotated mp4}

Inputs
------
- a **gallery folder** ``<root>/<identity name>/*.jpg|png|...``: any number of person
  crops per identity, in any outfits (:func:`load_gallery`);
- one or more **videos** (files OpenCV/FFmpeg decodes, or folders of frame images).

Steps
-----
1. People are detected and tracked in each video, frames streamed
   (:func:`reface_utils.apps.tracking.track_video`: HOG by default, ByteTrack); every
   tracked box's crop is saved. Tracks shorter than ``min_track_frames`` are dropped
   (the 42Street protocol skips tracklets under 10 frames).
2. ReID and face features of the crops (up to ``max_crops_per_track`` evenly spaced
   crops per track) and of the gallery images.
3. Per track and gallery identity, as in docs/METHOD.md section 5 (via
   :mod:`reface_utils.method.tracklets`): ReID score = mean over the track's crops of the best
   cosine similarity to that identity's gallery images; face score likewise, a crop
   without a face counting 0; fused = ``alpha * reid + (1 - alpha) * face``.
4. **Gallery enrichment** from the video itself (docs/METHOD.md section 3, via
   :func:`reface_utils.method.enrich.enrich_gallery` with ``vote_by_track``): crops whose face
   matches a gallery face with cosine >= ``enrich_threshold`` vote, each track takes
   its majority identity, and *all* its crops, in the clothes worn in this video, join
   that identity's ReID gallery. Scores are then computed again, so a track whose face
   was never seen can still be named by its clothes if another track of the same
   person in the same outfit showed the face. By default a track keeps matching its own
   enriched crops (the reference behaviour, transductive); ``leave_own_track_out=True``
   scores every track against the other tracks' crops only.
5. The identity is the one with the best fused score (the paper's ranking), or
   ``"unknown"`` when its ``match_score`` is below ``unknown_threshold``. The fused score
   itself cannot serve that decision: crops without a face add 0 to the face score, so
   a track that never shows its face scores at most ``alpha`` x its ReID score, lower
   than a stranger whose face was seen and matched no one. ``match_score`` weighs the
   evidence that exists: ``alpha * reid + (1 - alpha) * face``, with the face score
   averaged over the crops *with* a face, and the ReID score alone for a track whose
   face was never seen. Similarity scales depend on the models: the default threshold
   (0.75) suits the offline pair (``sface`` + ``mobilenetv2-imagenet``) on the demo
   video; with other models, look at ``track_scores.csv`` and the ``match_score``
   column and set your own.

Outputs (under ``results/<name>/`` by default; nothing is written next to the inputs)
---------------------------------------------------------------------------------
``tracks.csv`` (:data:`TRACK_COLUMNS`), ``detections.csv`` (every tracked box),
``track_scores.csv`` (fused score per track and identity), ``enrichment.csv`` (the
enriched tracks), ``crops/<video>/<track id>/<frame>.jpg`` and
``annotated/<video>.mp4`` (boxes and names, H.264).
"""
from __future__ import annotations

import difflib
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import cv2
import numpy as np
import pandas as pd

from .cluster import check_engine
from ..core.checks import flag, integer, notebook_values, number, refuse_unknown, text
from ..core.files import atomic_write_text
from ..core.images import UnreadableImageError, read_rgb
from ..core.paths import results_dir
from .tracking import (FRAME_SUFFIXES, TRACKERS, PersonDetector, VideoError, iter_frames, probe_video,
                       track_video, video_name, write_video)

__all__ = ["UNKNOWN", "TRACK_COLUMNS", "GalleryError", "VideoIdentification",
           "load_gallery", "select_crops", "identify_tracks", "annotate_video", "identify_people", "VideoSettings",
           "video_settings", "settings_from_namespace", "NOTEBOOK_INPUTS"]

#: The identity given to tracks that no gallery identity matches well enough.
UNKNOWN = "unknown"

#: Columns of ``tracks.csv`` / :attr:`VideoIdentification.tracks`, one row per track.
TRACK_COLUMNS: dict[str, str] = {
    "video": "video name (file stem, or frames folder name)",
    "track_id": "the tracker's id, unique within the video",
    "first_frame": "first frame index (0-based) where the track has a box",
    "last_frame": "last frame index where the track has a box",
    "num_frames": "number of frames with a box",
    "identity": f"predicted gallery identity, or '{UNKNOWN}' when match_score < unknown_threshold",
    "score": "fused score of the best identity: alpha * reid_score + (1 - alpha) * face_score",
    "match_score": ("what unknown_threshold is compared with: alpha * reid_score + (1 - alpha) * the face "
                    "score over the crops with a face; reid_score alone when no face was seen"),
    "reid_score": "ReID score of the best identity (after enrichment)",
    "face_score": "face score of the best identity (crops without a face count 0)",
    "best_identity": "the best-scoring gallery identity, even when identity is unknown",
    "runner_up": "the second-best identity ('' with a one-identity gallery)",
    "runner_up_score": "its fused score (NaN when there is none)",
    "face_seen": "whether any scored crop of the track had an accepted face",
    "face_crops": "number of scored crops with an accepted face",
    "scored_crops": "number of crops the scores average over (<= max_crops_per_track)",
    "enriched": "whether the track's crops were added to the gallery (its faces matched an identity)",
    "enriched_identity": "the identity its faces voted for ('' when not enriched)",
    "identity_before_enrichment": "the prediction from the original gallery alone",
    "crops_dir": "folder of the track's saved crops",
}


class GalleryError(ValueError):
    """A gallery folder that cannot be used (missing, empty, unreadable image)."""


# --------------------------------------------------------------------------- gallery
def load_gallery(root: str | os.PathLike, *, check_images: bool = True) -> pd.DataFrame:
    """The labelled people: ``<root>/<identity name>/<image>`` -> a table.

    Returns one row per image, columns ``path`` (absolute), ``identity`` (the folder
    name) and ``pid`` (0-based, identities in sorted order), sorted by identity and
    file name. Files with other suffixes than :data:`~reface_utils.apps.tracking.FRAME_SUFFIXES` are ignored;
    images placed directly in ``root`` are ignored with a warning. With
    ``check_images`` every image is decoded once, so a broken file fails here, named.
    Raises :class:`GalleryError` for a missing or empty folder, an identity folder
    without images, or an unreadable image.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise GalleryError(f"gallery folder {root} does not exist (expected <root>/<identity name>/*.jpg)")
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.name)
    loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
    if loose:
        warnings.warn(f"gallery {root}: {len(loose)} image(s) directly in the folder are ignored "
                      f"({', '.join(loose[:3])}...); put each person's images in <root>/<name>/", stacklevel=2)
    if not folders:
        raise GalleryError(f"gallery folder {root} has no identity folders: expected one sub-folder per "
                           "person, <root>/<identity name>/*.jpg")
    rows = []
    for pid, folder in enumerate(folders):
        images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES)
        if not images:
            raise GalleryError(f"identity folder {folder} has no images ({', '.join(FRAME_SUFFIXES)}): "
                               "add crops of this person or remove the folder")
        for image in images:
            if check_images:
                try:
                    read_rgb(image)
                except UnreadableImageError as e:
                    raise GalleryError(f"gallery image {image} is unreadable ({e}); replace or remove it") from None
            rows.append((str(image.absolute()), folder.name, pid))
    return pd.DataFrame(rows, columns=["path", "identity", "pid"])


# --------------------------------------------------------------------------- identification
def select_crops(detections: pd.DataFrame, *, min_track_frames: int = 10,
                 max_crops_per_track: int | None = 32) -> pd.DataFrame:
    """The crops that score each track: tracks with >= ``min_track_frames`` boxes, and up
    to ``max_crops_per_track`` saved crops per track, evenly spaced over the track.

    Adds ``track_key`` (``"<video>/<track_id>"``). Keeps the input's row index.
    """
    det = detections.copy()
    det["track_key"] = det["video"].astype(str) + "/" + det["track_id"].astype(str)
    length = det.groupby("track_key")["frame"].transform("size")
    saved = det[(length >= min_track_frames) & (det["crop"] != "")]
    if max_crops_per_track is None or saved.empty:
        return saved
    if max_crops_per_track < 1:
        raise ValueError(f"max_crops_per_track must be >= 1 or None, got {max_crops_per_track}")
    rank = saved.groupby("track_key").cumcount().to_numpy()
    count = saved.groupby("track_key")["frame"].transform("size").to_numpy()
    # evenly spaced picks: position k * count / m for k = 0..m-1, i.e. a crop is kept when
    # floor(rank * m / count) moves to a new value
    m = np.minimum(count, max_crops_per_track)
    slot = (rank * m) // count
    keep = np.r_[True, (slot[1:] != slot[:-1]) | (rank[1:] == 0)]
    return saved[keep]


def _second_best(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and value of the second-best column per row (-1 / NaN with one column)."""
    if scores.shape[1] < 2:
        return np.full(len(scores), -1), np.full(len(scores), np.nan)
    order = np.argsort(-scores, axis=1, kind="stable")
    idx = order[:, 1]
    return idx, scores[np.arange(len(scores)), idx]


def identify_tracks(crops: pd.DataFrame, gallery: pd.DataFrame, *, crop_reid: np.ndarray,
                    crop_faces: Any, gallery_reid: np.ndarray, gallery_faces: Any, alpha: float = 0.75,
                    unknown_threshold: float = 0.75, enrich: bool = True, enrich_threshold: float = 0.5,
                    leave_own_track_out: bool = False,
                    progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-track identities from features (the numeric core of :func:`identify_people`).

    ``crops``: :func:`select_crops` rows (``track_key``), aligned with ``crop_reid``
    (N x D) and ``crop_faces`` (:class:`~reface_utils.models.face.FaceFeatures`, detection
    threshold already applied); ``gallery``: :func:`load_gallery` rows aligned with
    ``gallery_reid`` and ``gallery_faces``.

    Returns ``(per_track, fused_scores, enrichment)``: per track (index ``track_key``)
    the columns of :data:`TRACK_COLUMNS` that come from scores; the fused score per
    track and identity; one row per enriched track (``track_key``, ``identity``,
    ``votes``: crops whose face matched it, ``crops_added``, ``mean_similarity``).
    """
    from ..method.enrich import enrich_gallery
    from ..method.fusion import zero_faceless_rows
    from ..method.tracklets import EnrichedFrames, fuse_track_scores, track_identity_scores

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if len(crops) == 0:
        raise ValueError("no track has enough crops to identify (see min_track_frames)")
    names = gallery.drop_duplicates("pid").set_index("pid")["identity"].sort_index()
    keys = crops["track_key"].to_numpy()
    g_pid = gallery["pid"].to_numpy()
    face_q = zero_faceless_rows(crop_faces.embedding, crop_faces.has_face)
    face_g = zero_faceless_rows(gallery_faces.embedding, gallery_faces.has_face)

    def scores(enriched: Any = None):
        reid = track_identity_scores(crop_reid, keys, gallery_reid, g_pid, enriched=enriched,
                                     exclude_self=leave_own_track_out, progress=progress)
        face = track_identity_scores(face_q, keys, face_g, g_pid, progress=progress)
        return reid, face, fuse_track_scores(reid, face, alpha)

    reid0, face0, fused0 = scores()
    before = names.loc[fused0.pids].to_numpy()[np.argmax(fused0.scores, axis=1)]

    enrichment = pd.DataFrame(columns=["track_key", "identity", "votes", "crops_added", "mean_similarity"])
    enriched_ids = pd.Series(dtype=object)
    reid, face, fused = reid0, face0, fused0
    if enrich:
        query_meta = pd.DataFrame({"camid": np.ones(len(crops), int), "track": keys})
        gallery_meta = pd.DataFrame({"pid": g_pid, "camid": np.zeros(len(gallery), int)})
        result = enrich_gallery(crop_faces, gallery_faces, query_meta, gallery_meta, det_threshold=None,
                                sim_threshold=enrich_threshold, clothes_changing=False, vote_by_track=True)
        samples = result.samples
        if len(samples):
            frames = EnrichedFrames(samples["query_index"].to_numpy(), samples["pid"].to_numpy(),
                                    samples["track"].to_numpy())
            reid, face, fused = scores(frames)
            enrichment = (samples.assign(identity=names.loc[samples["pid"]].to_numpy())
                          .groupby("track", sort=True)
                          .agg(identity=("identity", "first"), votes=("own_match", "sum"),
                               crops_added=("query_index", "size"), mean_similarity=("similarity", "mean"))
                          .reset_index().rename(columns={"track": "track_key"}))
            enrichment["votes"] = enrichment["votes"].astype(int)
            enriched_ids = enrichment.set_index("track_key")["identity"]

    ids = names.loc[fused.pids].to_numpy()
    t = np.arange(len(fused.tracks))
    best = np.argmax(fused.scores, axis=1)
    second, second_score = _second_best(fused.scores)
    best_score = fused.scores[t, best]
    face_crops = pd.Series(crop_faces.has_face.astype(int)).groupby(keys).sum().reindex(fused.tracks).to_numpy()
    reid_best, face_best = reid.scores[t, best], face.scores[t, best]
    # face score over the crops that had a face (face_best averages over all crops, 0 without a face)
    face_where_seen = face_best * fused.num_frames / np.maximum(face_crops, 1)
    match = np.where(face_crops > 0, alpha * reid_best + (1 - alpha) * face_where_seen, reid_best)
    per_track = pd.DataFrame({
        "identity": np.where(match >= unknown_threshold, ids[best], UNKNOWN),
        "score": best_score,
        "match_score": match,
        "reid_score": reid_best,
        "face_score": face_best,
        "best_identity": ids[best],
        "runner_up": np.where(second >= 0, ids[np.maximum(second, 0)], ""),
        "runner_up_score": second_score,
        "face_seen": face_crops > 0,
        "face_crops": face_crops,
        "scored_crops": fused.num_frames,
        "enriched": pd.Index(fused.tracks).isin(enriched_ids.index),
        "enriched_identity": enriched_ids.reindex(fused.tracks).fillna("").to_numpy(),
        "identity_before_enrichment": before,
    }, index=pd.Index(fused.tracks, name="track_key"))
    table = pd.DataFrame(fused.scores, index=per_track.index, columns=pd.Index(ids, name="identity"))
    return per_track, table, enrichment


# --------------------------------------------------------------------------- annotated video
def _colour(identity: str) -> tuple[int, int, int]:
    """A stable, saturated RGB colour per identity name (grey for unknown)."""
    if identity == UNKNOWN:
        return (160, 160, 160)
    hue = (sum(ord(c) * (i + 1) for i, c in enumerate(identity)) * 37) % 180
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def _draw(frame: np.ndarray, boxes: pd.DataFrame) -> np.ndarray:
    out = frame.copy()
    thick = max(1, round(frame.shape[0] / 240))
    font_scale = max(0.4, frame.shape[0] / 720)
    for row in boxes.itertuples(index=False):
        colour = _colour(row.identity)
        p1, p2 = (int(row.x1), int(row.y1)), (int(row.x2), int(row.y2))
        cv2.rectangle(out, p1, p2, colour, thick, cv2.LINE_AA)
        label = f"{row.identity} #{row.track_id}" + ("" if row.identity == UNKNOWN else f" {row.match_score:.2f}")
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        y = max(th + base, p1[1])
        cv2.rectangle(out, (p1[0], y - th - base), (p1[0] + tw + 2, y), colour, -1)
        cv2.putText(out, label, (p1[0] + 1, y - base), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def annotate_video(source: str | os.PathLike, boxes: pd.DataFrame, path: str | os.PathLike, *,
                   fps: float | None = None, progress: bool = True) -> Path:
    """Write ``source`` again with boxes and names drawn (H.264 mp4 at ``path``).

    ``boxes``: rows with ``frame``, ``track_id``, ``x1 y1 x2 y2``, ``identity``,
    ``match_score`` for this video (the label is ``"<identity> #<track id> <match_score>"``). Frames are streamed (one in memory at a time); the output
    has exactly the frames of the input.
    """
    info = probe_video(source, fps=fps)
    by_frame = {f: g for f, g in boxes.groupby("frame")}
    empty = boxes.iloc[:0]
    frames = (_draw(frame, by_frame.get(i, empty)) for i, frame in iter_frames(info.path))
    return write_video(path, frames, fps=info.fps, total=info.frame_count or None,
                       desc=f"annotating {info.name}", progress=progress)


# --------------------------------------------------------------------------- the whole path
@dataclass
class VideoIdentification:
    """What :func:`identify_people` found and wrote.

    ``tracks``: one row per track (:data:`TRACK_COLUMNS`); ``detections``: one row per
    tracked box of those tracks, with ``identity``, ``score`` and ``match_score``; ``scores``: fused
    score per track (rows ``"<video>/<track_id>"``) and identity; ``enrichment``: one
    row per enriched track; ``gallery``: the :func:`load_gallery` table.
    """

    tracks: pd.DataFrame
    detections: pd.DataFrame
    scores: pd.DataFrame
    enrichment: pd.DataFrame
    gallery: pd.DataFrame
    out_dir: Path
    tracks_csv: Path
    annotated_videos: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def _as_list(videos: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    out = [Path(v).expanduser() for v in videos]
    if not out:
        raise VideoError("no video given: pass a video file, a frames folder, or a list of them")
    return out


def _unique_names(paths: Sequence[Path]) -> list[str]:
    names, seen = [], {}
    for p in paths:
        base = video_name(p)
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def _face_model(model: Any, **options: Any) -> Any:
    if isinstance(model, str):
        from ..models.face import load_face_model
        return load_face_model(model, **options)
    return model


def _reid_model(model: Any, checkpoint: Any, device: str) -> Any:
    if isinstance(model, str):
        from ..models.reid import load_reid_model
        return load_reid_model(model, checkpoint=checkpoint, device=device)
    return model


@dataclass
class VideoSettings:
    """Every parameter of :func:`identify_people`, checked, in the pipeline's vocabulary
    (:class:`reface_utils.apps.pipeline.Settings`: ``det_threshold``, ``sim_threshold``,
    ``alpha``, ``engine``...). ``face_model``/``reid_model``: a backend name or a loaded model.
    """

    face_model: Any = "sface"
    reid_model: Any = "mobilenetv2-imagenet"
    reid_checkpoint: str | os.PathLike | None = None
    device: str = "auto"
    alpha: float = 0.75                # ReID weight in the fused score (paper: 0.75)
    det_threshold: float = 0.6         # faces detected with a lower score are ignored
    sim_threshold: float = 0.5         # face similarity for a crop to vote in enrichment
    unknown_threshold: float = 0.75    # match_score below it: "unknown" (module docstring, step 5)
    enrich: bool = True                # gallery enrichment from the video's own tracks
    leave_own_track_out: bool = False  # score a track without its own enriched crops
    tracker: str | Callable[[float], Any] = "bytetrack"
    tracker_options: Mapping[str, Any] | None = None
    min_track_frames: int = 10         # shorter tracks are dropped
    max_crops_per_track: int | None = 8   # crops scored per track, evenly spaced (None: all)
    crop_every: int = 1                # save every n-th crop
    fps: float | None = None           # frame rate of frames folders (None: 25)
    engine: str = "local"              # "ray": each video tracked by its own Ray task
    ray_address: str | None = None

    def __post_init__(self) -> None:
        self.alpha = number("alpha", self.alpha, 0.0, 1.0)
        self.det_threshold = number("det_threshold", self.det_threshold, 0.0, 1.0)
        self.sim_threshold = number("sim_threshold", self.sim_threshold, -1.0, 1.0)
        self.unknown_threshold = number("unknown_threshold", self.unknown_threshold, -2.0, 2.0)
        self.min_track_frames = integer("min_track_frames", self.min_track_frames, 1)
        self.max_crops_per_track = integer("max_crops_per_track", self.max_crops_per_track, 1, optional=True)
        self.crop_every = integer("crop_every", self.crop_every, 1)
        self.fps = number("fps", self.fps, 1e-3, 1e4, optional=True)
        self.engine = check_engine(self.engine)
        self.enrich = flag("enrich", self.enrich)
        self.leave_own_track_out = flag("leave_own_track_out", self.leave_own_track_out)
        # Names and the device are checked here, before a video is opened: a wrong one must
        # not cost a whole tracking pass first.
        from ..core.runtime import torch_device
        from ..models.face import available_face_models
        from ..models.reid import available_reid_models

        for name, known in (("face_model", available_face_models()), ("reid_model", available_reid_models())):
            value = getattr(self, name)
            if isinstance(value, str) and value not in known:
                close = difflib.get_close_matches(value, known, 1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"parameter {name}: unknown model {value!r}{hint}; known: {', '.join(known)} "
                                 f"(or register your own: reface_utils.models.{'face.register_face_model' if name == 'face_model' else 'reid.register_reid_model'})")
        self.device = text("device", self.device).lower()
        try:
            torch_device(self.device)
        except RuntimeError as err:
            raise ValueError(f"parameter device: {err}") from None
        if isinstance(self.tracker, str):
            key = self.tracker.lower().replace("-", "").replace("_", "")
            if key not in TRACKERS:
                raise ValueError(f"parameter tracker must be one of {TRACKERS} (or a callable fps -> tracker), "
                                 f"got {self.tracker!r}")
        elif not callable(self.tracker):
            raise ValueError(f"parameter tracker must be a name in {TRACKERS} or a callable, got {self.tracker!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (v if v is None or isinstance(v, (bool, int, float, str)) else repr(v))
                for f in fields(self) for v in [getattr(self, f.name)]}


def video_settings(settings: VideoSettings | None = None, **parameters: Any) -> VideoSettings:
    """``settings`` (default: the defaults) with ``parameters`` replaced; unknown names are an
    error with the closest known one."""
    refuse_unknown(parameters, [f.name for f in fields(VideoSettings)])
    return replace(settings or VideoSettings(), **parameters)


#: The custom-video notebook's own parameters; every other one is a :class:`VideoSettings` field.
NOTEBOOK_INPUTS = ("gallery_root", "videos", "name", "detector", "results_root")


def settings_from_namespace(namespace: Mapping[str, Any]) -> VideoSettings:
    """The custom-video notebook's :class:`VideoSettings` from its variables (``globals()``
    after the parameters cell), every one checked. Plain values (None, bool, number, text)
    with public names are parameters: a misspelt papermill ``-p aplha 0.5`` (injected as a
    variable) is refused with the closest name, before any video is opened."""
    values = notebook_values(namespace, own=NOTEBOOK_INPUTS)
    refuse_unknown(values, [f.name for f in fields(VideoSettings)] + list(NOTEBOOK_INPUTS))
    return video_settings(**values)


def identify_people(gallery_root: str | os.PathLike, videos: str | os.PathLike | Sequence[str | os.PathLike], *,
                    name: str = "custom", out_dir: str | os.PathLike | None = None,
                    settings: VideoSettings | None = None, detector: PersonDetector | None = None,
                    annotate: bool = True, progress: bool = True, **parameters: Any) -> VideoIdentification:
    """Who is who in ``videos``, given a labelled ``gallery_root`` (see the module docstring).

    ``settings`` (:class:`VideoSettings`) and/or its fields as keyword arguments
    (``alpha=0.8, det_threshold=0.7, ...``), all checked before any work.
    ``detector``: a :class:`~reface_utils.models.detectors.PersonDetector` (default HOG);
    ``tracker``/``tracker_options``: see :func:`~reface_utils.apps.tracking.make_tracker`.
    Everything goes to ``out_dir`` (default ``results/<name>``). ``engine="ray"``: each
    video is detected, tracked and cropped by its own Ray task (cluster at ``ray_address``;
    ``out_dir`` on a file system the workers share), the rest runs here.
    """
    s = video_settings(settings, **parameters)
    started = time.perf_counter()
    # Everything is checked before the first frame is read: settings (above), gallery,
    # videos, detector, and the models themselves (loading them finds missing weights).
    gallery = load_gallery(gallery_root)
    sources = _as_list(videos)
    for source in sources:
        probe_video(source, fps=s.fps)
    if detector is not None and not callable(getattr(detector, "detect", None)):
        raise ValueError(f"detector must be a PersonDetector (an object with .detect(frame)), got {detector!r}")
    fm = _face_model(s.face_model)
    rm = _reid_model(s.reid_model, s.reid_checkpoint, s.device)
    out = Path(out_dir) if out_dir is not None else results_dir(name)
    names = _unique_names(sources)
    # what this run creates goes again if it fails: a failed run leaves nothing behind
    created = [p for p in (out, out / "crops", *(out / "crops" / v for v in names)) if not p.exists()]
    try:
        return _identify(gallery, sources, names, out, s, fm, rm, detector, annotate, progress, started)
    except BaseException:
        for folder in reversed(created):
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _identify(gallery: pd.DataFrame, sources: list[Path], names: list[str], out: Path, s: VideoSettings,
              fm: Any, rm: Any, detector: PersonDetector | None, annotate: bool, progress: bool,
              started: float) -> VideoIdentification:
    """identify_people's work, once everything is checked."""
    out.mkdir(parents=True, exist_ok=True)

    jobs = [dict(source=source, detector=detector, tracker=s.tracker, tracker_options=dict(s.tracker_options or {}),
                 crops_dir=out / "crops" / vname, crop_every=s.crop_every, name=vname, fps=s.fps, progress=progress)
            for source, vname in zip(sources, names)]
    if s.engine == "ray":
        from .cluster import track_videos_ray
        tables = track_videos_ray(jobs, address=s.ray_address, progress=progress)
    else:
        tables = [track_video(**job) for job in jobs]
    detections = pd.concat(tables, ignore_index=True)
    crops = select_crops(detections, min_track_frames=s.min_track_frames, max_crops_per_track=s.max_crops_per_track)
    if crops.empty:
        found = detections.groupby(["video", "track_id"]).ngroups
        raise ValueError(f"no person track of at least {s.min_track_frames} frames in {', '.join(map(str, sources))} "
                         f"({found} shorter track(s) found): lower min_track_frames, or use a stronger "
                         "detector (see reface_utils.apps.tracking)")
    t_tracked = time.perf_counter()

    crop_paths = crops["crop"].tolist()
    # Decode in this process (num_workers=0): the tracking above ran OpenCV's thread pool,
    # and a forked DataLoader worker that touches OpenCV's threading (reid's worker_init
    # calls cv2.setNumThreads) can deadlock. Decoding is a small part of the ReID time.
    # Crops are new files each run: caching their features would only fill the cache.
    crop_reid = rm.extract(crop_paths, cache_dir=None, num_workers=0, progress=progress)
    crop_faces = fm.extract(crop_paths, cache_dir=None, progress=progress).thresholded(s.det_threshold)
    gallery_reid = rm.extract(gallery["path"].tolist(), num_workers=0, progress=progress)
    gallery_faces = fm.extract(gallery["path"].tolist(), progress=progress).thresholded(s.det_threshold)
    t_features = time.perf_counter()

    per_track, scores, enrichment = identify_tracks(
        crops.reset_index(drop=True), gallery, crop_reid=crop_reid, crop_faces=crop_faces,
        gallery_reid=gallery_reid, gallery_faces=gallery_faces, alpha=s.alpha,
        unknown_threshold=s.unknown_threshold, enrich=s.enrich, enrich_threshold=s.sim_threshold,
        leave_own_track_out=s.leave_own_track_out)

    det = detections.assign(track_key=detections["video"].astype(str) + "/" + detections["track_id"].astype(str))
    det = det[det["track_key"].isin(per_track.index)]
    spans = det.groupby("track_key").agg(video=("video", "first"), track_id=("track_id", "first"),
                                         first_frame=("frame", "min"), last_frame=("frame", "max"),
                                         num_frames=("frame", "size"))
    tracks = spans.join(per_track)
    tracks["crops_dir"] = [str(out / "crops" / v / f"{t:04d}") for v, t in zip(tracks["video"], tracks["track_id"])]
    order = {v: i for i, v in enumerate(names)}  # videos in the order given
    tracks = tracks.assign(_video=tracks["video"].map(order)).sort_values(["_video", "track_id"])
    tracks = tracks[list(TRACK_COLUMNS)].reset_index(drop=True)
    det = det.merge(per_track[["identity", "score", "match_score"]], left_on="track_key", right_index=True)
    det = det.drop(columns="track_key").sort_values(["video", "frame", "track_id"], kind="stable").reset_index(drop=True)

    # dropped (short) tracks leave no crops behind
    kept = set(per_track.index)
    for key in set(detections["video"].astype(str) + "/" + detections["track_id"].astype(str)) - kept:
        vname, tid = key.rsplit("/", 1)
        folder = out / "crops" / vname / f"{int(tid):04d}"
        if folder.is_dir():
            for f in folder.iterdir():
                f.unlink()
            folder.rmdir()

    tracks_csv = out / "tracks.csv"
    atomic_write_text(tracks_csv, tracks.to_csv(index=False))
    atomic_write_text(out / "detections.csv", det.to_csv(index=False))
    atomic_write_text(out / "track_scores.csv", scores.to_csv())
    atomic_write_text(out / "enrichment.csv", enrichment.to_csv(index=False))

    annotated: dict[str, Path] = {}
    if annotate:
        for source, vname in zip(sources, names):
            annotated[vname] = annotate_video(source, det[det["video"] == vname], out / "annotated" / f"{vname}.mp4",
                                              fps=s.fps, progress=progress)
    finished = time.perf_counter()
    summary = {
        "videos": len(sources), "tracks": len(tracks),
        "short_tracks_dropped": int(detections.groupby(["video", "track_id"]).ngroups - len(tracks)),
        "identified": int((tracks["identity"] != UNKNOWN).sum()), "unknown": int((tracks["identity"] == UNKNOWN).sum()),
        "enriched_tracks": int(tracks["enriched"].sum()), "gallery_images": len(gallery),
        "gallery_identities": int(gallery["pid"].nunique()), "scored_crops": len(crops),
        "settings": s.to_dict(),
        "seconds": {"tracking": round(t_tracked - started, 2), "features": round(t_features - t_tracked, 2),
                    "total": round(finished - started, 2)},
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return VideoIdentification(tracks=tracks, detections=det, scores=scores, enrichment=enrichment,
                               gallery=gallery, out_dir=out, tracks_csv=tracks_csv, annotated_videos=annotated,
                               summary=summary)
