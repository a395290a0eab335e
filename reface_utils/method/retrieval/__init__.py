"""The post-feature stage, block-wise: distances, enrichment, fusion and metrics.

Given ReID features, face embeddings and labels of a query and a gallery set, and
optionally the enriched samples of ``enrich.py``, :func:`run_retrieval` evaluates several
configurations (ReID only, face only, fused, fused + enriched, ...) in one pass over
blocks of queries. Per block, the ReID and face distances are computed once (float32
matrix products into reused buffers) and every configuration is derived from them and fed
to a :class:`~reface_utils.method.metrics.MetricAccumulator`. No Q x G matrix, float64 or
otherwise, and no argsort of one, is ever held: at LaST scale (10,176 x 125,353, 4096-d)
the stage runs in a few hundred MB beyond the features themselves.

The pass is three steps, usable apart (e.g. to run blocks as remote tasks):
:func:`plan_retrieval` (checks, prepares what all blocks share), :func:`score_block` (a
pure function of the plan and one :class:`QueryBlock`, returning a picklable
:class:`BlockScores`) and :func:`merge_blocks` (exact: same bits in any block order).
``device`` picks numpy on the CPU or torch (CUDA, or the CPU for tests); "auto" takes
CUDA when torch sees one.

Modules (each imports only those listed before it; none imports this package back):

* ``inputs.py``: ``FeatureSet``, ``EnrichedGallery``, ``RetrievalConfig``,
  ``default_configs`` -- the inputs, each checked on construction;
* ``contract.py``: the plan (and ``PlanOptions``, its options that entry points pass on),
  the blocks, the merge, ``Workspace``, ``PhaseClock``, ``resolve_device``, ``top_k`` --
  what every backend reads and returns;
* ``numpy_backend.py``, ``torch_backend.py``: the arrays and primitive operations of each
  device (products, face distances, gathers, ranking);
* ``blockstep.py``: the block step written once over a backend -- the enrichment variants
  and fusion (``fusion.fuse_into``, ``EnrichmentLayout.lowest``) for both;
* ``run.py``: :func:`score_block` (picks the backend; torch is imported only for a torch
  device) and :func:`run_retrieval`.

Enrichment, two formulations, both in the reference code (read for facts):

* ``"min"`` (GEFF, the later README numbers): the enriched samples are kept apart from the
  gallery (``enriched_gallery`` folder); ``Scripts/inference.py::apply_enriched_gallery``
  lowers the ReID distance of each gallery image to the smallest distance of the samples
  attached to it, and only then fuses with the face distances (which are not enriched).
  Evaluation sees the original gallery only, so the CC rule on camera -1 never fires.
* ``"append"`` (ReFace's first release, commit 43cc526): the enriched samples are copied
  into the test gallery as new images with the predicted identity, a camera id that no
  real camera has (LTCC ``c0`` -> camid -1) and a clothes label of their own. They are
  ranked like any gallery image (ReID and face distances), and in CC mode a query whose
  only good matches are such samples is skipped (GEFF's camid -1 rule). Here they are
  appended as gallery columns G..G+E-1 with camid -1 and a clothes id no query has.

In both, a query that was enriched finds its own copy (distance -1 in ReID, 0 in face)
attached to its face match; ``exclude_self=True`` leaves that copy out ("min": ignored in
the minimum; "append": removed from that query's ranking), to show how much of the gain
is transductive.
"""
from __future__ import annotations

from .contract import (DEVICES, BlockScores, PhaseClock, PlanOptions, PlanOptionsWithDevice, QueryBlock, RetrievalPlan,
                       RetrievalResult, Workspace, merge_blocks, plan_retrieval, query_blocks, resolve_device, top_k)
from .inputs import ENRICHMENT_KINDS, EnrichedGallery, FeatureSet, RetrievalConfig, default_configs
from .run import run_retrieval, score_block

__all__ = [
    "BlockScores",
    "QueryBlock",
    "RetrievalPlan",
    "Workspace",
    "merge_blocks",
    "plan_retrieval",
    "query_blocks",
    "resolve_device",
    "score_block",
    "FeatureSet",
    "EnrichedGallery",
    "RetrievalConfig",
    "RetrievalResult",
    "default_configs",
    "run_retrieval",
    "top_k",
    "PhaseClock",
    "DEVICES",
    "ENRICHMENT_KINDS",
    "PlanOptions",
    "PlanOptionsWithDevice",
]
