"""What scoring gives back: :class:`BlockMetrics`, the per-query state of a block of
queries (merged exactly, in any order, by ``MetricAccumulator.merge``), and
:class:`EvalResult`, the CMC and mAP of one mode over the whole query set."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = ["BlockMetrics", "EvalResult"]


@dataclass(frozen=True, eq=False)
class EvalResult:
    """Metrics of one evaluation mode.

    ``cmc[r]`` is the fraction of evaluated queries with a good match within the first
    ``r + 1`` non-junk gallery entries (ranks 1..G). ``first_good_rank[q]`` is the 0-based
    rank of query q's first good match among non-junk entries, -1 if q was skipped (for
    figures; not part of the reference output).
    """

    mode: str
    cmc: np.ndarray
    mAP: float
    num_evaluated: int
    num_skipped: int
    first_good_rank: np.ndarray | None = field(default=None, repr=False)

    @property
    def top1(self) -> float:
        return self.top(1)

    def top(self, k: int) -> float:
        """CMC at rank k (1-based); ranks beyond the gallery size read the last value."""
        if k < 1:
            raise ValueError(f"rank k must be >= 1, got {k}")
        if self.cmc.size == 0:
            return float("nan") if self.num_evaluated == 0 else 0.0
        return float(self.cmc[min(k, self.cmc.size) - 1])

    def as_dict(self, ranks: Sequence[int] = (1, 5, 10, 20)) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {"mode": self.mode}
        out.update({f"top{k}": self.top(k) for k in ranks})
        out.update(mAP=self.mAP, evaluated=self.num_evaluated, skipped=self.num_skipped)
        return out


@dataclass(frozen=True, eq=False)
class BlockMetrics:
    """The metric state of a block of queries, as :meth:`MetricAccumulator.score_block`
    returns it: picklable (numpy arrays only) and merged exactly, in any order, by
    :meth:`MetricAccumulator.merge`.

    rows: (b,) query indices. ap[mode]: (b,) float64 average precision (0 where skipped).
    first[mode]: (b,) int64 rank of the first good match among non-junk entries, -1 where
    the query is skipped.
    """

    rows: np.ndarray
    ap: dict[str, np.ndarray]
    first: dict[str, np.ndarray]
