"""Your dataset as a CSV, registered as ``manifest``: its spec (the reader is
:mod:`reface_utils.data.manifest`)."""
from __future__ import annotations

import os

from .common import Dataset
from .registry import register_dataset
from .spec import DatasetSpec

NAME = "manifest"


def load_manifest_dataset(root: str | os.PathLike | None, seed: int) -> Dataset:
    from ..manifest import load_manifest_root  # local import: data/manifest.py builds on this package
    return load_manifest_root(root, seed)


SPEC = DatasetSpec(
    name=NAME,
    loader=load_manifest_dataset,
    title="your CSV (manifest)",
    layout=("<root> is a CSV (or a folder holding manifest.csv) with columns path,pid,camid,role"
            "[,clothes_id,track,frame], one row per image (see reface_utils.data.manifest)"),
    # no enrichment rules: decided from the data (the clothes filter where every image has
    # a clothes label, a vote per tracklet for video), unless the run's parameters say
)
SPECS = (SPEC,)
register_dataset(SPEC)
