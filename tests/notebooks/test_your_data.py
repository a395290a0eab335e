"""Your dataset, your model, your features: each route through papermill, in fresh kernels.

Every run here starts from what a user has (a CSV, a plugin file, a features file) and
goes through the notebooks as README's "Your own data" shows; each must give the table of
the built-in route it stands for (the demo with the offline models).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reface_utils.apps import pipeline
from reface_utils.data.datasets import load_dataset
from reface_utils.data.demo_layouts import make_layout_dataset
from reface_utils.method.feature_files import save_features

REPO = Path(__file__).resolve().parents[2]
OFFLINE = ["-p", "face_model", "sface", "-p", "reid_model", "mobilenetv2-imagenet"]
KEYS = ["query_set", "config", "mode"]
METRICS = ["top1", "top5", "top10", "top20", "mAP"]
pytestmark = pytest.mark.timeout(900)


def papermill(notebook: str, out: Path, *parameters: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "papermill", str(REPO / "notebooks" / notebook), str(out / notebook),
                           "-p", "results_root", str(out), *parameters, "--cwd", str(REPO), "--no-progress-bar"],
                          capture_output=True, text=True, timeout=800)


def same_table(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got[KEYS].equals(want[KEYS])
    for col in METRICS:
        np.testing.assert_allclose(got[col], want[col], atol=1e-9, err_msg=col)
    assert got["evaluated"].tolist() == want["evaluated"].tolist()


def test_a_manifest_of_the_demos_images_gives_the_demos_table(eval_runs, tmp_path):
    csv = make_layout_dataset("manifest")
    run = papermill("infer.ipynb", tmp_path, "-p", "dataset", "manifest", "-p", "data_root", str(csv), *OFFLINE)
    assert run.returncode == 0, run.stderr[-4000:]
    same_table(pd.read_csv(tmp_path / "manifest" / "results.csv"), pd.read_csv(eval_runs("demo") / "results.csv"))


PLUGIN = '''
from reface_utils.data.datasets import load_dataset, register_dataset
from reface_utils.models.face import load_face_model, register_face_model
from reface_utils.models.reid import load_reid_model, register_reid_model

# a dataset of mine (read from a manifest), with its own enrichment rules
register_dataset("mine", lambda root, seed: load_dataset("manifest", root),
                 enrichment={"clothes_changing": True, "vote_by_track": False, "why": "my rules"})
# a face model of mine with its default thresholds (here: the offline model under my name)
register_face_model("myface", lambda **options: load_face_model("sface", **options),
                    thresholds={"det_threshold": 0.6, "sim_threshold": 0.45})
register_reid_model("myreid", lambda checkpoint=None, device="auto", **options:
                    load_reid_model("mobilenetv2-imagenet", checkpoint=checkpoint, device=device, **options))
'''


def test_a_plugin_file_reaches_every_notebook_of_the_chain(eval_runs, tmp_path):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(PLUGIN)
    csv = make_layout_dataset("manifest")
    run = papermill("eval.ipynb", tmp_path, "-p", "plugins", str(plugin), "-p", "dataset", "mine",
                    "-p", "data_root", str(csv), "-p", "face_model", "myface", "-p", "reid_model", "myreid")
    assert run.returncode == 0, run.stderr[-4000:]
    out = tmp_path / "mine"
    for step in ("download", "enrich_gallery", "infer", "visualise"):
        assert (out / "notebooks" / f"{step}.ipynb").is_file(), step
    same_table(pd.read_csv(out / "results.csv"), pd.read_csv(eval_runs("demo") / "results.csv"))


def test_without_the_plugin_the_error_names_what_is_registered_and_how_to_add_one(tmp_path):
    with pytest.raises(ValueError, match=r"unknown dataset 'nothere'; registered: .*manifest.*plugins"):
        pipeline.settings_for(dataset="nothere")
    with pytest.raises(ValueError, match=r"unknown face model 'nope'.*register_face_model.*plugins"):
        pipeline.settings_for(face_model="nope")


@pytest.fixture(scope="module")
def demo_features():
    settings = pipeline.settings_for(dataset="demo")
    dataset = load_dataset("demo")
    return dataset, pipeline.compute_features(dataset, settings, progress=False)


def test_a_features_file_gives_the_table_of_the_model_it_came_from(eval_runs, demo_features, tmp_path):
    dataset, features = demo_features
    rng = np.random.default_rng(0)
    order = rng.permutation(len(features.images))                # any row order
    raw = features.reid[order] * rng.uniform(0.5, 30.0, (len(order), 1)).astype(np.float32)  # unnormalised
    paths = [str(Path(p).relative_to(dataset.root)) for p in features.images["path"].to_numpy()[order]]
    save_features(tmp_path / "feats.npz", paths, raw)
    run = papermill("infer.ipynb", tmp_path, "-p", "reid_model", "features", "-p", "reid_features",
                    str(tmp_path / "feats.npz"), "-p", "face_model", "sface")
    assert run.returncode == 0, run.stderr[-4000:]
    same_table(pd.read_csv(tmp_path / "demo" / "results.csv"), pd.read_csv(eval_runs("demo") / "results.csv"))
    shown = (tmp_path / "infer.ipynb").read_text()
    assert "your features (feats.npz) alone" in shown and "your features (feats.npz) + ReFace" in shown


def test_a_features_file_missing_one_image_fails_before_any_work_and_names_it(demo_features, tmp_path):
    dataset, features = demo_features
    paths = features.images["path"].tolist()
    save_features(tmp_path / "short.npz", paths[1:], features.reid[1:])
    run = papermill("infer.ipynb", tmp_path, "-p", "reid_model", "features", "-p", "reid_features",
                    str(tmp_path / "short.npz"), "-p", "face_model", "sface")
    assert run.returncode != 0
    assert Path(paths[0]).name in run.stderr and "short.npz" in run.stderr
    assert not (tmp_path / "demo" / "results.csv").exists()
