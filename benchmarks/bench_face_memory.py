"""Memory of sface face recognition: process RSS growth while embedding N aligned crops.

onnxruntime's CPU arena keeps the largest call's activations for the process's life, so
what matters is the size of one recognition call, not the number of images. Random
112x112 crops (recognition cost does not depend on the content).

    python benchmarks/bench_face_memory.py --images 333,1000 --batch 64
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reface_utils.models.face import load_face_model  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default="333,1000", help="comma-separated crop counts, run in turn")
    parser.add_argument("--batch", type=int, default=64, help="embed_aligned batch_size")
    args = parser.parse_args()
    model = load_face_model("sface")
    warm = np.zeros((1, 112, 112, 3), np.uint8)
    model.embed_aligned(warm)
    base = rss_mib()
    print(f"sface loaded: RSS {base:.0f} MiB; recognition calls of at most "
          f"{getattr(model, 'RECOGNITION_CALL_MAX', 'batch')} crops")
    for n in (int(v) for v in args.images.split(",")):
        crops = np.random.default_rng(0).integers(0, 255, (n, 112, 112, 3), dtype=np.uint8)
        start = time.perf_counter()
        model.embed_aligned(crops, batch_size=args.batch)
        seconds = time.perf_counter() - start
        print(f"{n} crops, batch {args.batch}: RSS +{rss_mib() - base:.0f} MiB over the loaded model "
              f"(peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB), "
              f"{seconds / n * 1e3:.1f} ms per crop")


if __name__ == "__main__":
    main()
