"""Test-wide settings: a hermetic REFACE_HOME (never the user's cache), headless plotting."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]
# Persistent between runs on one machine (fast re-runs), separate from ~/.cache/reface,
# and ignored by git. Tests that need an empty home use tmp_path instead.
os.environ.setdefault("REFACE_HOME", str(REPO / ".cache" / "reface-test"))
