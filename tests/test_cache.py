"""The feature cache: resumes after an interruption, never reuses stale features."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from reface_utils.core.cache import cache_entry_dir, cached_features


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
