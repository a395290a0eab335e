"""What an evaluation reads besides the distances: the modes, GEFF's camera id of enriched
samples, and the labels of a split (:class:`EvalLabels`: person, camera and clothes ids of
the queries and of the gallery, flattened and checked once, then passed as one value)."""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

__all__ = ["MODES", "ENRICHED_CAMID", "EvalLabels"]

MODES: tuple[str, ...] = ("standard", "CC", "SC")
# GEFF marks enriched samples with this camera id; in CC mode a query whose good
# matches all have it is skipped (GEFF ReIDModules/CAL/tools/eval_metrics.py).
ENRICHED_CAMID = -1


@dataclass(frozen=True, eq=False)
class EvalLabels:
    """The labels of one evaluation split (any dtype with equality and order: ints, names).

    q_pids, q_camids: (Q,) per query; g_pids, g_camids: (G,) per gallery entry;
    q_clothes_ids, g_clothes_ids: the clothes ids, needed by the "CC" and "SC" modes only
    (checked when both are given). Stored as 1-D numpy arrays; lengths are checked here, so
    the functions that take an EvalLabels (``MetricAccumulator``) need not check them again.
    """

    q_pids: np.ndarray
    g_pids: np.ndarray
    q_camids: np.ndarray
    g_camids: np.ndarray
    q_clothes_ids: np.ndarray | None = None
    g_clothes_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                object.__setattr__(self, f.name, np.asarray(value).ravel())  # frozen: set once, here
        _check_len("q_camids", self.q_camids, self.num_query)
        _check_len("g_camids", self.g_camids, self.num_gallery)
        if self.has_clothes:  # one side alone is never read (the modes that need it refuse it)
            _check_len("q_clothes_ids", self.q_clothes_ids, self.num_query)
            _check_len("g_clothes_ids", self.g_clothes_ids, self.num_gallery)

    @property
    def num_query(self) -> int:
        return len(self.q_pids)

    @property
    def num_gallery(self) -> int:
        return len(self.g_pids)

    @property
    def has_clothes(self) -> bool:
        """Both clothes ids are given (the "CC" and "SC" modes need them)."""
        return self.q_clothes_ids is not None and self.g_clothes_ids is not None


def _check_len(name: str, arr: np.ndarray, n: int) -> None:
    if len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} entries, expected {n}")
