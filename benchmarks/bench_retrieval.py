"""Benchmark of the post-feature stage (retrieval.run_retrieval) on synthetic features.

For each scale (METHOD.md section 8 sizes), in a fresh subprocess so that peak memory is
per scale: build synthetic ReID (4096-d) and face (512-d) features with identities,
cameras, clothes and enriched samples; run the whole stage (ReID + face distances, GEFF
min-enrichment, fusion alpha = 0.75, standard + CC + SC metrics) and read the peak RSS;
then, in the same process, time the bare Q x G x 4096 float32 matrix product (block-wise,
the stage's block size). Ratios reported, stage time over:

- ratio: the bare product timed once after the stage;
- paired ratio: the bare product and the stage timed over the same 8 query chunks, taking
  turns, so that other processes on a shared machine slow both alike (the headline);
- in-stage ratio: the stage's own Q x G x 4096 product (``run_retrieval(timings=...)``);
- CPU-time ratio: process CPU seconds (all threads) of the stage over the bare product.

Also: the notebook's five-configuration table in one pass, and
- PRCC, LTCC: the full-matrix computation (fusion functions on whole matrices +
  metrics.evaluate), asserted identical to the block-wise results;
- PRCC: a straightforward per-query loop implementation of the protocol (reference
  style: row-by-row distances, loops for enrichment and face conventions, full argsort,
  per-query in1d), timed, to show the speed-up.

    python benchmarks/bench_retrieval.py --scales prcc,ltcc,last
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reface_utils.fusion import apply_enrichment, face_distance, fuse, reid_distance  # noqa: E402
from reface_utils.metrics import evaluate  # noqa: E402
from reface_utils.retrieval import (  # noqa: E402
    EnrichedGallery,
    FeatureSet,
    RetrievalConfig,
    default_configs,
    run_retrieval,
)

MODES = ("standard", "CC", "SC")
ALPHA = 0.75
REID_DIM, FACE_DIM = 4096, 512


@dataclass(frozen=True)
class Scale:
    name: str
    n_query: int
    n_gallery: int
    n_pids: int
    n_cams: int | None  # None: every image its own camera (LaST)
    outfits: int        # clothes per identity
    clothes_labels: bool = True  # False: the test set has none, clothes id = pid (LaST)


SCALES = {
    # PRCC: queries B (3,873) and C (3,543) against gallery A, 71 test identities
    "prcc": Scale("PRCC", 3873 + 3543, 3384, 71, 3, 2),
    "ltcc": Scale("LTCC", 493, 7050, 75, 12, 4),
    "last": Scale("LaST", 10176, 125353, 5806, None, 3, clothes_labels=False),
}


def _features(rng, pids, clothes, centres, outfit_shift, noise, projection, chunk=8192) -> np.ndarray:
    """identity centre + clothes shift + noise in a low-dimensional latent space, mapped to
    the feature dimension by a fixed random projection (so that distractors are as close
    as in real embeddings, not orthogonal), L2-normalised; built in float32 chunks."""
    out = np.empty((len(pids), projection.shape[1]), np.float32)
    for s in range(0, len(pids), chunk):
        e = min(s + chunk, len(pids))
        latent = rng.standard_normal((e - s, projection.shape[0]), dtype=np.float32) * np.float32(noise)
        latent += centres[pids[s:e]]
        if outfit_shift is not None:
            latent += outfit_shift[clothes[s:e]]
        block = latent @ projection
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[s:e] = block
    return out


def _latent(rng, n: int, dim: int, norm: float) -> np.ndarray:
    return (rng.standard_normal((n, dim), dtype=np.float32) * np.float32(norm / np.sqrt(dim))).astype(np.float32)


def synthetic(scale: Scale, seed: int = 0):
    """Query/gallery FeatureSets and an enrichment table of plausible statistics."""
    rng = np.random.default_rng(seed)
    q_pid = rng.integers(0, scale.n_pids, scale.n_query)
    g_pid = np.concatenate([np.arange(scale.n_pids), rng.integers(0, scale.n_pids, scale.n_gallery - scale.n_pids)])
    q_out, g_out = rng.integers(0, scale.outfits, scale.n_query), rng.integers(0, scale.outfits, scale.n_gallery)
    q_clothes, g_clothes = q_pid * scale.outfits + q_out, g_pid * scale.outfits + g_out
    if scale.n_cams is None:  # LaST: each image its own camera
        q_cam = np.arange(scale.n_query)
        g_cam = scale.n_query + np.arange(scale.n_gallery)
    else:
        q_cam, g_cam = rng.integers(0, scale.n_cams, scale.n_query), rng.integers(0, scale.n_cams, scale.n_gallery)
    # ReID: 128-d latent; same identity + clothes ~0.6 cosine, other clothes ~0.25, others ~0 +- 0.09
    latent = 128
    projection = rng.standard_normal((latent, REID_DIM), dtype=np.float32)
    centres = _latent(rng, scale.n_pids, latent, 1.0)
    outfits = _latent(rng, scale.n_pids * scale.outfits, latent, 1.2)
    noise = np.sqrt(1.5 / latent)
    q_reid = _features(rng, q_pid, q_clothes, centres, outfits, noise, projection)
    g_reid = _features(rng, g_pid, g_clothes, centres, outfits, noise, projection)
    # faces: 64-d latent, same identity ~0.45 cosine; 45% of images have a face
    latent = 64
    projection = rng.standard_normal((latent, FACE_DIM), dtype=np.float32)
    centres = _latent(rng, scale.n_pids, latent, 1.0)
    noise = np.sqrt(1.2 / latent)
    q_has, g_has = rng.random(scale.n_query) < 0.45, rng.random(scale.n_gallery) < 0.45
    q_face = _features(rng, q_pid, None, centres, None, noise, projection)
    g_face = _features(rng, g_pid, None, centres, None, noise, projection)
    q_face[~q_has] = 0
    g_face[~g_has] = 0
    if not scale.clothes_labels:
        q_clothes, g_clothes = q_pid, g_pid
    query = FeatureSet(q_reid, q_pid, q_cam, q_clothes, q_face, q_has)
    gallery = FeatureSet(g_reid, g_pid, g_cam, g_clothes, g_face, g_has)
    # enrichment: 80% of the queries with a face, 85% of them attached to their identity
    by_pid = pd.Series(np.arange(scale.n_gallery)).groupby(g_pid).apply(np.array)
    enriched_q = np.flatnonzero(q_has & (rng.random(scale.n_query) < 0.8))
    right = rng.random(len(enriched_q)) < 0.85
    g_idx = np.where(right, [rng.choice(by_pid[p]) for p in q_pid[enriched_q]],
                     rng.integers(0, scale.n_gallery, len(enriched_q)))
    table = pd.DataFrame({"query_index": enriched_q, "gallery_index": g_idx, "pid": g_pid[g_idx]})
    return query, gallery, table


def cpu_seconds() -> float:
    """CPU time of this process, all threads (less sensitive than wall time to other
    processes sharing the machine)."""
    t = os.times()
    return t.user + t.system


def bare_matmul(query: np.ndarray, gallery: np.ndarray, block: int) -> tuple[float, float]:
    """(wall, CPU) seconds for the Q x G float32 product, block-wise into one reused buffer."""
    out = np.empty((block, len(gallery)), np.float32)
    start, cpu = time.perf_counter(), cpu_seconds()
    for s in range(0, len(query), block):
        e = min(s + block, len(query))
        np.matmul(query[s:e], gallery.T, out=out[: e - s])
    return time.perf_counter() - start, cpu_seconds() - cpu


def paired_timing(query: FeatureSet, gallery: FeatureSet, enriched: EnrichedGallery, configs, block: int,
                  chunks: int = 8) -> tuple[float, float]:
    """Stage and bare-product wall seconds over the same query chunks, alternating which
    goes first, so that other processes on a shared machine slow both alike."""
    stage_s = bare_s = 0.0
    for i, rows in enumerate(np.array_split(np.arange(len(query)), chunks)):
        part = FeatureSet(query.reid[rows], query.pids[rows], query.camids[rows], query.clothes_ids[rows],
                          query.face[rows], query.has_face[rows])
        for step in ((0, 1) if i % 2 == 0 else (1, 0)):
            if step == 0:
                bare_s += bare_matmul(part.reid, gallery.reid, block)[0]
            else:
                t0 = time.perf_counter()
                run_retrieval(part, gallery, configs, modes=MODES, enriched=enriched, progress=False)
                stage_s += time.perf_counter() - t0
    return stage_s, bare_s


def per_query_loop(query: FeatureSet, gallery: FeatureSet, table: pd.DataFrame, alpha: float):
    """The protocol written the straightforward way (as GEFF/Simple-CCReID do): one query
    at a time, full matrices, full argsort, set operations per query."""
    n_q, n_g = len(query), len(gallery)
    reid = np.zeros((n_q, n_g), np.float32)
    for i in range(n_q):
        reid[i] = -(query.reid[i:i + 1] @ gallery.reid.T)
    enriched_reid = np.zeros((n_q, len(table)), np.float32)
    enriched_feats = query.reid[table.query_index.to_numpy()]
    for i in range(n_q):
        enriched_reid[i] = -(query.reid[i:i + 1] @ enriched_feats.T)
    g_idx = table.gallery_index.to_numpy()
    for i in range(n_q):
        np.minimum.at(reid[i], g_idx, enriched_reid[i])
    sims = -np.ones((n_q, n_g))
    for i in range(n_q):
        if query.has_face[i]:
            row = gallery.face @ query.face[i]
            row[gallery.camids == query.camids[i]] = -np.inf
            sims[i] = row
    distmat = alpha * reid + (1 - alpha) * (1 - sims)
    results = {}
    index = np.argsort(distmat, axis=1, kind="stable")
    for mode in MODES:
        cmc_sum, ap_sum, n_eval = np.zeros(n_g), 0.0, 0
        for i in range(n_q):
            same_pid = np.argwhere(gallery.pids == query.pids[i]).ravel()
            same_cam = np.argwhere(gallery.camids == query.camids[i]).ravel()
            same_clo = np.argwhere(gallery.clothes_ids == query.clothes_ids[i]).ravel()
            good = np.setdiff1d(same_pid, same_cam, assume_unique=True)
            junk = np.intersect1d(same_pid, same_cam)
            if mode == "CC":
                good = np.setdiff1d(good, same_clo, assume_unique=True)
                junk = np.union1d(junk, np.intersect1d(same_pid, same_clo))
            elif mode == "SC":
                good = np.intersect1d(good, same_clo)
                junk = np.union1d(junk, np.setdiff1d(same_pid, same_clo))
            if good.size == 0:
                continue
            ranking = index[i][np.isin(index[i], junk, invert=True)]
            rows_good = np.flatnonzero(np.isin(ranking, good))
            cmc = np.zeros(n_g)
            cmc[rows_good[0]:] = 1
            cmc_sum += cmc
            ap_sum += sum((k + 1) / (rows_good[k] + 1) for k in range(len(good))) / len(good)
            n_eval += 1
        results[mode] = (cmc_sum / max(n_eval, 1), ap_sum / max(n_eval, 1), n_eval)
    return results


def full_matrix(query, gallery, enriched, alpha):
    """The same computation on whole matrices (fusion functions + metrics.evaluate)."""
    reid = reid_distance(query.reid, gallery.reid)
    reid = apply_enrichment(reid, reid_distance(query.reid, enriched.reid), enriched.gallery_index)
    face = face_distance(query.face, gallery.face, query.has_face, gallery.has_face, query.camids, gallery.camids)
    dist = fuse(reid, face, alpha)
    return {m: evaluate(dist, query.pids, gallery.pids, query.camids, gallery.camids, query.clothes_ids,
                        gallery.clothes_ids, mode=m) for m in MODES}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run_scale(key: str) -> dict:
    scale = SCALES[key]
    t0 = time.perf_counter()
    query, gallery, table = synthetic(scale)
    enriched = EnrichedGallery.from_table(table, query, gallery)
    gen_s = time.perf_counter() - t0
    load_before = os.getloadavg()[0]
    main = [RetrievalConfig("fused+enriched", ALPHA, "min")]
    block = int(np.clip((192 << 20) // (4 * (len(gallery) + len(enriched))), 16, 1024))  # run_retrieval's default
    phases: dict[str, float] = {}
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    res = run_retrieval(query, gallery, main, modes=MODES, enriched=enriched, progress=False, timings=phases)
    stage_s, stage_cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    rss = peak_rss_gib()
    bare_s, bare_cpu = bare_matmul(query.reid, gallery.reid, block)
    paired_stage_s, paired_bare_s = paired_timing(query, gallery, enriched, main, block)
    t0 = time.perf_counter()
    table_res = run_retrieval(query, gallery, default_configs(ALPHA), modes=MODES, enriched=enriched, progress=False)
    table_s = time.perf_counter() - t0
    out = {
        "scale": scale.name, "query": len(query), "gallery": len(gallery), "enriched": len(enriched),
        "generate_s": gen_s, "stage_s": stage_s, "peak_rss_gib": rss, "block": block,
        "bare_matmul_s": bare_s, "ratio": stage_s / bare_s, "table_5_configs_s": table_s,
        "paired_stage_s": paired_stage_s, "paired_bare_s": paired_bare_s,
        "paired_ratio": paired_stage_s / paired_bare_s,
        "stage_cpu_s": stage_cpu, "bare_cpu_s": bare_cpu, "cpu_ratio": stage_cpu / bare_cpu,
        # the stage's own Q x G x 4096 product, timed inside it: a ratio that other
        # processes on the machine affect the same way on both sides
        "phases": phases, "in_stage_ratio": stage_s / phases["reid gallery product"],
        "load_avg_start": load_before, "load_avg_end": os.getloadavg()[0],
        "results": res.table.round(4).to_dict("records"),
        "table": table_res.table[["config", "mode", "top1", "mAP"]].round(4).to_dict("records"),
    }
    if key in ("prcc", "ltcc"):
        full = full_matrix(query, gallery, enriched, ALPHA)
        for mode in MODES:
            got = res.results[("fused+enriched", mode)]
            assert np.array_equal(got.cmc, full[mode].cmc), f"{scale.name} {mode}: CMC differs from full matrix"
            assert got.mAP == full[mode].mAP, f"{scale.name} {mode}: mAP differs from full matrix"
            assert got.num_evaluated == full[mode].num_evaluated
        out["identical_to_full_matrix"] = True
    if key == "prcc":
        t0 = time.perf_counter()
        loop = per_query_loop(query, gallery, table, ALPHA)
        out["loop_s"] = time.perf_counter() - t0
        out["loop_max_abs_diff"] = max(
            max(np.abs(loop[m][0] - res.results[("fused+enriched", m)].cmc).max(),
                abs(loop[m][1] - res.results[("fused+enriched", m)].mAP)) for m in MODES)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="prcc,ltcc,last", help="comma-separated: prcc, ltcc, last")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the raw numbers to this file")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_scale(args.child)))
        return
    rows = []
    for key in [s.strip().lower() for s in args.scales.split(",") if s.strip()]:
        if key not in SCALES:
            parser.error(f"unknown scale {key!r}; choose from {', '.join(SCALES)}")
        print(f"running {SCALES[key].name} in a fresh process ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--child", key], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{key} failed:\n{proc.stderr}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(pd.DataFrame(row["results"]).to_string(index=False), flush=True)
    columns = {
        "scale": "scale", "query": "Q", "gallery": "G", "enriched": "E", "stage_s": "stage s",
        "peak_rss_gib": "peak RSS GiB", "bare_matmul_s": "bare matmul s", "ratio": "ratio",
        "paired_ratio": "paired ratio", "in_stage_ratio": "in-stage ratio", "cpu_ratio": "CPU-time ratio",
        "table_5_configs_s": "5-config table s", "load_avg_start": "load",
    }
    summary = pd.DataFrame(rows)[list(columns)].rename(columns=columns)
    print()
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    for row in rows:
        print(f"{row['scale']} phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in row["phases"].items()))
    for row in rows:
        if "loop_s" in row:
            print(f"{row['scale']}: per-query loop {row['loop_s']:.1f} s vs block-wise {row['stage_s']:.2f} s "
                  f"(x{row['loop_s'] / row['stage_s']:.0f}); max |difference| {row['loop_max_abs_diff']:.1e}")
        if row.get("identical_to_full_matrix"):
            print(f"{row['scale']}: block-wise results identical to the full-matrix computation")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
