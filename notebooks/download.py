# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # ReFace: get what a dataset needs
#
# Checks, and where possible downloads, everything a run needs: the ReID checkpoint, the
# face model and the dataset itself. Models come through the checkpoint registry
# (`checkpoints.json`): verified by SHA-256, cached under `$REFACE_HOME` (default
# `~/.cache/reface`). Datasets cannot be downloaded automatically: your folder is checked,
# and the table says what is missing and where to get it. For `dataset="demo"` the demo
# dataset is generated (under `$REFACE_HOME`, never inside a folder of yours).

# %%
# Colab set-up. In Colab this cell installs ReFace with its GPU packages (about 3 minutes,
# once per runtime; if Colab then offers to restart the session, accept and run on).
# Anywhere else it does nothing.
import sys

if "google.colab" in sys.modules:
    import os

    REFACE_GIT = os.environ.get("REFACE_GIT", "https://github.com/reface-reid/reface")  # a fork: see README
    REFACE_DIR = os.environ.get("REFACE_DIR", "/content/reface")
    if not os.path.isdir(REFACE_DIR):
        # !git clone -q --depth 1 {REFACE_GIT} {REFACE_DIR}
    # %pip install -q -e {REFACE_DIR}[colab]
    # !python -m reface_utils.runtime --install-gpu
    os.chdir(REFACE_DIR)
    sys.path.insert(0, REFACE_DIR)

# %% tags=["parameters"]
# Parameters (papermill: -p name value). None means: the default for this dataset or model.
dataset: str = "demo"        # demo, prcc, ltcc, last, ccvid, vcclothes, street42
data_root = None             # the dataset folder as its authors distribute it (not needed for demo)
reid_model = None            # cal (paper), mobilenetv2-imagenet (offline), onnx, or a registered name; None: by dataset
reid_checkpoint = None       # registry name (cal_prcc, cal_ltcc, ...) or a path; None: the dataset's CAL weights
face_model: str = "sface"    # insightface (paper: buffalo_l) or sface (offline)
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

# %%
from IPython.display import display

from reface_utils.apps import pipeline

settings = pipeline.settings_from_namespace(globals())  # checks every value, and unknown names

# %% [markdown]
# Each requirement, its state, and where it is (or how to get it):

# %%
requirements = pipeline.check_requirements(settings, download=True)

# %% keep_output=true
# NBVAL_CHECK_OUTPUT
print(requirements[["what", "name", "status"]].to_string(index=False))

# %%
for _, row in requirements.iterrows():
    print(f"{row['name']}: {row['detail']}")
missing = requirements[requirements["status"] != "ok"]
if len(missing):
    print(f"\n{len(missing)} requirement(s) missing: see above for where to get them.")
