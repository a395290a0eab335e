"""ReFace: clothes-changing person re-identification with face features.

Gallery enrichment with confident face matches, and fusion of ReID and face distances
(Arkushin et al., "ReFace"/"GEFF", arXiv 2211.13807). The package is in layers, each
importing only from the layers listed before it (docs/ARCHITECTURE.md)::

    core/    paths, images, cache, checkpoints, runtime, progress, video I/O
    data/    dataset parsers, the generated demo dataset and demo video
    method/  feature containers, enrichment, fusion, retrieval, metrics, tracklet scores
    models/  face backends, ReID backends (reface_utils.models.reid)
    apps/    the notebook pipeline, custom-video identification, tracking, figures, Ray engine

Submodules are imported on use (``from reface_utils.apps import pipeline``) so that
importing the package stays cheap (no torch, no OpenCV). The shell command is ``reface``
(``reface_utils.apps.cli``).
"""
from __future__ import annotations

__version__ = "0.1.0"
