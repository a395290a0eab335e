"""Benchmark of k-reciprocal re-ranking (reface_utils/method/rerank/) on synthetic features.

Features: ``bench_retrieval.synthetic`` (4096-d ReID, 512-d faces, identities, cameras,
outfits, enriched samples) at the scales of docs/METHOD.md section 6. Each (scale, method)
runs in a fresh subprocess, so that its peak RSS (``ru_maxrss``, the features included) is
its own. Methods:

- ``eval``: ``rerank_retrieval`` as the pipeline would call it -- "reid+rerank" and
  "fused+enriched+rerank" (GEFF min-enrichment, alpha 0.75), standard + CC + SC metrics --
  memory-bounded, numpy (k1 = 20, k2 = 6, lambda = 0.3);
- ``blocks`` / ``blocks-torch``: ``rerank_blocks`` alone (the ReID re-ranking, every
  block formed and read), numpy / torch on the CPU;
- ``dense``: ``k_reciprocal_rerank`` on the three 1 - cos matrices, formed here with
  ``fusion.reid_distance`` (the classic's (Q+G) x (Q+G) array): only where an estimate of
  its peak memory (six (Q+G)^2 float32 arrays) fits in the machine's available memory;
  skipped with the reason printed otherwise. Where it runs, ``blocks`` is compared with it
  (max |difference|; both write their Q x G result to a temporary file for the parent).

    python benchmarks/bench_rerank.py --scales ltcc,prcc,last/4,last
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_retrieval import parse_scale, synthetic  # noqa: E402

from reface_utils.method.fusion import reid_distance  # noqa: E402
from reface_utils.method.rerank import (  # noqa: E402
    K1, K2, LAMBDA, k_reciprocal_rerank, rerank_blocks, rerank_configs, rerank_retrieval,
)
from reface_utils.method.retrieval import EnrichedGallery  # noqa: E402

MODES = ("standard", "CC", "SC")
ALPHA = 0.75
METHODS = ("eval", "blocks", "blocks-torch", "dense")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def available_gib() -> float:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) / 2**20


def dense_estimate_gib(n: int) -> float:
    """The dense path's peak beyond the features: the three input blocks (one (Q+G)^2
    in all), the assembled matrix, its square, the normalised transpose and the rank
    selection's work arrays -- about six (Q+G)^2 float32 arrays."""
    return 6 * 4 * n * n / 2**30


def run_case(scale_text: str, method: str, out_path: str | None) -> dict:
    scale = parse_scale(scale_text)
    t0 = time.perf_counter()
    query, gallery, table = synthetic(scale)
    enriched = EnrichedGallery.from_table(table, query, gallery)
    gen_s = time.perf_counter() - t0
    features_gib = sum(a.nbytes for fs in (query, gallery) for a in (fs.reid, fs.face)) / 2**30
    rss_features = peak_rss_gib()
    load = os.getloadavg()[0]
    result: dict = {"scale": scale.name, "method": method, "Q": len(query), "G": len(gallery),
                    "generate_s": gen_s, "features_gib": features_gib, "rss_after_features_gib": rss_features}
    phases: dict[str, float] = {}
    start = time.perf_counter()
    if method == "eval":
        res = rerank_retrieval(query, gallery, rerank_configs(ALPHA), modes=MODES, enriched=enriched,
                               progress=False, timings=phases, device="numpy")
        result["table"] = res.table[["config", "mode", "top1", "mAP", "evaluated"]].round(4).to_dict("records")
    elif method in ("blocks", "blocks-torch"):
        device = "numpy" if method == "blocks" else "torch-cpu"
        out = open(out_path, "wb") if out_path else None  # plain writes: no mapping in the RSS
        checksum = 0.0
        for rows, block in rerank_blocks(query.reid, gallery.reid, device=device, timings=phases):
            checksum += float(block.sum(dtype=np.float64))
            if out is not None:
                out.write(block.tobytes())
        if out is not None:
            out.close()
        result["checksum"] = checksum
    elif method == "dense":
        one = np.float32(1.0)
        q_g = reid_distance(query.reid, gallery.reid)
        q_g += one
        q_q = reid_distance(query.reid, query.reid)
        q_q += one
        g_g = reid_distance(gallery.reid, gallery.reid)
        g_g += one
        phases["products"] = time.perf_counter() - start
        dist = k_reciprocal_rerank(q_g, q_q, g_g, K1, K2, LAMBDA)
        result["checksum"] = float(dist.sum(dtype=np.float64))
        if out_path:
            dist.tofile(out_path)
    else:
        raise ValueError(method)
    result.update(seconds=time.perf_counter() - start, peak_rss_gib=peak_rss_gib(), phases=phases,
                  load_start=load, load_end=os.getloadavg()[0])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="ltcc,prcc,last/4,last",
                        help="comma-separated: prcc, ltcc, last, or e.g. last/4")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated: {', '.join(METHODS)}")
    parser.add_argument("--torch-max-gallery", type=int, default=40_000,
                        help="run blocks-torch only up to this gallery size (torch's CPU selection is slower)")
    parser.add_argument("--json", help="also write the raw numbers to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # scale method out_path|-
    args = parser.parse_args()
    if args.child:
        scale, method, out = args.child
        print(json.dumps(run_case(scale, method, None if out == "-" else out)))
        return
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        parser.error(f"unknown methods {bad}; choose from {METHODS}")
    try:
        scales = [parse_scale(s) for s in args.scales.split(",") if s.strip()]
    except ValueError as err:
        parser.error(str(err))
    texts = [s for s in args.scales.split(",") if s.strip()]
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for text, scale in zip(texts, scales):
            n = scale.n_query + scale.n_gallery
            need, have = dense_estimate_gib(n), available_gib()
            dense_fits = need < 0.8 * have
            files = {}
            for method in sorted(methods, key=lambda m: m != "dense"):  # dense first: its file is the reference
                if method == "dense" and not dense_fits:
                    reason = (f"{scale.name}: dense skipped: the (Q+G)^2 = {n:,}^2 matrices need about {need:.1f} GiB, "
                              f"{have:.1f} GiB available (the classic's one matrix alone: {4 * n * n / 2**30:.1f} GiB)")
                    print(reason, flush=True)
                    notes.append(reason)
                    continue
                if method == "blocks-torch" and scale.n_gallery > args.torch_max_gallery:
                    reason = f"{scale.name}: blocks-torch skipped (gallery {scale.n_gallery:,} > --torch-max-gallery)"
                    print(reason, flush=True)
                    notes.append(reason)
                    continue
                out = "-"
                if dense_fits and "dense" in methods and method in ("dense", "blocks", "blocks-torch"):
                    out = files[method] = str(Path(tmp) / f"{method}.f32")
                print(f"running {scale.name} {method} in a fresh process ...", flush=True)
                proc = subprocess.run([sys.executable, __file__, "--child", text, method, out],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.exit(f"{scale.name} {method} failed:\n{proc.stderr[-4000:]}")
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"  {row['seconds']:.1f} s, peak RSS {row['peak_rss_gib']:.2f} GiB "
                      f"(features {row['features_gib']:.2f} GiB), load {row['load_start']:.1f}", flush=True)
                if "table" in row:
                    print(pd.DataFrame(row["table"]).to_string(index=False))
            shape = (scale.n_query, scale.n_gallery)
            for method in ("blocks", "blocks-torch"):
                if "dense" in files and method in files:
                    a, b = (np.memmap(files[m], np.float32, "r", shape=shape) for m in ("dense", method))
                    diff = max(float(np.abs(a[s:s + 1024] - b[s:s + 1024]).max()) for s in range(0, len(a), 1024))
                    for row in rows:
                        if row["scale"] == scale.name and row["method"] == method:
                            row["max_diff_vs_dense"] = diff
                    print(f"{scale.name}: {method} vs dense: max |difference| {diff:.1e}", flush=True)
                    del a, b
            for f in files.values():
                os.remove(f)
    table = pd.DataFrame([{
        "scale": r["scale"], "Q": r["Q"], "G": r["G"], "method": r["method"], "seconds": r["seconds"],
        "peak RSS GiB": r["peak_rss_gib"], "features GiB": r["features_gib"],
        "max |diff| vs dense": r.get("max_diff_vs_dense", float("nan")), "load": r["load_start"],
    } for r in rows])
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for r in rows:
        print(f"{r['scale']} {r['method']} phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items()))
    for note in notes:
        print(note)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
