"""Benchmark of the Ray engine's retrieval (cluster.run_retrieval_ray) against the
in-process stage (retrieval.run_retrieval), on bench_retrieval.py's synthetic features.

A local Ray with ``--workers`` CPUs (2 on the reference VM) runs the query blocks as that
many tasks. Per scale, one process: the in-process stage, then the Ray stage in its two
settings, each timed once (the in-process stage twice, before and after; the faster counts):

- exact: tasks use this process's BLAS threads (the default; asserted bit-for-bit equal
  to the in-process table, CMC curves and first good ranks). With 2 tasks of 2 threads on
  2 cores it oversubscribes the machine.
- fast: one BLAS thread per task (``blas_threads=1``): the cores split between tasks
  instead of inside the matrix products; numbers equal to rounding.

Also timed: Ray's start-up, putting the gallery into the object store, one block of the
stage alone and one query alone (~ the per-task set-up), for the wall-time model in
docs/CLUSTER.md.

    python benchmarks/bench_cluster.py --scales last-q8        # LaST gallery, 1/8 of its queries
    python benchmarks/bench_cluster.py --scales last           # full LaST (minutes)
    python benchmarks/bench_cluster.py --scales "" --features  # demo ReID extraction only
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from bench_retrieval import MODES, SCALES, Scale, synthetic  # noqa: E402

from reface_utils.apps import cluster  # noqa: E402
from reface_utils.method.retrieval import (  # noqa: E402
    EnrichedGallery,
    QueryBlock,
    default_configs,
    plan_retrieval,
    query_blocks,
    run_retrieval,
    score_block,
)

LAST = SCALES["last"]
BENCH_SCALES = {
    "last": LAST,
    # the real LaST gallery (per-block cost and object-store size as at full scale), fewer queries
    "last-q8": Scale("LaST gallery, 1/8 of the queries", LAST.n_query // 8, LAST.n_gallery, LAST.n_pids,
                     None, LAST.outfits),
    "last-q4g4": Scale("LaST / 4 x LaST / 4", LAST.n_query // 4, LAST.n_gallery // 4, LAST.n_pids // 4,
                       None, LAST.outfits),
}


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def same(a, b) -> bool:
    if not a.table.equals(b.table):
        return False
    return all(np.array_equal(r.cmc, b.results[k].cmc) and r.mAP == b.results[k].mAP
               and np.array_equal(r.first_good_rank, b.results[k].first_good_rank) for k, r in a.results.items())


def run(key: str, workers: int) -> dict:
    import ray

    scale = BENCH_SCALES[key]
    query, gallery, table = synthetic(scale)
    enriched = EnrichedGallery.from_table(table, query, gallery)
    configs = default_configs(0.75, enrichment="min", exclude_self=False)  # ReID, face, fused, fused+enriched
    common = dict(modes=MODES, enriched=enriched)
    local, local_s = timed(run_retrieval, query, gallery, configs, progress=False, **common)
    # One block of the stage alone, and one query alone (~ the per-task set-up), through the
    # same public block contract the Ray tasks use.
    plan = plan_retrieval(query, gallery, configs, **common)
    first = next(query_blocks(plan, query))
    block = len(first)
    _, block_s = timed(score_block, plan, first)
    one = QueryBlock(first.rows[:1], first.reid[:1], first.camids[:1],
                     None if first.face is None else first.face[:1],
                     None if first.has_face is None else first.has_face[:1])
    _, setup_s = timed(score_block, plan, one)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    _, init_s = timed(ray.init, num_cpus=workers, include_dashboard=False, logging_level="ERROR",
                      log_to_driver=False)
    try:
        ref, put_s = timed(ray.put, gallery)
        del ref
        exact, exact_s = timed(cluster.run_retrieval_ray, query, gallery, configs, tasks=workers, progress=False,
                               **common)
        fast, fast_s = timed(cluster.run_retrieval_ray, query, gallery, configs, tasks=workers, blas_threads=1,
                             progress=False, **common)
    finally:
        ray.shutdown()
    _, again_s = timed(run_retrieval, query, gallery, configs, progress=False, **common)
    local_s = min(local_s, again_s)  # before and after Ray: the less disturbed by other jobs
    assert same(exact, local), "Ray (exact) differs from the in-process run"
    fast_diff = float(np.max(np.abs(fast.table[["top1", "mAP"]].to_numpy() - local.table[["top1", "mAP"]].to_numpy())))
    gallery_gib = (gallery.reid.nbytes + gallery.face.nbytes) / 2**30
    return {"scale": scale.name, "Q x G": f"{len(query):,} x {len(gallery):,}", "blocks": -(-len(query) // block),
            "block rows": block, "in-process s": round(local_s, 2), "one block s": round(block_s, 2), "one query s": round(setup_s, 2),
            "ray init s": round(init_s, 2), "put gallery s": round(put_s, 2), "gallery GiB": round(gallery_gib, 2),
            "ray exact s": round(exact_s, 2), "exact ratio": round(exact_s / local_s, 2), "exact identical": True,
            "ray fast s": round(fast_s, 2), "fast ratio": round(fast_s / local_s, 2),
            "fast max |diff|": fast_diff, "load": round(os.getloadavg()[0], 1)}


def features(workers: int, chunk_size: int) -> dict:
    """The demo's 333 images, MobileNetV2 ReID (cache off): in-process (this process's
    torch threads) vs ``workers`` Ray actors of one thread each, chunks of ``chunk_size``."""
    import ray
    import torch

    from reface_utils.data.datasets import load_dataset
    from reface_utils.models.reid import load_reid_model

    paths = load_dataset("demo").images["path"].tolist()
    model = load_reid_model("mobilenetv2-imagenet", device="cpu")
    local, local_s = timed(model.extract, paths, cache_dir=None, progress=False)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    _, init_s = timed(ray.init, num_cpus=workers, include_dashboard=False, logging_level="ERROR",
                      log_to_driver=False)
    try:
        spec = cluster.FeatureModelSpec("reid", "mobilenetv2-imagenet", {"device": "cpu"})
        (arrays, run_info), ray_s = timed(cluster.ray_cached_features, spec, paths, cache_dir=None,
                                          chunk_size=chunk_size, workers=workers, threads_per_worker=1,
                                          progress=False)
    finally:
        ray.shutdown()
    _, again_s = timed(model.extract, paths, cache_dir=None, progress=False)
    local_s = min(local_s, again_s)
    return {"images": len(paths), "chunks": run_info.chunks, "in-process s": round(local_s, 2),
            "in-process torch threads": torch.get_num_threads(), "ray init s": round(init_s, 2),
            "ray s (incl. actor start)": round(ray_s, 2), "ratio": round(ray_s / local_s, 2),
            "max |diff|": float(np.abs(arrays["features"] - local).max()), "load": round(os.getloadavg()[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="last-q8", help=f"comma-separated: {', '.join(BENCH_SCALES)}")
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray = tasks")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--features", action="store_true", help="also: demo ReID extraction on Ray")
    args = parser.parse_args()
    if args.features:
        print(pd.Series(features(args.workers, chunk_size=64), dtype=object).to_string())
    rows = [run(key, args.workers) for key in args.scales.split(",") if key]
    if rows:
        print(pd.DataFrame(rows).T.to_string(header=False))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
