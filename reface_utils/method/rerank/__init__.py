"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), exact, and memory-bounded for LaST.

The algorithm, as the classic code (the ``re_ranking`` function torchreid and fast-reid
ship) runs it on the (Q+G) x (Q+G) matrix of all query and gallery images:

1. original distance: the three blocks (query-query, query-gallery, gallery-gallery)
   assembled, squared (the classic's ``np.power(dist, 2)``), each column divided by its
   maximum, then transposed: ``orig[i, j] = dist[j, i]**2 / max_m dist[m, i]**2``;
2. ranks: every image's neighbours by ``orig`` (itself first);
3. k-reciprocal set R(i): the j among i's k1 + 1 nearest that have i among their k1 + 1
   nearest; expanded by R_half(c) (the same with round(k1 / 2) + 1 neighbours) of every
   c in R(i) that shares more than 2/3 of its members with R(i);
4. V[i, j] = exp(-orig[i, j]) over the expanded set, normalised to sum 1;
5. local query expansion: V[i] becomes the mean of V over i's k2 nearest (k2 = 1: none);
6. Jaccard distance 1 - s / (2 - s), s = sum_k min(V[q, k], V[g, k]) (an inverted index
   over the non-zero entries; only query rows x gallery columns are needed);
7. final = jaccard * (1 - lambda) + orig * lambda, the query x gallery part.

:func:`k_reciprocal_rerank` does exactly that on given distance matrices (the classic
signature; dense, vectorised). :func:`rerank_blocks` runs the same algorithm from
L2-normalised features (distance 1 - cos) in O(N k1 + block x N) memory. Steps 3-6 are
shared by both and work on neighbour lists and sparse matrices, never on N x N arrays.
At LaST (10,176 x 125,353 images, 4,096-d) the classic's matrix alone is 73 GB; the
evaluation peaks at 0.8 GiB beyond the features (BENCHMARKS.md, "Re-ranking").
:func:`rerank_retrieval` evaluates re-ranked configurations like
:func:`~reface_utils.method.retrieval.run_retrieval` does the others (same tables, CC/SC
filtering after re-ranking); see docs/METHOD.md, "k-reciprocal re-ranking (opt-in)", for
how the fused + enriched configuration is re-ranked.

Modules (each imports only those listed before it; none imports this package back):

* ``params.py``: the defaults K1, K2, LAMBDA and their check;
* ``encoding.py``: steps 3-6 (expanded k-reciprocal sets, V, query expansion, Jaccard);
* ``dense.py``: :func:`k_reciprocal_rerank`, the classic on given matrices;
* ``neighbours.py``: running k-nearest lists fed by distance blocks (numpy or torch);
* ``products.py``: r = -cos blocks and pair distances, in each enrichment variant;
* ``graph.py``: the neighbour pass, every image's nearest from one pass of products;
* ``blockwise.py``: :func:`rerank_blocks`, :func:`k_reciprocal_rerank_features`;
* ``evaluation.py``: :func:`rerank_configs`, :func:`rerank_retrieval`,
  :func:`combine_results`.

Numbers: both implementations agree with a loop-by-loop implementation of the algorithm
to 1e-5 (tests/method/test_rerank.py). Unlike the classic code, V and the Jaccard sums are
kept in float32 / float64, not float16, and ties in the ranks go to the lower index (the
classic's quicksort leaves them unspecified). Output is float32.
"""
from __future__ import annotations

from .blockwise import k_reciprocal_rerank_features, rerank_blocks
from .dense import k_reciprocal_rerank
from .evaluation import combine_results, rerank_configs, rerank_retrieval
from .params import K1, K2, LAMBDA

__all__ = [
    "K1",
    "K2",
    "LAMBDA",
    "k_reciprocal_rerank",
    "rerank_blocks",
    "k_reciprocal_rerank_features",
    "rerank_configs",
    "rerank_retrieval",
    "combine_results",
]
