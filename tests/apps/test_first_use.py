"""First use, as a user meets it: shared results folders, a full disk, tiny images.

Each test starts from what a user has (a umask, a small disk, a folder of images), with no
fixture doing the first step for the code.
"""
from __future__ import annotations

import json
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from reface_utils.apps import pipeline
from reface_utils.core.image_sizes import MIN_PERSON_SIDE, image_sizes, too_small
from reface_utils.data.datasets import load_dataset

REPO = Path(__file__).resolve().parents[2]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------ permissions (umask)
def test_shared_results_are_readable_by_the_group(tmp_path):
    """save_results under umask 022: every file another user reads is 0644 (was 0600)."""
    code = f"""
import os
os.umask(0o022)
from reface_utils.apps import pipeline
from reface_utils.data.datasets import load_dataset
settings = pipeline.settings_for(dataset="demo", results_root={str(tmp_path)!r})
dataset = load_dataset("demo")
features = pipeline.compute_features(dataset, settings, progress=False)
enrichment = pipeline.run_enrichment(dataset, features, settings)
pipeline.save_enrichment(enrichment, settings.results_dir, dataset, settings)
pipeline.save_results(pipeline.evaluate(dataset, features, enrichment, settings, progress=False),
                      settings.results_dir, enrichment=enrichment, dataset=dataset)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    written = sorted((tmp_path / "demo").iterdir())
    assert {p.name for p in written} >= {"results.csv", "results.json", "enrichment.csv", "cmc.npz"}
    assert {p.name: oct(_mode(p)) for p in written} == {p.name: oct(0o644) for p in written}


# ------------------------------------------------------------------ a full disk (small_disk: conftest.py)
def test_a_full_disk_never_leaves_a_corrupt_executed_notebook(small_disk, tmp_path):
    """The eval chain with its results on a nearly full disk: it fails, says which file,
    and every executed notebook it leaves is a whole notebook (the log of what failed)."""
    results = small_disk / "results"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (5 * 2**20 - 600 * 2**10))  # leave ~600 KB: room for some steps, not all
    run = subprocess.run(
        [sys.executable, "-m", "papermill", str(REPO / "notebooks" / "eval.ipynb"), str(tmp_path / "eval.ipynb"),
         "-p", "dataset", "demo", "-p", "results_root", str(results), "--cwd", str(REPO), "--no-progress-bar"],
        capture_output=True, text=True, timeout=600)
    assert run.returncode != 0
    assert "No space left on device while writing " + str(results) in run.stderr
    logs = list((results / "demo" / "notebooks").glob("*")) if (results / "demo" / "notebooks").exists() else []
    for log in logs:
        assert not log.name.startswith("."), f"a temporary notebook was left: {log}"
        assert "cells" in json.loads(log.read_text()), log  # valid JSON: a whole notebook


# ------------------------------------------------------------------ tiny images
def test_image_sizes_read_the_headers_and_flag_tiny_ones(tmp_path):
    paths = []
    for name, (h, w) in {"person.png": (128, 64), "dot.png": (1, 1), "strip.png": (200, MIN_PERSON_SIDE - 1),
                         "edge.png": (MIN_PERSON_SIDE, MIN_PERSON_SIDE)}.items():
        cv2.imwrite(str(tmp_path / name), np.full((h, w, 3), 90, np.uint8))
        paths.append(str(tmp_path / name))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    paths.append(str(tmp_path / "broken.png"))
    sizes = image_sizes(paths, )
    assert sizes.tolist() == [[64, 128], [1, 1], [MIN_PERSON_SIDE - 1, 200], [MIN_PERSON_SIDE, MIN_PERSON_SIDE], [0, 0]]
    assert too_small(sizes).tolist() == [False, True, True, False, False]  # unreadable is another matter


def _ltcc_tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, names in {"test": ["001_1_c1_000001.png", "002_1_c1_000001.png", "001_2_c2_000002.png"],
                         "query": ["001_3_c3_000003.png", "002_2_c3_000002.png"]}.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for name in names:
            cv2.imwrite(str(root / split / name), rng.integers(0, 255, (128, 64, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "query" / "002_2_c3_000009.png"), np.full((1, 1, 3), 200, np.uint8))  # a 1x1 "person"
    return root


def test_tiny_images_are_reported_and_listed_in_results_json(tmp_path):
    root = _ltcc_tree(tmp_path / f"ltcc-{uuid.uuid4().hex[:6]}")
    settings = pipeline.settings_for(dataset="ltcc", data_root=str(root), reid_model="mobilenetv2-imagenet",
                                     face_model="sface", results_root=str(tmp_path / "results"))
    dataset = load_dataset("ltcc", root)
    with pytest.warns(pipeline.TinyImagesWarning, match=rf"1 image\(s\) are smaller than {MIN_PERSON_SIDE} px"):
        features = pipeline.compute_features(dataset, settings, progress=False)
    evaluation = pipeline.evaluate(dataset, features, None, settings, progress=False)
    pipeline.save_results(evaluation, settings.results_dir, dataset=dataset)
    saved = json.loads((settings.results_dir / "results.json").read_text())
    tiny = saved["too_small_images"]
    assert tiny["count"] == 1 and tiny["paths"][0].endswith("002_2_c3_000009.png")
    assert tiny["min_side"] == MIN_PERSON_SIDE and "ranked" in tiny["note"]
    # ranked like every other image (docs/METHOD.md): both queries of pid 2 are evaluated
    reid = evaluation.table[(evaluation.table["config"] == "reid") & (evaluation.table["mode"] == "standard")]
    assert int(reid["evaluated"].iloc[0]) == 3
