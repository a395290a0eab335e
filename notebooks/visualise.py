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
# # ReFace: look at the results
#
# Retrieval results as pictures: one query per person (clothes-changing queries first),
# the top-k gallery images (green: right person, red: wrong; yellow: the detected face;
# **E**: the distance came from an enriched sample), the CMC curves, how top-1 and mAP
# depend on `alpha`, and how the enrichment threshold trades enriched samples for
# precision. With a live kernel, the browser at the end updates the picture as you move
# its controls.

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
num_queries: int = 6          # queries shown in the retrieval figure (one per person)
k: int = 8                    # gallery images shown per query

# %%
import matplotlib.pyplot as plt
from IPython.display import display

from reface_utils.apps import pipeline, visualise
from reface_utils.data.datasets import load_dataset

settings = pipeline.settings_from_namespace(globals(), own=("num_queries", "k"))
out_dir = settings.results_dir
ds = load_dataset(settings.dataset, settings.data_root)
# Warnings (unreadable images, skipped files, recomputed cache chunks) show below.
features = pipeline.compute_features(ds, settings, progress=False)
# What enrich_gallery.ipynb and infer.ipynb saved for this run (computed here if missing).
enriched = pipeline.enrichment_for(ds, features, settings, out_dir)
results = pipeline.results_for(ds, features, enriched, settings, out_dir)
role = ds.query_roles[-1]  # PRCC: the clothes-changing set (camera C)

# %% [markdown]
# ### Retrieval: fused + enriched, one query per person

# %%
if ds.is_video:
    print("video dataset: see the per-tracklet table in infer.ipynb")
else:
    fig = pipeline.retrieval_figure(ds, features, enriched, settings, results, role,
                                    num_queries=num_queries, k=k)
    fig.savefig(out_dir / "retrieval.png", dpi=80)

# %% [markdown]
# ### CMC curves

# %%
if not ds.is_video:
    mode = "CC" if "CC" in ds.eval_modes else "standard"
    cmcs = {config: curve for (r, config, m), curve in results.cmc.items() if r == role and m == mode}
    fig = visualise.plot_cmc(cmcs, title=f"{settings.dataset} {role} ({mode})")
    fig.savefig(out_dir / "cmc.png", dpi=80)

# %% [markdown]
# ### The fusion weight alpha and the enrichment threshold
# The dashed lines mark this run's values.

# %%
if not ds.is_video:
    sweep = pipeline.alpha_sweep(ds, features, enriched, settings)
    fig = visualise.plot_alpha_sweep(sweep, title=f"{settings.dataset}: fusion weight", chosen=settings.alpha)
    fig.savefig(out_dir / "alpha_sweep.png", dpi=80)
thresholds = pipeline.threshold_sweep(ds, features, settings)
fig = visualise.plot_threshold_sweep(thresholds, title=f"{settings.dataset}: enrichment threshold",
                                     chosen=settings.sim_threshold)
fig.savefig(out_dir / "threshold_sweep.png", dpi=80)

# %% [markdown]
# ### Interactive browser (needs a live kernel)
# Pick a query, move alpha, switch the enrichment on and off, change top-k.

# %%
if not ds.is_video:
    browser = pipeline.retrieval_browser(ds, features, enriched, settings, role, k=k)
    plt.close(browser.figure)
    display(browser.widget)
