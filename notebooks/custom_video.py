# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Your own data: who is who in a video
#
# The 42Street scenario of ReFace: a few **labelled people of interest**, an **unseen
# video**, and **clothes that change between scenes**. You give
#
# * a gallery folder `<gallery_root>/<identity name>/*.jpg` (any number of crops per person, any outfits), and
# * one or more videos (or folders of frame images),
#
# and get, under `results/<name>/`:
#
# * every **person track** (detection + tracking) with its crops,
# * per track: the **predicted identity** (or `unknown`), its score, whether the face branch saw the face,
# * `tracks.csv` (one row per track) and an **annotated video** (boxes + names, H.264),
# * **gallery enrichment from the video itself**: tracks whose faces confidently match a gallery
#   identity add their crops, in the clothes they wear in *this* video, to that identity's gallery.
#   A track whose face is never visible can then be named by its clothes.
#
# With no inputs given it runs on a generated demo video of the demo dataset's people (real face
# photos on drawn bodies), so it works offline. The code is `reface_utils.apps.custom.identify_people`
# (detection and tracking in `reface_utils.apps.tracking`).

# %%
# Colab set-up. In Colab this cell installs ReFace with its GPU packages (about 3 minutes,
# once per runtime). It keeps what Colab has already imported (ipywidgets 7.7.1, ipykernel,
# IPython: see constraints-colab.txt), so no restart is needed, and Colab's own widget
# manager shows the widgets. Anywhere else it does nothing.
import sys

if "google.colab" in sys.modules:
    import os

    REFACE_GIT = os.environ.get("REFACE_GIT", "https://github.com/reface-reid/reface")  # a fork: see README
    REFACE_DIR = os.environ.get("REFACE_DIR", "/content/reface")
    if not os.path.isdir(REFACE_DIR):
        # !git clone -q --depth 1 {REFACE_GIT} {REFACE_DIR}
    # %pip install -q -e {REFACE_DIR}[colab]
    # !python -m reface_utils.core.runtime --install-gpu
    os.chdir(REFACE_DIR)
    sys.path.insert(0, REFACE_DIR)

# %% tags=["parameters"]
# Parameters (papermill: -p name value); every one is checked before any work.
gallery_root = None          # <root>/<identity name>/*.jpg; None: the generated demo video's gallery
videos = None                # a video file, a frames folder, or a list of them; None: the demo video
name = "custom"              # results go to <results_root>/<name>/
face_model = "sface"         # sface (offline) or insightface (paper: buffalo_l), or a registered name
reid_model = "mobilenetv2-imagenet"  # cal (paper, with reid_checkpoint), onnx, or a registered name
reid_checkpoint = None       # for reid_model cal: a registry name such as cal_ltcc, or a path
alpha = 0.75                 # weight of ReID in the fused score (1: ReID only, 0: face only)
unknown_threshold = 0.75     # a track whose match_score is below this is "unknown" (model-dependent)
det_threshold = 0.6          # faces detected with a lower score are ignored
enrich = True                # gallery enrichment from the video's own tracks
sim_threshold = 0.5          # face cosine similarity for a crop to vote in enrichment
leave_own_track_out = False  # True: a track is never matched against its own enriched crops
detector = "hog"             # "hog" (OpenCV, offline) or the path of a YOLO ONNX file (v5/v8/11, COCO)
tracker = "bytetrack"        # "bytetrack", "ocsort", "sort", "botsort" (Roboflow trackers)
min_track_frames = 10        # shorter tracks are dropped (the 42Street protocol skips < 10 frames)
max_crops_per_track = 8      # crops scored per track, evenly spaced (None: all)
crop_every = 1               # save every n-th crop of a track
fps = None                   # frame rate of frames folders (None: 25)
device = "auto"              # ReID device: auto, cpu, cuda
engine = "local"             # local (in-process) or ray (each video tracked by its own Ray task)
ray_address = None           # the Ray cluster to join; None: RAY_ADDRESS, else a Ray on this machine
results_root = None          # None: <repository>/results

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from reface_utils.data import demo_video
from reface_utils.apps.custom import TRACK_COLUMNS, UNKNOWN, identify_people, load_gallery, settings_from_namespace
from reface_utils.core.images import read_rgb
from reface_utils.core.paths import project_root
from reface_utils.apps.tracking import OnnxYoloPersonDetector, iter_frames

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 30)

settings = settings_from_namespace(globals())  # stops here on a misspelt or wrong parameter
demo = None
if gallery_root is None or videos is None:
    demo = demo_video.make_demo_video()   # cached under REFACE_HOME after the first run
    gallery_root = demo.gallery if gallery_root is None else gallery_root
    videos = [demo.video] if videos is None else videos
out_dir = Path(results_root) if results_root else project_root() / "results"
out_dir = out_dir / name
gallery = load_gallery(gallery_root)
print(f"gallery {gallery_root}: {gallery['identity'].nunique()} identities, {len(gallery)} images")
display(gallery.groupby("identity").size().rename("images").to_frame().T)

# %%
# The gallery: a few crops per person (the demo gallery shows each person in one outfit only).
per_id = 4
ids = sorted(gallery["identity"].unique())
fig, axes = plt.subplots(len(ids), per_id, figsize=(1.3 * per_id, 2.4 * len(ids)), squeeze=False)
for r, identity in enumerate(ids):
    paths = gallery.loc[gallery["identity"] == identity, "path"].tolist()[:per_id]
    for c in range(per_id):
        ax = axes[r, c]
        ax.axis("off")
        if c < len(paths):
            ax.imshow(read_rgb(paths[c]))
    axes[r, 0].set_title(identity, fontsize=9, loc="left")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Detect, track, identify
#
# `identify_people` streams every video once to detect and track people (OpenCV's HOG people
# detector by default, ByteTrack from the `trackers` library) and saves each tracked box's crop;
# then it scores every track against every gallery identity as in the 42Street protocol (per crop,
# the best ReID and face similarity to the identity's gallery images, averaged over the track,
# fused with `alpha`), enriches the gallery with the tracks whose faces matched, scores again, and
# streams the video a second time to draw the boxes and names.

# %%
person_detector = None if detector == "hog" else OnnxYoloPersonDetector(detector)
result = identify_people(gallery_root, videos, name=name, out_dir=out_dir, settings=settings,
                         detector=person_detector)
print({k: v for k, v in result.summary.items() if k != "seconds"})
print("seconds:", result.summary["seconds"])
shown = ["video", "track_id", "first_frame", "last_frame", "num_frames", "identity", "score", "match_score",
         "reid_score", "face_score", "face_seen", "enriched", "identity_before_enrichment"]
display(result.tracks[shown].round(3))

# %% [markdown]
# ### Reading the table
#
# One row per track (all columns are in `tracks.csv`):
# * `identity`: the best gallery identity, or `unknown` when `match_score < unknown_threshold`
# * `score`: the fused score of that identity, `alpha * reid_score + (1 - alpha) * face_score`; crops without a face count 0 in the face score (the paper's convention)
# * `match_score`: what the threshold is compared with: the same fusion, but the face score averaged over the crops *with* a face, and the ReID score alone when the face was never seen (a face-less track is not penalised for it; a stranger whose face was seen and matched no one is)
# * `face_seen`: whether the face branch saw a face in any scored crop
# * `enriched`: whether the track's crops joined the gallery (its faces voted for `enriched_identity`)
# * `identity_before_enrichment`: the prediction from the original gallery alone
#
# Similarity scales depend on the models: the default `unknown_threshold` suits the offline
# pair (`sface` + `mobilenetv2-imagenet`); with your models, look at `match_score` and
# `track_scores.csv` (the fused score of every track for every identity) and set your own.

# %% keep_output=true
# NBVAL_CHECK_OUTPUT
# On the demo video the truth is known: which walk each track follows and who it is.
if demo is not None:
    ev = demo_video.match_ground_truth(result.tracks, result.detections, demo.ground_truth)
    before = result.tracks.merge(ev[["track_id", "expected"]], on="track_id")
    acc_before = (before["identity_before_enrichment"] == before["expected"]).mean()
    print(f"ground-truth walks: {demo.ground_truth['walk'].nunique()}, tracks: {len(ev)}, "
          f"walks followed by a track: {ev.loc[ev['gt_walk'] >= 0, 'gt_walk'].nunique()}")
    print(f"tracks named correctly: {ev['correct'].mean():.0%} "
          f"(before enrichment, best identity only: {acc_before:.0%})")
    print(ev.to_string(index=False))

# %%
# A few crops of every track, with its name.
per_track = 6
tracks = result.tracks
fig, axes = plt.subplots(len(tracks), per_track, figsize=(1.2 * per_track, 2.2 * len(tracks)), squeeze=False)
for r, row in enumerate(tracks.itertuples()):
    crops = sorted(Path(row.crops_dir).glob("*.jpg"))
    picks = [crops[i] for i in np.linspace(0, len(crops) - 1, min(per_track, len(crops))).astype(int)]
    for c in range(per_track):
        ax = axes[r, c]
        ax.axis("off")
        if c < len(picks):
            ax.imshow(read_rgb(picks[c]))
    note = "face" if row.face_seen else "no face"
    note += ", enriched" if row.enriched else ""
    axes[r, 0].set_title(f"{row.video} #{row.track_id}: {row.identity} (match {row.match_score:.2f}; {note})",
                         fontsize=8, loc="left")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The annotated video
#
# Boxes and names drawn on every frame, written with H.264 (`libx264` via imageio-ffmpeg), so it
# plays in a browser. Below: a few frames of it; the file is in `results/<name>/annotated/`.

# %%
for vname, path in result.annotated_videos.items():
    print(path)
    n = result.detections.loc[result.detections["video"] == vname, "frame"]
    wanted = set(np.quantile(n, [0.15, 0.5, 0.85]).astype(int)) if len(n) else {0}
    frames = [(i, f) for i, f in iter_frames(path) if i in wanted]
    fig, axes = plt.subplots(1, len(frames), figsize=(5 * len(frames), 3), squeeze=False)
    for ax, (i, f) in zip(axes[0], frames):
        ax.imshow(f)
        ax.set_title(f"{vname}, frame {i}", fontsize=9)
        ax.axis("off")
    plt.tight_layout()
    plt.show()
