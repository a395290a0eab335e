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
# # ReFace: gallery enrichment
#
# Step 1 of ReFace. For every query image whose face confidently matches a gallery image
# (another camera; on LTCC also other clothes), the query is attached to that gallery image
# as an *enriched sample*: the gallery learns the person's new outfit. Nothing is copied:
# the enrichment is an index (query image -> gallery image), saved as `enrichment.csv`,
# which the next notebooks read. Each dataset is enriched as the reference enriches it
# (clothes filter, per-tracklet vote for CCVID, 42Street's extra data): the table below
# shows the rules, and every one is a parameter.

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
# Parameters (papermill: -p name value). None means: the default for this dataset or model.
dataset: str = "demo"        # demo, prcc, ltcc, last, ccvid, vcclothes, street42, manifest (your CSV), or a registered name
data_root = None             # the dataset folder as its authors distribute it (not needed for demo)
reid_model = None            # cal (paper), mobilenetv2-imagenet (offline), onnx, features (a file), or a registered name; None: by dataset
reid_checkpoint = None       # registry name (cal_prcc, cal_ltcc, ...) or a path; None: the dataset's CAL weights
face_model = None            # insightface (paper: buffalo_l), sface (offline), or a registered name; None: by dataset
alpha: float = 0.75          # weight of ReID in the fused distance (1: ReID only, 0: face only)
det_threshold = None         # face detection score at inference; None: the face model's default
enrich_det_threshold = None  # face detection score when enriching; None: det_threshold if set, else the default
sim_threshold = None         # face similarity needed to enrich; None: the face model's default
rank_diff: float = 0.0       # optional gap between the best and the second identity (0: off)
clothes_changing = None      # enrichment skips gallery images in the query's clothes; None: the dataset's default
vote_by_track = None         # video: one label per tracklet by majority vote; None: the dataset's default
extra_data = None            # 42Street: enrich from its extra-data crops too; None: when the folder exists
enrichment: str = "min"      # min (GEFF) or append (ReFace v1)
device: str = "auto"         # auto, cpu or cuda
batch_size: int = 64         # images per ReID batch
num_workers = None           # image decoding workers; None: automatic
results_root = None          # folder for results/<dataset>; None: <checkout>/results
topk: int = 10               # gallery indices kept per query in ranks_*.npz
engine: str = "local"        # local (in-process) or ray (features and retrieval on a Ray cluster)
ray_address = None           # the Ray cluster to join; None: RAY_ADDRESS, else a Ray on this machine
amp: bool = False            # CUDA ReID in fp16 autocast (faster; the paper ran fp32)
plugins = None               # comma-separated modules or .py files that register your datasets and models
reid_features = None         # with reid_model features: a .npz (paths, features) of your ReID model
face_features = None         # a .npz (paths, features, has_face) of your face model; None: run face_model
rerank: bool = False         # also k-reciprocal re-ranked rows (ReID only, fused + enriched)
rerank_k1: int = 20          # re-ranking: k of the k-reciprocal neighbours
rerank_k2: int = 6           # re-ranking: neighbours averaged in the query expansion
rerank_lambda: float = 0.3   # re-ranking: weight of the original distance (1 - weight of the Jaccard one)

# %%
import pandas as pd
from IPython.display import display

from reface_utils.apps import pipeline
from reface_utils.data.datasets import load_dataset

settings = pipeline.settings_from_namespace(globals())  # checks every value, and unknown names
out_dir = settings.results_dir
ds = load_dataset(settings.dataset, settings.data_root)
display(ds.summary())

# %% [markdown]
# The enrichment rules of each dataset (the reference's), and this run's:

# %%
display(pipeline.enrichment_defaults_table())
print(f"this run: clothes filter {settings.clothes_changing}, vote per tracklet {settings.vote_by_track}, "
      f"extra data {pipeline.uses_extra_data(ds, settings)}, face detection >= {settings.enrich_det_threshold}, "
      f"similarity >= {settings.sim_threshold}")

# %%
# ReID and face features of every image; cached on disk, so only the first notebook pays.
# Warnings (unreadable images, skipped files, recomputed cache chunks) show below.
features = pipeline.compute_features(ds, settings, progress=False)
print(pipeline.describe_features(features, settings))

# %% [markdown]
# How many queries showed a face, how many were enriched, and, since the dataset has
# labels, the **precision** of the enrichment (the fraction of enriched samples attached to
# the right person): the number that tells whether the thresholds are sensible.

# %%
enriched = pipeline.run_enrichment(ds, features, settings)
pipeline.save_enrichment(enriched, out_dir, ds, settings)

# %% keep_output=true
# NBVAL_CHECK_OUTPUT
display(pipeline.enrichment_report(enriched))

# %% [markdown]
# A few enriched samples: the query (top) and the gallery image it was attached to
# (bottom); red frames are wrong attachments.

# %%
fig = pipeline.enriched_examples_figure(ds, features, enriched, settings, n=8)
fig.savefig(out_dir / "enriched_examples.png", dpi=80)
