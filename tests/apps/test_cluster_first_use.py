"""engine="ray" as a user first meets it: from a process where Ray was never started.

No fixture starts Ray here (tests/apps/test_cluster.py's fixture did, and hid that every first
``engine="ray"`` run failed: two threads both called ``ray.init``, and a Ray started from
the face thread died with it). Each test runs the user's command in a fresh process.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)


def _ray_processes() -> set[int]:
    """PIDs of Ray's node processes (GCS, raylet) on this machine."""
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if cmd.endswith((b"gcs_server", b"raylet")):
            found.add(int(pid))
    return found


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


def test_infer_notebook_with_ray_from_a_fresh_process(tmp_path):
    """infer.ipynb extracts features (face and ReID jobs side by side) and evaluates on Ray:
    the step that failed on every first run (the other steps start Ray the same way)."""
    before = _ray_processes()
    run = subprocess.run(
        [sys.executable, "-m", "papermill", str(REPO / "notebooks" / "infer.ipynb"), str(tmp_path / "infer.ipynb"),
         "-p", "dataset", "demo", "-p", "engine", "ray", "-p", "results_root", str(tmp_path),
         "--cwd", str(REPO), "--no-progress-bar"],
        env=_env(), capture_output=True, text=True, timeout=580)
    assert run.returncode == 0, run.stderr[-4000:]
    table = pd.read_csv(tmp_path / "demo" / "results.csv")
    assert {"reid", "fused"} <= set(table["config"]) and table["top1"].notna().all()
    # the kernel's Ray went with its kernel: no Ray processes are left behind
    assert _ray_processes() <= before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


JOIN = """
import ray
from reface_utils.apps import pipeline
from reface_utils.data.datasets import load_dataset
settings = pipeline.settings_for(dataset="demo", engine="ray")
dataset = load_dataset("demo")
features = pipeline.compute_features(dataset, settings, progress=False)
evaluation = pipeline.evaluate(dataset, features, pipeline.run_enrichment(dataset, features, settings),
                               settings, progress=False)
assert len(evaluation.table)
print("GCS", ray.get_runtime_context().gcs_address)
"""


def test_joins_a_running_cluster_through_ray_address(tmp_path):
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent))
    if ray_cli is None:
        pytest.skip("the ray command is not installed beside this Python")
    port = _free_port()
    # as docs/CLUSTER.md says: `ray start` turns token authentication on, drivers opt in
    env = _env(RAY_ADDRESS=f"127.0.0.1:{port}", RAY_AUTH_MODE="token")
    start = subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2",
                            "--include-dashboard=false", "--disable-usage-stats"],
                           env=_env(), capture_output=True, text=True, timeout=120)
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        run = subprocess.run([sys.executable, "-c", JOIN], env=env, capture_output=True, text=True,
                             timeout=400, cwd=REPO)
        assert run.returncode == 0, run.stderr[-4000:]
        assert run.stdout.strip().endswith(f":{port}")  # the driver joined that cluster, started none
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=_env(), capture_output=True, timeout=120)
