"""The parameters of k-reciprocal re-ranking: the defaults K1, K2, LAMBDA, their one check,
and the chunk size that bounds the memory of every vectorised step of the package."""
from __future__ import annotations

from ...core import checks

__all__ = ["K1", "K2", "LAMBDA"]

K1, K2, LAMBDA = 20, 6, 0.3  # the paper's (and torchreid's / fast-reid's) defaults

_CHUNK = 1 << 22  # elements per chunk of the elementwise / selection work


def _params(k1, k2, lambda_value) -> tuple[int, int, float]:
    return (checks.integer("k1", k1, 1), checks.integer("k2", k2, 1),
            checks.number("lambda_value", lambda_value, 0.0, 1.0))
