"""Write the notebooks in ``notebooks/`` from the cell lists below (sources only).

The committed notebooks also carry their demo outputs (nbval checks the result cells
against them); ``tools/refresh_notebooks.py`` re-executes them on the demo and stores
those outputs. Edit the cells here, then run both:

    .venv/bin/python tools/build_notebooks.py && .venv/bin/python tools/refresh_notebooks.py
"""
from __future__ import annotations

from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CHECK = "# NBVAL_CHECK_OUTPUT\n"

COLAB = '''# Colab only: install ReFace with its GPU dependencies (and optionally mount Google Drive).
# Outside Colab this cell does nothing.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    REFACE_GIT = "https://github.com/reface-reid/reface.git"  # the project's repository
    MOUNT_DRIVE = False  # True: datasets/checkpoints under /content/drive/MyDrive
    if not os.path.isdir("/content/reface"):
        subprocess.run(["git", "clone", "--depth", "1", REFACE_GIT, "/content/reface"], check=True)
    subprocess.run(["make", "-C", "/content/reface", "gpu"], check=True)
    os.chdir("/content/reface")
    sys.path.insert(0, "/content/reface")
    if MOUNT_DRIVE:
        from google.colab import drive

        drive.mount("/content/drive")'''

PARAMETERS = '''# Parameters (papermill: -p name value). None means "the default for this dataset/model".
dataset = "demo"          # demo, prcc, ltcc, last, ccvid, vcclothes, street42
data_root = None          # the dataset's folder as distributed by its authors (not needed for demo)
reid_model = None         # "cal" (paper), "mobilenetv2-imagenet" (offline demo), "onnx", or a registered name
reid_checkpoint = None    # registry name (cal_prcc, cal_ltcc, ...) or a path; None: the dataset's CAL weights
face_model = "sface"      # "insightface" (paper: buffalo_l) or "sface" (offline)
alpha = 0.75              # fused distance = alpha * ReID + (1 - alpha) * face
det_threshold = None      # face detection score threshold (None: the face model's default)
sim_threshold = None      # face similarity threshold for gallery enrichment
rank_diff = 0.0           # optional gap between the best and second-best identity
clothes_changing = True   # enrichment ignores gallery images in the query's own clothes
enrichment = "min"        # "min" (GEFF) or "append" (ReFace v1)
device = "auto"           # "auto", "cpu" or "cuda"
batch_size = 64
results_root = None       # None: <repository>/results'''

SETUP = '''import warnings

import pandas as pd
from IPython.display import display

from reface_utils import pipeline
from reface_utils.datasets import load_dataset

pd.set_option("display.width", 160)
parameters = dict(
    dataset=dataset, data_root=data_root, reid_model=reid_model, reid_checkpoint=reid_checkpoint,
    face_model=face_model, alpha=alpha, det_threshold=det_threshold, sim_threshold=sim_threshold,
    rank_diff=rank_diff, clothes_changing=clothes_changing, enrichment=enrichment, device=device,
    batch_size=batch_size, results_root=results_root)
settings = pipeline.settings_for(**parameters)  # checks every value
out_dir = settings.results_dir
ds = load_dataset(settings.dataset, settings.data_root)
print(ds)'''

FEATURES = '''# ReID and face features for every image; cached on disk, so only the first notebook pays.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", category=UserWarning)  # e.g. "random CAL weights" is reported below
    features = pipeline.compute_features(ds, settings, progress=False)
faces = features.faces.thresholded(settings.det_threshold)
print(f"{len(features.images)} images: ReID features {features.reid.shape[1]}-d ({settings.reid_model}), "
      f"faces found in {int(faces.has_face.sum())} (face model {settings.face_model}, "
      f"detection threshold {settings.det_threshold})")'''


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text: str, *, tags: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def params(extra: str = "") -> nbformat.NotebookNode:
    return code(PARAMETERS + ("\n" + extra.strip() if extra else ""), tags=("parameters",))


def colab(title: str, intro: str) -> list[nbformat.NotebookNode]:
    return [md(f"# {title}\n\n{intro.strip()}"), code(COLAB)]


NB: dict[str, list] = {}

NB["download"] = colab("ReFace: get what a dataset needs", """
Checks, and where possible downloads, everything a run needs: the ReID checkpoint, the
face model and the dataset itself. Models come through the checkpoint registry
(`checkpoints.json`): verified by SHA-256, cached under `$REFACE_HOME` (default
`~/.cache/reface`). Datasets that cannot be downloaded automatically are checked in your
folder, and the table says what is missing and where to get it.
""") + [
    params(),
    code('''from IPython.display import display

from reface_utils import pipeline

parameters = dict(
    dataset=dataset, data_root=data_root, reid_model=reid_model, reid_checkpoint=reid_checkpoint,
    face_model=face_model, alpha=alpha, det_threshold=det_threshold, sim_threshold=sim_threshold,
    rank_diff=rank_diff, clothes_changing=clothes_changing, enrichment=enrichment, device=device,
    batch_size=batch_size, results_root=results_root)
settings = pipeline.settings_for(**parameters)  # checks every value'''),
    md("Each requirement, its state, and where it is (or how to get it):"),
    code(CHECK + '''requirements = pipeline.check_requirements(settings, download=True)
print(requirements[["what", "name", "status"]].to_string(index=False))'''),
    code('''for _, row in requirements.iterrows():
    print(f"{row['name']}: {row['detail']}")
missing = requirements[requirements["status"] != "ok"]
if len(missing):
    print(f"\\n{len(missing)} requirement(s) missing: see above for where to get them.")'''),
]

NB["enrich_gallery"] = colab("ReFace: gallery enrichment", """
Step 1 of ReFace. For every query image whose face confidently matches a gallery image
(other camera, other clothes), the query is attached to that gallery image as an
*enriched sample*: the gallery learns the person's new outfit. Nothing is copied: the
enrichment is an index (query image -> gallery image), saved as `enrichment.csv`.
""") + [
    params(),
    code(SETUP),
    code("display(ds.summary())"),
    code(FEATURES),
    md("""
How many queries showed a face, how many were enriched, and, since the dataset has
labels, the **precision** of the enrichment (the fraction of enriched samples attached to
the right person): the number that tells whether the thresholds are sensible.
"""),
    code('''enriched = pipeline.run_enrichment(ds, features, settings)
summary = {k: enriched.summary[k] for k in ("queries", "queries_with_face", "gallery", "gallery_with_face", "enriched", "correct", "precision") if k in enriched.summary}'''),
    code(CHECK + '''for key, value in summary.items():
    print(f"{key:>18}: {value:.3f}" if isinstance(value, float) else f"{key:>18}: {value}")'''),
    md("A few enriched samples: the query (top) and the gallery image it was attached to (bottom); red frames are wrong attachments."),
    code('''from reface_utils import visualise

queries = features.images.iloc[features.rows(ds.query_roles)]
gallery = features.images.iloc[features.rows("gallery")]
q_faces = features.faces.subset(features.rows(ds.query_roles)).thresholded(settings.det_threshold)
g_faces = features.faces.subset(features.rows("gallery")).thresholded(settings.det_threshold)
fig = visualise.show_enriched_examples(
    enriched.samples, queries["path"].tolist(), gallery["path"].tolist(), n=8,
    query_boxes=visualise.visible_boxes(q_faces.has_face, q_faces.bbox),
    gallery_boxes=visualise.visible_boxes(g_faces.has_face, g_faces.bbox))
fig.savefig(out_dir / "enriched_examples.png", dpi=80)'''),
    code('''path = out_dir / "enrichment.csv"
enriched.samples.to_csv(path, index=False)
print(f"saved {len(enriched.samples)} enriched samples to {path.relative_to(out_dir.parent.parent)}")'''),
]

NB["infer"] = colab("ReFace: inference and evaluation", """
Step 2 of ReFace: rank the gallery for every query with

* **ReID only** (`alpha = 1`), **face only** (`alpha = 0`),
* **fused**: `alpha * d_reid + (1 - alpha) * d_face`,
* **fused + enriched**: the same with the enriched gallery (and, separately, with each
  query's own enriched copy left out, to show how much of the gain is transductive),

and evaluate in every mode the dataset defines (standard / clothes-changing / same-clothes;
PRCC's two query sets; per-tracklet accuracy for video). The table and the ranking
artefacts are written to `results/<dataset>/`.
""") + [
    params(),
    code(SETUP),
    code(FEATURES),
    code('''enriched = pipeline.run_enrichment(ds, features, settings)
evaluation = pipeline.evaluate(ds, features, enriched, settings, progress=False)
columns = [c for c in ("query_set", "config", "mode", "top1", "top5", "top10", "mAP", "evaluated") if c in evaluation.table]'''),
    md("Results (top-k and mAP in %):"),
    code(CHECK + '''print(evaluation.table[columns].round(1).to_string(index=False))'''),
    md("The clothes-changing setting next to the paper's numbers (the paper's need the real dataset and the official checkpoints):"),
    code(CHECK + '''comparison = pipeline.paper_table(settings.dataset, evaluation)
print(comparison.round(1).to_string(index=False))'''),
    code('''written = pipeline.save_results(evaluation, out_dir, enrichment=enriched)
print("wrote", ", ".join(p.name for p in written), "to", out_dir)'''),
]

NB["visualise"] = colab("ReFace: look at the results", """
Retrieval results as pictures: for a few clothes-changing queries, the top-k gallery
images (green: right person, red: wrong; yellow: the detected face; **E**: the distance
came from an enriched sample), the CMC curves, how top-1 and mAP depend on `alpha`, and how
the enrichment threshold trades enriched samples for precision. With a live kernel, the
browser at the end updates the picture as you move the sliders.
""") + [
    params('''num_queries = 4            # queries shown in the retrieval figure
k = 8                      # gallery images shown per query'''),
    code(SETUP),
    code(FEATURES),
    code('''import numpy as np
import matplotlib.pyplot as plt

from reface_utils import visualise

enriched = pipeline.run_enrichment(ds, features, settings)
evaluation = pipeline.evaluate(ds, features, enriched, settings, progress=False)
role = ds.query_roles[-1]  # PRCC: the clothes-changing set (camera C)
query = features.images.iloc[features.rows(role)].reset_index(drop=True)
gallery = features.images.iloc[features.rows("gallery")].reset_index(drop=True)
q_faces = features.faces.subset(features.rows(role)).thresholded(settings.det_threshold)
g_faces = features.faces.subset(features.rows("gallery")).thresholded(settings.det_threshold)
q_boxes = visualise.visible_boxes(q_faces.has_face, q_faces.bbox)
g_boxes = visualise.visible_boxes(g_faces.has_face, g_faces.bbox)'''),
    md("### Retrieval: fused + enriched, clothes-changing queries"),
    code('''if ds.is_video:
    print("video dataset: see the per-tracklet table in infer.ipynb")
else:
    result = evaluation.retrieval[role]
    config = "fused+enriched" if "fused+enriched" in result.topk else "fused"
    # clothes-changing queries: no gallery image of the same person in the same clothes
    same_clothes = query.apply(lambda r: ((gallery.pid == r.pid) & (gallery.clothes_id == r.clothes_id)).any(), axis=1)
    chosen = np.flatnonzero(~same_clothes.to_numpy())[:num_queries]
    ranked = result.topk[config][chosen, :k]
    correct = gallery["pid"].to_numpy()[np.minimum(ranked, len(gallery) - 1)] == query["pid"].to_numpy()[chosen, None]
    score = pipeline.query_scorer(ds, features, enriched, settings, role)
    via = np.stack([score(int(q), settings.alpha, True)[1][ranked[i]] for i, q in enumerate(chosen)])
    fig = visualise.show_retrieval(query["path"].to_numpy()[chosen], gallery["path"].tolist(), ranked, correct,
                                   query_boxes=q_boxes[chosen], gallery_boxes=g_boxes, via_enriched=via,
                                   query_titles=[f"query {q} (pid {p})" for q, p in zip(chosen, query.pid.to_numpy()[chosen])],
                                   suptitle=f"{settings.dataset}: {config}, alpha={settings.alpha}")
    fig.savefig(out_dir / "retrieval.png", dpi=80)'''),
    md("### CMC curves"),
    code('''if not ds.is_video:
    mode = "CC" if "CC" in ds.eval_modes else "standard"
    cmcs = {config: res.cmc for (config, m), res in evaluation.retrieval[role].results.items() if m == mode}
    fig = visualise.plot_cmc(cmcs, title=f"{settings.dataset} {role} ({mode})")
    fig.savefig(out_dir / "cmc.png", dpi=80)'''),
    md("### The fusion weight alpha and the enrichment threshold"),
    code('''sweep = pipeline.alpha_sweep(ds, features, enriched, settings) if not ds.is_video else None
if sweep is not None:
    fig = visualise.plot_alpha_sweep(sweep, title=f"{settings.dataset}: fusion weight")
    fig.savefig(out_dir / "alpha_sweep.png", dpi=80)
thresholds = pipeline.threshold_sweep(ds, features, settings)
fig = visualise.plot_threshold_sweep(thresholds, title=f"{settings.dataset}: enrichment threshold")
fig.savefig(out_dir / "threshold_sweep.png", dpi=80)'''),
    md("### Interactive browser (needs a live kernel)\nPick a query, move alpha, switch the enrichment on and off."),
    code('''if not ds.is_video:
    browser = visualise.RetrievalBrowser(
        pipeline.query_scorer(ds, features, enriched, settings, role),
        lambda q, idx: gallery["pid"].to_numpy()[idx] == query["pid"].iloc[q],
        query["path"].tolist(), gallery["path"].tolist(), query_boxes=q_boxes,
        gallery_boxes=g_boxes, alpha=settings.alpha, k=k)
    plt.close(browser.figure)
    display(browser.widget)'''),
]

NB["eval"] = colab("ReFace: the whole pipeline for one dataset", """
One click: **download** (models, dataset check) -> **enrich_gallery** -> **infer** ->
**visualise**, each run with papermill on the parameters below; the executed notebooks
are kept in `results/<dataset>/notebooks/`. Ends with the results table and a retrieval
figure. From a shell:

```
papermill notebooks/eval.ipynb -p dataset ltcc -p data_root /data/LTCC_ReID
```
""") + [
    params(),
    code('''import papermill as pm
from IPython.display import Image, display

from reface_utils import pipeline

parameters = dict(
    dataset=dataset, data_root=data_root, reid_model=reid_model, reid_checkpoint=reid_checkpoint,
    face_model=face_model, alpha=alpha, det_threshold=det_threshold, sim_threshold=sim_threshold,
    rank_diff=rank_diff, clothes_changing=clothes_changing, enrichment=enrichment, device=device,
    batch_size=batch_size, results_root=results_root)
settings = pipeline.settings_for(**parameters)  # checks every value
root = pipeline.project_root()
out_dir = settings.results_dir'''),
    code('''(out_dir / "notebooks").mkdir(exist_ok=True)
for step in ("download", "enrich_gallery", "infer", "visualise"):
    print(f"running {step}.ipynb ...")
    pm.execute_notebook(root / "notebooks" / f"{step}.ipynb", out_dir / "notebooks" / f"{step}.ipynb",
                        parameters=parameters, cwd=str(root), progress_bar=False)'''),
    md("Results (top-k and mAP in %), and the clothes-changing setting next to the paper:"),
    code(CHECK + '''import pandas as pd

table = pd.read_csv(out_dir / "results.csv")
columns = [c for c in ("query_set", "config", "mode", "top1", "top5", "mAP") if c in table]
print(table[columns].round(1).to_string(index=False))'''),
    code('''figure = out_dir / "retrieval.png"
if figure.exists():
    display(Image(filename=str(figure)))'''),
]


def build() -> None:
    NOTEBOOKS.mkdir(exist_ok=True)
    for name, cells in NB.items():
        nb = nbformat.v4.new_notebook()
        nb.cells = cells
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"{name}-{i:02d}"  # stable ids: no churn in diffs
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nb.metadata["colab"] = {"provenance": []}
        nbformat.validate(nb)
        nbformat.write(nb, NOTEBOOKS / f"{name}.ipynb")
        print("wrote", NOTEBOOKS / f"{name}.ipynb")


if __name__ == "__main__":
    build()
