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

Modules
-------
:mod:`~reface_utils.apps.custom.gallery` (the gallery folder),
:mod:`~reface_utils.apps.custom.identify` (crops per track and the identification maths),
:mod:`~reface_utils.apps.custom.annotate` (annotated videos),
:mod:`~reface_utils.apps.custom.settings` (every parameter, checked),
:mod:`~reface_utils.apps.custom.run` (the whole path). Import the names from here.
"""
from __future__ import annotations

from .annotate import annotate_video
from .gallery import GalleryError, load_gallery
from .identify import TRACK_COLUMNS, UNKNOWN, identify_tracks, select_crops
from .run import VideoIdentification, identify_people
from .settings import NOTEBOOK_INPUTS, VideoSettings, settings_from_namespace, video_settings

__all__ = ["UNKNOWN", "TRACK_COLUMNS", "GalleryError", "VideoIdentification",
           "load_gallery", "select_crops", "identify_tracks", "annotate_video", "identify_people", "VideoSettings",
           "video_settings", "settings_from_namespace", "NOTEBOOK_INPUTS"]
