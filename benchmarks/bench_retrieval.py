"""Benchmark of the post-feature stage (retrieval.run_retrieval) on synthetic features.

For each scale (docs/METHOD.md section 6 sizes), in a fresh subprocess so that peak memory is
per scale: build synthetic ReID (4096-d) and face (512-d) features with identities,
cameras, outfits and enriched samples; then, for ``--repeats`` rounds, time in turns
(the order alternates from round to round, so that other processes on a shared machine
slow both alike):

- the stage: one ``run_retrieval`` call -- ReID + face distances, GEFF min-enrichment,
  fusion (alpha = 0.75), standard + CC + SC metrics -- on each ``--device``;
- the bare float32 products the stage needs, block-wise into reused buffers with the
  stage's block size: queries x gallery (ReID, 4096-d), queries x enriched samples (ReID)
  and queries-with-a-face x gallery-with-a-face (512-d; the stage skips the rest, whose
  face distance is a constant), on the same device.

ratio = stage / bare products, per round; the table shows the median over rounds (and the
median times). Both sides keep their buffers from round to round (the stage through
``run_retrieval(workspace=...)``), so rounds after the first time the computation, not the
allocation of a few hundred MiB; ``--fresh`` allocates on every call instead (on this
2-core VM a first touch of fresh memory cost up to 2 ms per MiB, which lands on whichever
side needs new memory). Peak RSS is the process's ``ru_maxrss`` (features included).

Also, for PRCC and LTCC with the numpy device: the full-matrix computation (fusion
functions on whole matrices + metrics.evaluate, with fusion.enriched_distance) against the
block-wise results, CMC and mAP compared bit for bit; and with ``--loop`` at PRCC, a
straightforward per-query loop implementation of the protocol (reference style), timed.

Scales: prcc, ltcc, last, or a fraction of one as ``last/4`` (queries, gallery and
identities divided by 4).

    python benchmarks/bench_retrieval.py --scales ltcc,prcc --repeats 5 --device numpy,torch-cpu
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

from reface_utils.method.fusion import (  # noqa: E402
    apply_enrichment, enriched_distance, face_distance, fuse, reid_distance,
)
from reface_utils.method.metrics import evaluate  # noqa: E402
from reface_utils.method.retrieval import (  # noqa: E402
    EnrichedGallery,
    FeatureSet,
    RetrievalConfig,
    Workspace,
    plan_retrieval,
    resolve_device,
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
    outfits: int        # clothes per identity: queries and gallery images draw one each

    def fraction(self, divisor: int) -> "Scale":
        """The same statistics with queries, gallery and identities divided by ``divisor``."""
        if divisor == 1:
            return self
        return Scale(f"{self.name}/{divisor}", max(1, self.n_query // divisor), max(1, self.n_gallery // divisor),
                     max(1, self.n_pids // divisor), self.n_cams, self.outfits)


SCALES = {
    # PRCC: queries B (3,873) and C (3,543) against gallery A, 71 test identities
    "prcc": Scale("PRCC", 3873 + 3543, 3384, 71, 3, 2),
    "ltcc": Scale("LTCC", 493, 7050, 75, 12, 4),
    # LaST's test labels carry no clothes ids; the synthetic people wear 3 outfits so that
    # the CC and SC modes evaluate queries (and cost what they would with labels)
    "last": Scale("LaST", 10176, 125353, 5806, None, 3),
}


def parse_scale(text: str) -> Scale:
    """"last" or "last/4" (a quarter of LaST)."""
    key, _, div = text.strip().lower().partition("/")
    if key not in SCALES:
        raise ValueError(f"unknown scale {key!r}; choose from {', '.join(SCALES)} (optionally /N)")
    divisor = int(div) if div else 1
    if divisor < 1:
        raise ValueError(f"scale fraction must be /N with N >= 1, got {text!r}")
    return SCALES[key].fraction(divisor)


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


def bare_products(query: FeatureSet, gallery: FeatureSet, enriched: EnrichedGallery, block: int,
                  device: str, buffers: dict | None = None) -> float:
    """Wall seconds of the float32 products the stage needs, block-wise with its block size
    into reused buffers: Q x G and Q x E (4096-d), faced Q x faced G (512-d). ``buffers``:
    output buffers kept between calls (as the stage's Workspace), else fresh ones."""
    faced_q, faced_g = query.face[query.has_face], gallery.face[gallery.has_face]
    pairs = [(query.reid, gallery.reid), (query.reid, enriched.reid), (faced_q, faced_g)]
    if device == "numpy":
        outs = buffers if buffers is not None else {}
        start = time.perf_counter()
        for left, right in pairs:
            out = outs.get(len(right))
            if out is None or len(out) < block:
                out = outs[len(right)] = np.empty((block, len(right)), np.float32)
            for s in range(0, len(left), block):
                e = min(s + block, len(left))
                np.matmul(left[s:e], right.T, out=out[: e - s])
        return time.perf_counter() - start
    import torch

    dev = torch.device(device)
    tensors = [(torch.from_numpy(left), torch.from_numpy(right).to(dev)) for left, right in pairs]
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for left, right in tensors:  # queries cross per block, as in the stage
        for s in range(0, len(left), block):
            left[s:s + block].to(dev) @ right.T
    sync()
    return time.perf_counter() - start


def stage(query, gallery, enriched, device: str, phases: dict | None = None, workspace: Workspace | None = None):
    main_config = [RetrievalConfig("fused+enriched", ALPHA, "min")]
    start = time.perf_counter()
    res = run_retrieval(query, gallery, main_config, modes=MODES, enriched=enriched, progress=False,
                        timings=phases, device=device, workspace=workspace)
    return time.perf_counter() - start, res


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
    reid = apply_enrichment(reid, enriched_distance(query.reid, enriched.reid, enriched.gallery_index),
                            enriched.gallery_index)
    face = face_distance(query.face, gallery.face, query.has_face, gallery.has_face, query.camids, gallery.camids)
    dist = fuse(reid, face, alpha)
    return {m: evaluate(dist, query.pids, gallery.pids, query.camids, gallery.camids, query.clothes_ids,
                        gallery.clothes_ids, mode=m) for m in MODES}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run_scale(scale_text: str, devices: list[str], repeats: int, loop: bool, fresh: bool = False) -> dict:
    scale = parse_scale(scale_text)
    t0 = time.perf_counter()
    query, gallery, table = synthetic(scale)
    enriched = EnrichedGallery.from_table(table, query, gallery)
    gen_s = time.perf_counter() - t0
    load_before = os.getloadavg()[0]
    rounds = {d: {"stage_s": [], "bare_s": [], "ratio": []} for d in devices}
    # --fresh: every call allocates its buffers (first touch included); otherwise both sides
    # keep theirs from round to round (steady state, as in a sweep).
    kept = {d: (None, None) if fresh else (Workspace(), {}) for d in devices}
    phases = {d: {} for d in devices}
    results = {}
    for r in range(repeats):
        for device in devices:
            backend = resolve_device(device)
            block = plan_retrieval(query, gallery, [RetrievalConfig("f", ALPHA, "min")], modes=MODES,
                                   enriched=enriched, device=device).default_block_size()
            times = {}
            for step in (("bare", "stage") if r % 2 == 0 else ("stage", "bare")):
                workspace, buffers = kept[device]
                if step == "bare":
                    times[step] = bare_products(query, gallery, enriched, block, backend, buffers)
                else:
                    times[step], results[device] = stage(query, gallery, enriched, device,
                                                         phases[device] if r == repeats - 1 else None, workspace)
            rounds[device]["stage_s"].append(times["stage"])
            rounds[device]["bare_s"].append(times["bare"])
            rounds[device]["ratio"].append(times["stage"] / times["bare"])
    out = {
        "scale": scale.name, "query": len(query), "gallery": len(gallery), "enriched": len(enriched),
        "generate_s": gen_s, "peak_rss_gib": peak_rss_gib(), "repeats": repeats,
        "load_avg_start": load_before, "load_avg_end": os.getloadavg()[0],
        "devices": {d: {"stage_s": float(np.median(v["stage_s"])), "bare_s": float(np.median(v["bare_s"])),
                        "ratio": float(np.median(v["ratio"])), "ratios": v["ratio"], "phases": phases[d],
                        "results": results[d].table.round(4).to_dict("records")}
                    for d, v in rounds.items()},
    }
    if "numpy" in [resolve_device(d) for d in devices] and scale.n_gallery <= 10_000:
        res = results[next(d for d in devices if resolve_device(d) == "numpy")]
        full = full_matrix(query, gallery, enriched, ALPHA)
        got = {m: res.results[("fused+enriched", m)] for m in MODES}
        out["full_matrix"] = {
            "identical": all(np.array_equal(got[m].cmc, full[m].cmc) and got[m].mAP == full[m].mAP for m in MODES),
            "same_cmc": all(np.array_equal(got[m].cmc, full[m].cmc) for m in MODES),
            "max_map_diff": max(abs(got[m].mAP - full[m].mAP) for m in MODES),
        }
    if len(devices) > 1:  # the devices against the first: same numbers?
        first = results[devices[0]]
        out["max_map_diff"] = {d: max(abs(results[d].results[k].mAP - first.results[k].mAP) for k in first.results)
                               for d in devices[1:]}
        out["same_first_ranks"] = {d: all(np.array_equal(results[d].results[k].first_good_rank,
                                                         first.results[k].first_good_rank) for k in first.results)
                                   for d in devices[1:]}
    if loop:
        t0 = time.perf_counter()
        ref = per_query_loop(query, gallery, table, ALPHA)
        out["loop_s"] = time.perf_counter() - t0
        res = results[devices[0]]
        out["loop_max_abs_diff"] = max(
            max(np.abs(ref[m][0] - res.results[("fused+enriched", m)].cmc).max(),
                abs(ref[m][1] - res.results[("fused+enriched", m)].mAP)) for m in MODES)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="ltcc,prcc,last", help="comma-separated: prcc, ltcc, last, or e.g. last/4")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per scale (median reported)")
    parser.add_argument("--device", default="numpy",
                        help="comma-separated run_retrieval devices: numpy, torch-cpu, cuda, auto")
    parser.add_argument("--loop", action="store_true", help="also time a per-query loop implementation")
    parser.add_argument("--fresh", action="store_true",
                        help="allocate buffers on every call (default: both sides keep theirs between rounds)")
    parser.add_argument("--json", help="also write the raw numbers to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    devices = [d.strip() for d in args.device.split(",") if d.strip()]
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    try:
        for device in devices:
            resolve_device(device)
        scales = [s for s in args.scales.split(",") if s.strip()]
        for text in scales:
            parse_scale(text)
    except ValueError as err:
        parser.error(str(err))
    if args.child:
        print(json.dumps(run_scale(args.child, devices, args.repeats, args.loop, args.fresh)))
        return
    rows = []
    for text in scales:
        print(f"running {parse_scale(text).name} in a fresh process ({args.repeats} rounds) ...", flush=True)
        cmd = [sys.executable, __file__, "--child", text, "--device", ",".join(devices), "--repeats", str(args.repeats)]
        cmd += (["--loop"] if args.loop else []) + (["--fresh"] if args.fresh else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{text} failed:\n{proc.stderr}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        for device, d in row["devices"].items():
            print(f"[{device}]")
            print(pd.DataFrame(d["results"])[["mode", "top1", "mAP", "evaluated", "skipped"]].to_string(index=False))
    table = pd.DataFrame([
        {"scale": r["scale"], "device": dev, "Q": r["query"], "G": r["gallery"], "E": r["enriched"],
         "stage s": d["stage_s"], "bare products s": d["bare_s"], "ratio": d["ratio"],
         "ratio range": f"{min(d['ratios']):.2f}-{max(d['ratios']):.2f}", "rounds": r["repeats"],
         "peak RSS GiB": r["peak_rss_gib"], "load": r["load_avg_start"]}
        for r in rows for dev, d in r["devices"].items()])
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    for r in rows:
        for dev, d in r["devices"].items():
            print(f"{r['scale']} [{dev}] phases, last round (s): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in d["phases"].items()))
        if "full_matrix" in r:
            f = r["full_matrix"]
            print(f"{r['scale']}: block-wise vs full-matrix computation: identical {f['identical']}, "
                  f"same CMC {f['same_cmc']}, max |mAP difference| {f['max_map_diff']:.1e}")
        if "max_map_diff" in r:
            print(f"{r['scale']}: vs {devices[0]}: max |mAP difference| {r['max_map_diff']}, "
                  f"same first good ranks {r['same_first_ranks']}")
        if "loop_s" in r:
            print(f"{r['scale']}: per-query loop {r['loop_s']:.1f} s; max |difference| {r['loop_max_abs_diff']:.1e}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
