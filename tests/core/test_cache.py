"""The feature cache: resumes after an interruption (even kill -9), never reuses stale features,
names and recomputes a damaged chunk, retries unreadable rows."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from reface_utils.core import cache
from reface_utils.core.cache import CacheChunkWarning, cache_entry_dir, cached_features
from reface_utils.models.face import load_face_model


def _make_files(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img_{i:03d}.bin"
        p.write_bytes(bytes([i % 256]) * (i + 1))
        paths.append(str(p))
    return paths


class CountingExtractor:
    """Features = file size; counts how many images it really computed."""

    def __init__(self, fail_after: int | None = None):
        self.computed = 0
        self.fail_after = fail_after

    def __call__(self, chunk, bar):
        if self.fail_after is not None and self.computed >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.computed += len(chunk)
        sizes = np.array([os.path.getsize(p) for p in chunk], dtype=np.float32)
        return {"feat": np.stack([sizes, sizes * 2], axis=1), "ok": np.ones(len(chunk), bool)}


KEY = {"name": "toy", "version": 1}


def test_interrupted_run_resumes_without_recomputing(tmp_path):
    paths = _make_files(tmp_path / "imgs", 10)
    cache = tmp_path / "cache"
    killed = CountingExtractor(fail_after=6)  # dies at the 4th chunk of 2
    with pytest.raises(KeyboardInterrupt):
        cached_features(KEY, paths, killed, cache_dir=cache, chunk_size=2, progress=False)
    assert killed.computed == 6
    entry = cache_entry_dir(cache, KEY, paths)
    assert len(list(entry.glob("chunk_*.npz"))) == 3
    assert not list(entry.glob("*.tmp")), "no half-written files are left behind"

    resumed = CountingExtractor()
    out = cached_features(KEY, paths, resumed, cache_dir=cache, chunk_size=2, progress=False)
    assert resumed.computed == 4  # only the two missing chunks
    expected = np.arange(1, 11, dtype=np.float32)
    np.testing.assert_array_equal(out["feat"][:, 0], expected)
    np.testing.assert_array_equal(out["feat"][:, 1], expected * 2)

    again = CountingExtractor()
    out2 = cached_features(KEY, paths, again, cache_dir=cache, chunk_size=2, progress=False)
    assert again.computed == 0  # a finished run is never recomputed
    np.testing.assert_array_equal(out2["feat"], out["feat"])


def test_changed_inputs_invalidate(tmp_path):
    paths = _make_files(tmp_path / "imgs", 4)
    cache = tmp_path / "cache"
    cached_features(KEY, paths, CountingExtractor(), cache_dir=cache, progress=False)

    other_model = CountingExtractor()
    cached_features({"name": "toy", "version": 2}, paths, other_model, cache_dir=cache, progress=False)
    assert other_model.computed == 4

    reordered = CountingExtractor()
    cached_features(KEY, paths[::-1], reordered, cache_dir=cache, progress=False)
    assert reordered.computed == 4

    Path(paths[0]).write_bytes(b"changed content, another size")
    edited = CountingExtractor()
    out = cached_features(KEY, paths, edited, cache_dir=cache, progress=False)
    assert edited.computed == 4
    assert out["feat"][0, 0] == len(b"changed content, another size")


def test_corrupt_chunk_is_recomputed(tmp_path):
    paths = _make_files(tmp_path / "imgs", 4)
    cache = tmp_path / "cache"
    cached_features(KEY, paths, CountingExtractor(), cache_dir=cache, chunk_size=2, progress=False)
    chunk = sorted(cache_entry_dir(cache, KEY, paths).glob("chunk_*.npz"))[1]
    chunk.write_bytes(b"garbage")
    redo = CountingExtractor()
    out = cached_features(KEY, paths, redo, cache_dir=cache, chunk_size=2, progress=False)
    assert redo.computed == 2
    np.testing.assert_array_equal(out["feat"][:, 0], [1, 2, 3, 4])


def test_arrays_and_disabled_cache_are_not_cached(tmp_path):
    images = [np.zeros((4, 4, 3), np.uint8)] * 3
    calls = []

    def compute(chunk, bar):
        calls.append(len(chunk))
        return {"n": np.arange(len(chunk))}

    cached_features(KEY, images, compute, cache_dir=tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()
    paths = _make_files(tmp_path / "imgs", 3)
    cached_features(KEY, paths, compute, cache_dir=None, progress=False)
    cached_features(KEY, paths, compute, cache_dir=None, progress=False)
    assert calls == [3, 3, 3]


def test_empty_list_and_bad_rows(tmp_path):
    out = cached_features(KEY, [], lambda chunk, bar: {"f": np.zeros((0, 8), np.float32)},
                          cache_dir=tmp_path, progress=False)
    assert out["f"].shape == (0, 8)
    paths = _make_files(tmp_path / "imgs", 3)
    with pytest.raises(ValueError, match="rows for a chunk of 3"):
        cached_features(KEY, paths, lambda chunk, bar: {"f": np.zeros(2)}, cache_dir=tmp_path,
                        progress=False)


# ---------------------------------------------------------------- faults (issue 12)
def _files(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        (folder / f"f{i}.bin").write_bytes(bytes([i]) * (i + 1))
        out.append(str(folder / f"f{i}.bin"))
    return out


class Sizes:
    """Toy extractor: feature = file size (exact), counts what it computes."""

    def __init__(self):
        self.computed = 0

    def __call__(self, chunk, bar):
        self.computed += len(chunk)
        sizes = np.array([os.path.getsize(p) for p in chunk], np.float32)
        return {"feat": np.stack([sizes, -sizes], 1), "box": np.full((len(chunk), 2), np.nan, np.float32)}


def _chunk_path(cache_dir: Path, paths: list[str], number: int, size: int = 2) -> Path:
    return cache_entry_dir(cache_dir, KEY, paths) / f"chunk_{number:05d}_{size}.npz"


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped", "empty", "not-npz", "nan-rows", "inf-rows",
                                    "wrong-rows", "other-arrays"])
def test_bad_chunk_is_named_and_recomputed(tmp_path, damage):
    paths = _files(tmp_path / "imgs", 6)
    cache_dir = tmp_path / "cache"
    first = cached_features(KEY, paths, Sizes(), cache_dir=cache_dir, chunk_size=2, progress=False,
                            allow_nan=("box",))
    chunk = _chunk_path(cache_dir, paths, 1)
    data = chunk.read_bytes()
    if damage == "truncated":
        chunk.write_bytes(data[: len(data) // 2])
    elif damage == "bit-flipped":
        flipped = bytearray(data)
        flipped[len(data) // 3] ^= 0xFF
        flipped[len(data) // 2] ^= 0xFF
        chunk.write_bytes(bytes(flipped))
    elif damage == "empty":
        chunk.write_bytes(b"")
    elif damage == "not-npz":
        chunk.write_bytes(b"<html>proxy error</html>")
    elif damage == "nan-rows":
        chunk.write_bytes(_npz_bytes(feat=np.full((2, 2), np.nan, np.float32), box=np.zeros((2, 2), np.float32)))
    elif damage == "inf-rows":
        chunk.write_bytes(_npz_bytes(feat=np.full((2, 2), np.inf, np.float32), box=np.zeros((2, 2), np.float32)))
    elif damage == "wrong-rows":
        chunk.write_bytes(_npz_bytes(feat=np.zeros((3, 2), np.float32), box=np.zeros((3, 2), np.float32)))
    else:
        chunk.write_bytes(_npz_bytes(other=np.zeros((2, 2), np.float32)))
    redo = Sizes()
    with pytest.warns(CacheChunkWarning, match=rf"cached chunk {chunk} cannot be used .*recomputing it"):
        again = cached_features(KEY, paths, redo, cache_dir=cache_dir, chunk_size=2, progress=False,
                                allow_nan=("box",))
    assert redo.computed == 2  # only the bad chunk
    for k in first:
        np.testing.assert_array_equal(again[k], first[k])
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheChunkWarning)  # rewritten: the next run is clean
        third = Sizes()
        cached_features(KEY, paths, third, cache_dir=cache_dir, chunk_size=2, progress=False, allow_nan=("box",))
    assert third.computed == 0


def test_model_returning_nan_is_an_error_and_nothing_is_cached(tmp_path):
    paths = _files(tmp_path / "imgs", 3)

    def broken(chunk, bar):
        feat = np.ones((len(chunk), 4), np.float32)
        feat[-1, 0] = np.nan
        return {"feat": feat}

    with pytest.raises(ValueError, match=r"returned NaN or Inf 'feat' for 1 image\(s\) \(e\.g\. .*f2\.bin\)"):
        cached_features(KEY, paths, broken, cache_dir=tmp_path / "cache", chunk_size=8, progress=False)
    assert not list((tmp_path / "cache").rglob("*.npz"))


def test_unreadable_rows_are_retried_until_readable(tmp_path):
    paths = _files(tmp_path / "imgs", 4)
    broken = {paths[1]}

    calls = []

    def extractor(chunk, bar):
        calls.append(list(chunk))
        bad = np.array([p in broken for p in chunk])
        sizes = np.array([0 if b else os.path.getsize(p) for p, b in zip(chunk, bad)], np.float32)
        return {"feat": sizes[:, None], cache.UNREADABLE: bad}

    out = cached_features(KEY, paths, extractor, cache_dir=tmp_path / "c", chunk_size=2, progress=False)
    assert out[cache.UNREADABLE].tolist() == [False, True, False, False]
    broken.clear()  # the file became readable (permission fixed): same size and mtime
    calls.clear()
    out = cached_features(KEY, paths, extractor, cache_dir=tmp_path / "c", chunk_size=2, progress=False)
    assert calls == [[paths[1]]] and out["feat"][1, 0] == 2 and not out[cache.UNREADABLE].any()
    calls.clear()
    cached_features(KEY, paths, extractor, cache_dir=tmp_path / "c", chunk_size=2, progress=False)
    assert calls == []


def test_unwritable_cache_folder_is_named(tmp_path):
    blocker = tmp_path / "home"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(OSError, match=rf"cannot create the feature cache folder {blocker}/toy/.*REFACE_HOME"):
        cached_features(KEY, _files(tmp_path / "imgs", 1), Sizes(), cache_dir=blocker, progress=False)


_KILLABLE = """
import sys, time
from reface_utils.models.face import load_face_model
model = load_face_model("sface")
inner = model._compute
done = []
def compute(chunk, bar, batch_size):
    if done:  # the second chunk never finishes: the test kills us here
        time.sleep(600)
    done.append(len(chunk))
    return inner(chunk, bar, batch_size)
model._compute = compute
model.extract(sys.argv[2:], cache_dir=sys.argv[1], chunk_size=2, progress=False)
"""


def test_kill_9_during_extraction_then_resume_is_bit_identical(tmp_path, demo_images):
    paths = demo_images["path"].tolist()[:6]
    cache_dir = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(cache_dir), *paths], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while not list(cache_dir.rglob("chunk_00000_2.npz")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the first chunk was never written"
            time.sleep(0.1)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in sorted(cache_dir.rglob("chunk_*.npz"))] == ["chunk_00000_2.npz"]

    model = load_face_model("sface")
    computed = []
    inner = model._compute
    model._compute = lambda chunk, bar, bs: computed.append(len(chunk)) or inner(chunk, bar, bs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheChunkWarning)
        resumed = model.extract(paths, cache_dir=cache_dir, chunk_size=2, progress=False)
    assert computed == [2, 2]  # the finished chunk was not recomputed
    fresh = load_face_model("sface").extract(paths, cache_dir=None, progress=False)
    for name, value in fresh.to_arrays().items():
        np.testing.assert_array_equal(getattr(resumed, name), value, err_msg=name)  # NaN == NaN here
