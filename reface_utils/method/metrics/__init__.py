"""CMC and mAP for (clothes-changing) person re-identification, exact and block-wise.

The numbers are those of Simple-CCReID's ``tools/eval_metrics.py`` (``evaluate`` for
``mode="standard"``, ``evaluate_with_clothes`` for ``"CC"``/``"SC"``) with GEFF's addition
in CC mode (see docs/METHOD.md section 5):

* For a query, gallery entries of the same identity are *good* or *junk*; junk entries are
  removed from the ranking before CMC and AP are read off it.

  ========  =====================================  =========================================
  mode      good                                   junk
  ========  =====================================  =========================================
  standard  same pid, other camera                 same pid, same camera
  CC        same pid, other camera, other clothes  same pid and (same camera or same clothes)
  SC        same pid, other camera, same clothes   same pid and (same camera or other clothes)
  ========  =====================================  =========================================

* A query without any good match is skipped. In CC mode (GEFF) a query whose good matches
  all carry camera id ``-1`` (GEFF's enriched samples) is skipped too.
* AP = mean over the good matches i (in ranking order) of (i + 1) / (rank_i + 1), rank_i
  the 0-based position of good match i among the non-junk entries; CMC[r] = fraction of
  evaluated queries whose first good match is within the first r + 1 non-junk entries.

Ties. The reference sorts each row with numpy's default (unstable) quicksort, so tied
distances come out in an unspecified order. Here ties are broken by gallery index (the
order a stable sort gives), so the same input always gives the same numbers; on inputs
without ties both agree to rounding (1e-9). ``-0.0`` and ``0.0`` are equal, as in numpy.

NaN distances are rejected (``ValueError``): the reference silently ranks them last.

If no query is evaluated, the metrics are undefined: ``cmc`` is all NaN, ``mAP`` and every
``top(k)`` NaN, ``num_evaluated`` 0 (the reference's ``evaluate_with_clothes`` returns zeros,
which read as "every query failed"; its ``evaluate`` divides by zero).

Modules (each imports only those listed before it; none imports this package back):

* ``labels.py``: ``MODES``, ``ENRICHED_CAMID``, :class:`EvalLabels` (a split's labels,
  checked once);
* ``results.py``: :class:`BlockMetrics` (a block's per-query state), :class:`EvalResult`;
* ``rank_counts.py``: the rank-counting kernels (how it stays fast and small), ``thread_pool``;
* ``accumulator.py``: :class:`MetricAccumulator` (block-wise, the good / junk rules) and
  :func:`evaluate` (a whole matrix).
"""
from __future__ import annotations

from .accumulator import MetricAccumulator, evaluate
from .labels import ENRICHED_CAMID, MODES, EvalLabels
from .rank_counts import thread_pool
from .results import BlockMetrics, EvalResult

__all__ = [
    "MODES",
    "ENRICHED_CAMID",
    "BlockMetrics",
    "EvalLabels",
    "EvalResult",
    "MetricAccumulator",
    "evaluate",
    "thread_pool",
]
