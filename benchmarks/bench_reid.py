"""Throughput of CAL ResNet-50 feature extraction: the full path against the bare forward.

    python benchmarks/bench_reid.py                      # CPU, batch sizes 1 8 16 32 64
    python benchmarks/bench_reid.py --device cuda        # CUDA with autocast fp16

For every batch size, in the same run and on the same images:

- **full**: ``ReIDModel.extract`` on JPEG files (decode in DataLoader workers, resize,
  normalise, flip test-time augmentation, forward, L2-normalise), feature cache off;
- **bare**: the model alone on tensors that are already decoded, resized, normalised and
  on the device: ``module(cat[x, flip(x)])`` summed, the same work the model does in the
  full path.

``full / bare`` is what the data pipeline costs (target: at least 0.85). The weights are
random (speed does not depend on them). The crops are generated 128x256 JPEGs, the size
of a typical pedestrian-detector crop, so each one is enlarged to 384x192.

Threads on CPU: the forward runs in this process on ``torch.get_num_threads()`` intra-op
threads (one per core); DataLoader workers run with one torch thread and one OpenCV
thread each and spend ~1% of the time per image that the model does, so one worker
decodes the next batch while the model runs and takes little from it.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reface_utils.models import reid  # noqa: E402
from reface_utils.core.images import read_rgb  # noqa: E402


def write_crops(folder: Path, n: int, size: tuple[int, int] = (256, 128), seed: int = 0) -> list[str]:
    """``n`` person-sized JPEGs (height x width) with smooth colour fields and edges, so their
    JPEG size and decode time are like real crops' (pure noise would be far larger)."""
    rng = np.random.default_rng(seed)
    h, w = size
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (8, 4, 3), dtype=np.uint8)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        for _ in range(6):  # a few sharp rectangles: clothes edges
            y, x = int(rng.integers(0, h - 20)), int(rng.integers(0, w - 20))
            cv2.rectangle(img, (x, y), (x + int(rng.integers(10, 60)), y + int(rng.integers(10, 80))),
                          tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
        img = cv2.add(img, rng.integers(0, 12, img.shape, dtype=np.uint8))  # sensor noise
        path = folder / f"crop_{i:05d}.jpg"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(str(path))
    return paths


def bare_batches(model: reid.ReIDModel, paths: list[str], batch_size: int) -> list[torch.Tensor]:
    """Decoded, resized, normalised batches on the model's device (outside the timing)."""
    out = []
    for i in range(0, len(paths), batch_size):
        crops = [reid.resize_rgb(read_rgb(p), model.input_size) for p in paths[i:i + batch_size]]
        out.append(model._normalise(torch.from_numpy(np.stack(crops))))
    return out


def time_bare(model: reid.ReIDModel, batches: list[torch.Tensor]) -> float:
    n = sum(len(b) for b in batches)
    sync()
    t0 = time.perf_counter()
    results = []
    with torch.inference_mode():
        for x in batches:
            y = model._embed(torch.cat([x, torch.flip(x, dims=[3])]))
            results.append(y[:len(x)] + y[len(x):])
    sync()
    return n / (time.perf_counter() - t0)


def time_full(model: reid.ReIDModel, paths: list[str], batch_size: int, workers: int) -> float:
    sync()
    t0 = time.perf_counter()
    feats = model.extract(paths, batch_size=batch_size, num_workers=workers, cache_dir=None,
                          progress=False)
    sync()
    assert feats.shape == (len(paths), model.dim)
    return len(paths) / (time.perf_counter() - t0)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--batch-sizes", default=None,
                        help="comma-separated (default 1,8,16,32,64 on CPU; 32,64,128,256 on CUDA)")
    parser.add_argument("--images", type=int, default=None,
                        help="images per setting, at least one batch (default 32 on CPU, 4096 on CUDA)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers (default: the library's)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--channels-last", choices=["on", "off"], default=None,
                        help="force the memory format (default: the library's)")
    parser.add_argument("--amp", default="fp16", help="CUDA autocast dtype: fp16, bf16 or off")
    parser.add_argument("--repeats", type=int, default=2,
                        help="alternating bare/full runs per batch size; the best of each is kept "
                             "(other processes on a shared machine only ever slow a run down)")
    args = parser.parse_args()

    device = reid.extractor._pick_device(args.device)
    cuda = device.type == "cuda"
    sizes = [int(s) for s in (args.batch_sizes or ("32,64,128,256" if cuda else "1,8,16,32,64")).split(",")]
    n_default = args.images or (4096 if cuda else 32)
    n = max(n_default, max(sizes))
    if args.threads:
        torch.set_num_threads(args.threads)
    workers = reid.default_num_workers(device) if args.workers is None else args.workers
    options = {"amp": False if args.amp == "off" else args.amp}
    if args.channels_last is not None:
        options["channels_last"] = args.channels_last == "on"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", reid.RandomWeightsWarning)
        model = reid.load_reid_model("cal", device=device, **options)

    with tempfile.TemporaryDirectory(prefix="bench_reid_") as tmp:
        paths = write_crops(Path(tmp), n)
        cpu = platform.processor() or platform.machine()
        print(f"CAL ResNet-50 (random weights), input {model.input_size[0]}x{model.input_size[1]}, "
              f"flip TTA (2 forwards per image), "
              f"{n_default} generated 128x256 JPEGs per setting (at least one batch)")
        print(f"device {device}{' ' + torch.cuda.get_device_name(device) if cuda else ''}, "
              f"precision {model.precision}, channels_last {model.channels_last}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} intra-op threads, {workers} DataLoader workers, "
              f"{os.cpu_count()} CPUs ({cpu}), best of {args.repeats}")
        load_before = os.getloadavg()[0]
        # warm-up: first-call allocations, oneDNN / cuDNN algorithm choice, worker start
        time_full(model, paths[:max(sizes[0], 2)], sizes[0], workers)
        time_bare(model, bare_batches(model, paths[:sizes[0]], sizes[0]))

        print("\n| batch | full img/s | bare img/s | full / bare |")
        print("|---:|---:|---:|---:|")
        for bs in sizes:
            subset = paths[:max(n_default, bs)]
            batches = bare_batches(model, subset, bs)
            if cuda:  # cuDNN picks algorithms per shape: warm each batch size once
                time_bare(model, batches[:1])
            bare = full = 0.0
            for _ in range(args.repeats):
                bare = max(bare, time_bare(model, batches))
                full = max(full, time_full(model, subset, bs, workers))
            del batches
            print(f"| {bs} | {full:.2f} | {bare:.2f} | {full / bare:.0%} |", flush=True)
        print(f"\nload average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
