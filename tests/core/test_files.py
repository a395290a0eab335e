"""core.files: the one SHA-256 of a file and the one atomic way of writing files and folders."""
from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from reface_utils.core.files import (apply_umask, atomic_folder, atomic_savez, atomic_write, atomic_write_text,
                                     current_umask, sha256_file, sha256_file_cached, write_error)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(folder: Path) -> list[str]:
    """Temporary siblings the atomic writers would leave (``.<name>.*``)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------- sha256_file
@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 17])
def test_sha256_file_matches_hashlib_across_block_boundaries(tmp_path, size):
    data = bytes((7 * i + 3) % 256 for i in range(size))
    (tmp_path / "f.bin").write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert sha256_file(tmp_path / "f.bin") == want
    assert sha256_file(str(tmp_path / "f.bin"), chunk=4096) == want  # several blocks, a short last one


def test_sha256_file_of_known_bytes():
    """Published digests (FIPS 180-2 test vector "abc", and the empty string), not hashlib's."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        abc, empty = Path(d) / "abc", Path(d) / "empty"
        abc.write_bytes(b"abc")
        empty.write_bytes(b"")
        assert sha256_file(abc, chunk=1) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        assert sha256_file(empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_sha256_file_cached_follows_each_version_of_a_file(tmp_path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"version 1")
    first = sha256_file_cached(f)
    assert first == hashlib.sha256(b"version 1").hexdigest()
    link = tmp_path / "link.onnx"
    link.symlink_to(f)
    assert sha256_file_cached(link) == first  # the same file under another name
    st = f.stat()
    f.write_bytes(b"version 2")  # edited: same size; the mtime is forced to differ too
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert sha256_file_cached(f) == hashlib.sha256(b"version 2").hexdigest()
    f.write_bytes(b"version 10")  # another size
    assert sha256_file_cached(str(f)) == hashlib.sha256(b"version 10").hexdigest()


def test_sha256_file_of_a_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        sha256_file_cached(tmp_path / "nope")


# ---------------------------------------------------------------- atomic writes
def test_atomic_write_text_creates_folders_and_replaces_whole(tmp_path):
    target = tmp_path / "a" / "b" / "results.csv"
    assert atomic_write_text(target, "x,y\n1,2\n") == target
    assert target.read_text() == "x,y\n1,2\n"
    atomic_write_text(target, "é\n")  # replaced, UTF-8
    assert target.read_bytes() == "é\n".encode()
    assert _leftovers(target.parent) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "lock.json"
    target.write_text("old")

    def half_then_fail(f):
        f.write(b"new but incomplete")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old" and _leftovers(tmp_path) == []

    def disk_full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match=rf"No space left on device while writing {target}.*the disk is full") as info:
        atomic_write(target, disk_full)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


def test_write_error_names_the_file_once(tmp_path):
    target = tmp_path / "x.npz"
    named = write_error(OSError(errno.EACCES, "Permission denied"), target)
    assert named.strerror == f"Permission denied while writing {target}" and named.errno == errno.EACCES
    assert named.filename == str(target) and "disk is full" not in str(named)
    already = PermissionError(errno.EACCES, "Permission denied", str(target))
    assert write_error(already, target) is already  # it names the file already: kept as it is


def test_a_folder_that_cannot_be_created_is_an_oserror(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "file" / "inside.txt", "x")


@pytest.mark.parametrize("compressed", [False, True])
def test_atomic_savez_round_trips_and_keeps_the_name(tmp_path, compressed):
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([True, False])}
    target = atomic_savez(tmp_path / "chunk_00000_2.tmpnpz", arrays, compressed=compressed)
    assert target.name == "chunk_00000_2.tmpnpz" and not (tmp_path / "chunk_00000_2.tmpnpz.npz").exists()
    with np.load(target) as back:
        assert set(back.files) == {"a", "b"}
        for key, value in arrays.items():
            np.testing.assert_array_equal(back[key], value)
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------- atomic folders
def _complete(folder: Path) -> bool:
    return (folder / "done.txt").is_file()


def test_atomic_folder_writes_once_then_reuses_unless_forced(tmp_path):
    calls = []

    def write(d: Path):
        calls.append(d)
        assert d.parent == tmp_path and d.name.startswith(".data.")  # a hidden sibling, renamed later
        (d / "done.txt").write_text(str(len(calls)))

    folder = atomic_folder(tmp_path / "data", write, is_complete=_complete)
    assert folder == tmp_path / "data" and (folder / "done.txt").read_text() == "1"
    atomic_folder(folder, write, is_complete=_complete)
    assert len(calls) == 1  # complete: reused, not rewritten
    atomic_folder(folder, write, is_complete=_complete, force=True)
    assert len(calls) == 2 and (folder / "done.txt").read_text() == "2"
    assert _leftovers(tmp_path) == []


def test_an_incomplete_folder_is_replaced_and_a_failed_write_leaves_nothing(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "partial.txt").write_text("from a crashed run")
    atomic_folder(folder, lambda d: (d / "done.txt").write_text("ok"), is_complete=_complete)
    assert sorted(p.name for p in folder.iterdir()) == ["done.txt"]

    def fail(d: Path):
        (d / "half.txt").write_text("x")
        raise RuntimeError("generator crashed")

    with pytest.raises(RuntimeError, match="generator crashed"):
        atomic_folder(tmp_path / "other", fail, is_complete=_complete)
    assert not (tmp_path / "other").exists() and _leftovers(tmp_path) == []


# ---------------------------------------------------------------- permissions (umask)
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_current_umask_reads_without_changing_it(umask):
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        assert current_umask() == umask  # unchanged by reading it
    finally:
        os.umask(old)


def test_apply_umask_gives_what_open_and_mkdir_give(tmp_path):
    old = os.umask(0o027)
    try:
        f = tmp_path / "f"
        f.write_text("x")
        f.chmod(0o600)
        d = tmp_path / "d"
        d.mkdir(mode=0o700)
        apply_umask(f)
        apply_umask(d, folder=True)
    finally:
        os.umask(old)
    assert _mode(f) == 0o640 and _mode(d) == 0o750


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750),
                                                        (0o002, 0o664, 0o775)])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        text = atomic_write_text(tmp_path / "results.csv", "a,b\n")
        npz = atomic_savez(tmp_path / "cmc.npz", {"x": np.zeros(3)})
        folder = atomic_folder(tmp_path / "generated", lambda d: (d / "f.txt").write_text("x"),
                               is_complete=lambda d: (d / "f.txt").is_file())
        plain = tmp_path / "plain.txt"
        plain.write_text("what open() gives")
    finally:
        os.umask(old)
    assert _mode(plain) == file_mode
    assert _mode(text) == file_mode and _mode(npz) == file_mode
    assert _mode(folder) == dir_mode


# ---------------------------------------------------------------- a full disk
def test_a_full_disk_names_the_file_and_leaves_nothing_half_written(small_disk):
    target = small_disk / "results" / "cmc.npz"
    with pytest.raises(OSError, match=r"No space left on device while writing .*cmc\.npz.*the disk is full"):
        atomic_savez(target, {"x": np.random.default_rng(0).random(2_000_000)})  # 16 MB
    assert not target.exists() and os.listdir(target.parent) == []  # no temporary file left either
