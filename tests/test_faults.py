"""Bad inputs and faults, as a demanding new user meets them (issue 12).

Each case asserts the exact outcome: a clear error naming the file or value, or a counted
skip. Never a raw library traceback, a hang, a changed metric or a modified dataset file.
Trees are tiny (a few demo images copied into tmp_path, or hand-made files); the few
cases that need a second process (kill -9, permission denied) run one with a timeout.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reface_utils.core import cache, checkpoints as ck
from reface_utils.apps import pipeline as pl
from reface_utils.core.cache import CacheChunkWarning, cache_entry_dir, cached_features
from reface_utils.core.files import sha256_file
from reface_utils.data.datasets import (Dataset, DatasetNotFoundError, SkippedFilesWarning,
                                   load_dataset)
from reface_utils.models.face import FaceFeatures, load_face_model
from reface_utils.core.images import UnreadableImageError, UnreadableImagesWarning, read_rgb
from reface_utils.models.reid import CheckpointError, load_reid_model

REPO = Path(__file__).resolve().parents[1]
SETPRIV = shutil.which("setpriv")
#: Runs a command without root's permission override, so that chmod 000 denies reading.
NO_DAC = [SETPRIV, "--bounding-set=-dac_override,-dac_read_search"] if SETPRIV else None


def run_python(code: str, *args: str, prefix: list[str] | None = None, timeout: float = 120,
               env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [*(prefix or []), sys.executable, "-c", code, *args]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=full_env)


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo_images() -> pd.DataFrame:
    """Rows of the generated demo (cached under the test REFACE_HOME) for pids 1 and 2."""
    ds = load_dataset("demo")
    rows = ds.images[ds.images["pid"].isin([1, 2])]
    gallery = rows[rows["role"] == "gallery"].iloc[::2]  # half the gallery: faster, still 2 outfits
    return pd.concat([gallery, rows[rows["role"] == "query"]]).assign(root=str(ds.root))


def make_ltcc_tree(demo_images: pd.DataFrame, folder: Path) -> Path:
    """A tiny LTCC_ReID tree of real demo images (copies)."""
    for row in demo_images.itertuples():
        rel = Path(row.path).relative_to(row.root)
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(row.path, folder / rel)
    return folder


def face_png(demo_images: pd.DataFrame) -> str:
    return demo_images[demo_images["role"] == "query"]["path"].iloc[0]


# =========================================================================== images
def test_missing_image_is_named(tmp_path):
    with pytest.raises(UnreadableImageError, match=rf"cannot read image {tmp_path}/nope\.png: No such file"):
        read_rgb(tmp_path / "nope.png")


def test_empty_image_is_named(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(UnreadableImageError, match=r"empty\.jpg: the file is empty"):
        read_rgb(tmp_path / "empty.jpg")


def test_truncated_image_is_named(tmp_path, demo_images):
    data = Path(face_png(demo_images)).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:40])
    with pytest.raises(UnreadableImageError, match=r"cannot decode image .*cut\.png"):
        read_rgb(tmp_path / "cut.png")


def test_folder_given_as_image_is_named(tmp_path):
    with pytest.raises(UnreadableImageError, match=rf"cannot read image {tmp_path}: Is a directory"):
        read_rgb(tmp_path)


def test_permission_error_is_skipped_by_both_extractors_alike(tmp_path, demo_images, monkeypatch):
    """A PermissionError (simulated in this process; really denied in the setpriv test)
    used to escape from the face backend; now both extractors skip and count it."""
    good = face_png(demo_images)
    locked = str(tmp_path / "locked.png")
    shutil.copyfile(good, locked)
    real = np.fromfile

    def fromfile(path, *args, **kwargs):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(np, "fromfile", fromfile)
    with pytest.raises(UnreadableImageError, match=r"cannot read image .*locked\.png: Permission denied"):
        read_rgb(locked)
    with pytest.warns(UnreadableImagesWarning, match=r"skipped 1 unreadable image\(s\): .*locked\.png"):
        faces, unreadable = load_face_model("sface").extract_with_status([good, locked], cache_dir=None,
                                                                          progress=False)
    assert unreadable.tolist() == [False, True] and faces.has_face.tolist() == [True, False]
    reid = load_reid_model("mobilenetv2-imagenet", device="cpu")
    with pytest.warns(UnreadableImagesWarning, match=r"ReID .*skipped 1 unreadable image\(s\): .*locked\.png"):
        feats = reid.extract([good, locked], cache_dir=tmp_path / "cache", progress=False, num_workers=0)
    assert np.any(feats[0] != 0) and not np.any(feats[1] != 0)
    monkeypatch.undo()  # permission fixed: the cached zero row is not served again
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreadableImagesWarning)
        fixed = reid.extract([good, locked], cache_dir=tmp_path / "cache", progress=False, num_workers=0)
    np.testing.assert_allclose(fixed[1], fixed[0], atol=1e-5)  # the same picture, now read


@pytest.mark.skipif(NO_DAC is None, reason="setpriv is not installed")
def test_permission_denied_for_real_then_fixed_is_not_cached_for_good(tmp_path, demo_images):
    """chmod 000, read without root's override: skipped and counted. After chmod 644 the
    same cache entry (size and mtime unchanged) reads the image again: no zero row for good."""
    image = tmp_path / "img.png"
    shutil.copyfile(face_png(demo_images), image)
    cache_dir = tmp_path / "cache"
    image.chmod(0)
    try:
        code = ("import json, sys, warnings\n"
                "from reface_utils.models.face import load_face_model\n"
                "from reface_utils.core.images import read_rgb, UnreadableImageError\n"
                "try:\n    read_rgb(sys.argv[1]); err = ''\n"
                "except UnreadableImageError as e:\n    err = str(e)\n"
                "with warnings.catch_warnings(record=True) as w:\n"
                "    warnings.simplefilter('always')\n"
                "    f, bad = load_face_model('sface').extract_with_status([sys.argv[1]], cache_dir=sys.argv[2],"
                " progress=False)\n"
                "print(json.dumps({'error': err, 'unreadable': bad.tolist(),\n"
                "                  'warnings': [str(x.message) for x in w]}))\n")
        done = run_python(code, str(image), str(cache_dir), prefix=NO_DAC)
    finally:
        image.chmod(0o644)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["error"] == f"cannot read image {image}: Permission denied"
    assert out["unreadable"] == [True]
    assert any("skipped 1 unreadable image(s)" in w and str(image) in w for w in out["warnings"])

    model = load_face_model("sface")
    computed = []
    inner = model._compute
    model._compute = lambda chunk, bar, bs: computed.append(len(chunk)) or inner(chunk, bar, bs)
    faces, unreadable = model.extract_with_status([str(image)], cache_dir=cache_dir, progress=False)
    assert unreadable.tolist() == [False] and faces.has_face.tolist() == [True]
    assert computed == [1]  # the one unreadable row was retried
    faces2, unreadable2 = model.extract_with_status([str(image)], cache_dir=cache_dir, progress=False)
    assert computed == [1] and unreadable2.tolist() == [False]  # and the fixed row is cached now
    np.testing.assert_array_equal(faces2.embedding, faces.embedding)


# =========================================================================== feature cache
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


KEY = {"name": "toy", "v": 1}


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


# =========================================================================== checkpoints
def _cal_file(path: Path, seed: int) -> Path:
    from reface_utils.models.reid import CALResNet50

    torch.manual_seed(seed)
    sd = {k: v.half() if v.is_floating_point() else v for k, v in CALResNet50().state_dict().items()}
    torch.save({"model_state_dict": sd}, path)
    return path


def test_wrong_checkpoint_is_not_pinned_and_the_right_one_then_loads(tmp_path, monkeypatch):
    """Issue 12 case: a wrong file in the cal_prcc slot was pinned on first use, then the
    right file was refused with advice that could not help."""
    monkeypatch.setenv("REFACE_HOME", str(tmp_path))
    slot = tmp_path / "weights" / "cal_prcc.pth.tar"
    slot.parent.mkdir(parents=True)
    shutil.copyfile(ck.resolve("mobilenetv2_imagenet"), slot)  # a real torch file, the wrong model
    with pytest.raises(CheckpointError, match=r"(?s)does not fit the CAL ResNet-50.*ImageNet MobileNetV2"):
        load_reid_model("cal", checkpoint="cal_prcc", device="cpu")
    assert ck.read_lock() == {}  # nothing pinned
    _cal_file(slot, seed=1)
    load_reid_model("cal", checkpoint="cal_prcc", device="cpu")
    assert ck.read_lock() == {"cal_prcc": sha256_file(slot)}  # pinned after it loaded

    # pinned, then replaced (say by the checkpoint of another run): refused, with a cure that works
    _cal_file(slot, seed=2)
    with pytest.raises(ck.ChecksumError) as info:
        load_reid_model("cal", checkpoint="cal_prcc", device="cpu")
    msg = str(info.value)
    assert f"entry 'cal_prcc' of the lock file {ck.lock_path()}" in msg
    assert "reface checkpoints forget cal_prcc" in msg
    done = run_python("from reface_utils.core.checkpoints import main; raise SystemExit(main())", "forget", "cal_prcc",
                      env={"REFACE_HOME": str(tmp_path)})
    assert done.returncode == 0 and "forgot the pinned digest of 'cal_prcc'" in done.stdout
    load_reid_model("cal", checkpoint="cal_prcc", device="cpu")
    assert ck.read_lock() == {"cal_prcc": sha256_file(slot)}


@pytest.mark.parametrize("content, why", [("{not json", "not valid JSON"),
                                          ('{"cal_prcc": "abc"}', "not a JSON object of name -> 64-hex"),
                                          ('["x"]', "not a JSON object")])
def test_corrupt_lock_file_is_an_error_and_left_alone(tmp_path, content, why):
    lock = ck.lock_path(tmp_path)
    lock.write_text(content)
    reg = {"toy": ck.Checkpoint("toy", "reid", "cal", "toy", {"type": "url", "url": "x"}, "toy.pth.tar",
                                "torch", None, "ask")}
    (tmp_path / "toy.pth.tar").write_bytes(b"PK\x03\x04 anything")
    with pytest.raises(ck.CheckpointError, match=rf"lock file {lock} is {why}.*left as it is.*rm '{lock}'"):
        ck.resolve("toy", home=tmp_path, registry=reg)
    assert lock.read_text() == content


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_weights_are_refused_at_load(tmp_path, bad):
    sd = torch.load(ck.resolve("mobilenetv2_imagenet"), map_location="cpu", weights_only=True)
    key = next(k for k, v in sd.items() if v.is_floating_point())
    sd[key].view(-1)[0] = float(bad)
    torch.save(sd, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=rf"broken\.pt holds NaN or Inf values in 1 tensor\(s\) \({key}\)"):
        load_reid_model("mobilenetv2-imagenet", checkpoint=tmp_path / "broken.pt", device="cpu")


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_buffalo_zip_without_its_onnx_files_is_refused_and_not_pinned(tmp_path):
    calls = []

    def fetch(ckpt, part):
        calls.append(ckpt.name)
        part.write_bytes(_zip({"buffalo_l/det_10g.onnx": b"det", "buffalo_l/readme.txt": b"hi"}))

    with pytest.raises(ck.NotACheckpointError,
                       match=r"not the complete buffalo_l pack: it lacks \['w600k_r50\.onnx'\].*not pinned.*rm '"):
        ck.download("buffalo_l", home=tmp_path, fetchers={"url": fetch})
    assert ck.read_lock(tmp_path) == {} and not (tmp_path / "insightface").exists()
    # the complete pack is accepted and pinned only then
    (tmp_path / "buffalo_l.zip").unlink()
    good = _zip({"buffalo_l/det_10g.onnx": b"det", "buffalo_l/w600k_r50.onnx": b"rec"})
    folder = ck.download("buffalo_l", home=tmp_path,
                         fetchers={"url": lambda ckpt, part: part.write_bytes(good)})
    assert (folder / "w600k_r50.onnx").read_bytes() == b"rec"
    assert ck.read_lock(tmp_path) == {"buffalo_l": hashlib.sha256(good).hexdigest()}


def test_forget_without_a_pin_says_so(tmp_path):
    done = run_python("from reface_utils.core.checkpoints import main; raise SystemExit(main())", "forget", "cal_ltcc",
                      env={"REFACE_HOME": str(tmp_path)})
    assert done.returncode == 0 and "'cal_ltcc' has no pinned digest" in done.stdout


# =========================================================================== parameters
@pytest.mark.parametrize("params, error, match", [
    ({"det_threshold": "abc"}, ValueError, r"parameter det_threshold must be a number in \[0, 1\], got 'abc' \(str\)"),
    ({"det_threshold": 1.5}, ValueError, r"parameter det_threshold must lie in \[0, 1\], got 1\.5"),
    ({"sim_threshold": 5}, ValueError, r"parameter sim_threshold must lie in \[0, 1\], got 5"),
    ({"alpha": -0.1}, ValueError, r"parameter alpha must lie in \[0, 1\], got -0\.1"),
    ({"alpha": float("nan")}, ValueError, r"parameter alpha must be a number"),
    ({"dataset": "nope"}, ValueError, r"parameter dataset: unknown dataset 'nope'; registered: prcc, ltcc"),
    ({"aplha": 0.5}, TypeError, r"unknown parameter\(s\) 'aplha' \(did you mean 'alpha'\?\)"),
    ({"batch_size": 0}, ValueError, r"parameter batch_size must be a whole number >= 1, got 0"),
    ({"topk": 2.5}, ValueError, r"parameter topk must be a whole number >= 1, got 2\.5"),
    ({"device": "gpu"}, ValueError, r"parameter device must be 'auto', 'cpu', 'cuda', 'cuda:<n>' or 'mps', got 'gpu'"),
    ({"enrichment": "max"}, ValueError, r"parameter enrichment must be one of \['append', 'min'\], got 'max'"),
    ({"face_model": "arcface"}, ValueError, r"parameter face_model: unknown face model 'arcface'.*registered: buffalo_l, insightface, sface"),
    ({"reid_model": "resnet"}, ValueError,
     r"parameter reid_model must be one of \[.*'cal'.*\] \(or a model you registered .*\), got 'resnet'"),
    ({"clothes_changing": "yes"}, ValueError, r"parameter clothes_changing must be True, False or None, got 'yes'"),
])
def test_bad_parameters_fail_before_any_work(tmp_path, params, error, match):
    with pytest.raises(error, match=match):
        pl.settings_for(results_root=str(tmp_path / "results"), **params)
    assert not (tmp_path / "results").exists()  # nothing created


@pytest.mark.parametrize("given, canonical", [("LTCC", "ltcc"), ("42Street", "street42"), ("VC-Clothes", "vcclothes")])
def test_dataset_name_case_is_normalised(given, canonical):
    s = pl.settings_for(dataset=given, reid_checkpoint="x.pth.tar", face_model="SFace")
    assert s.dataset == canonical and s.face_model == "sface"
    assert s.results_dir.name == canonical  # results/ltcc, never results/LTCC


# =========================================================================== datasets
def touch(root: Path, *relpaths: str) -> None:
    for rel in relpaths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")


def test_upper_case_extensions_are_images(tmp_path):
    touch(tmp_path, "test/001_1_c1_000001.PNG", "test/001_2_c2_000002.png", "query/001_3_c3_000003.Png")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedFilesWarning)
        ds = load_dataset("ltcc", tmp_path)
    assert [Path(p).name for p in ds.images["path"]] == ["001_1_c1_000001.PNG", "001_2_c2_000002.png",
                                                         "001_3_c3_000003.Png"]
    assert ds.file_report.empty and "skipped" not in ds.summary()


def test_non_images_and_dangling_symlinks_are_counted_and_named(tmp_path):
    touch(tmp_path, "test/001_1_c1_000001.png", "test/Thumbs.db", "test/.DS_Store", "query/001_3_c3_000003.png")
    (tmp_path / "test/sub").mkdir()
    os.symlink(tmp_path / "gone.png", tmp_path / "query/001_3_c3_000004.png")
    with pytest.warns(SkippedFilesWarning) as record:
        ds = load_dataset("ltcc", tmp_path)
    text = str(record[0].message)
    assert text.startswith("ltcc: 4 file(s) skipped, 0 kept with a note")
    assert f"dangling or looping symbolic link: {tmp_path}/query/001_3_c3_000004.png" in text
    assert ds.summary()["skipped"].to_dict() == {"gallery": 3, "query": 1}
    assert sorted(ds.file_report["reason"]) == ["a folder where image files belong",
                                                "dangling or looping symbolic link", "hidden file",
                                                "not a .png file"]
    assert len(ds.images) == 2


def test_readme_inside_a_ccvid_tracklet_is_not_a_frame(tmp_path):
    (tmp_path / "gallery.txt").write_text("session1/001_01 1 a\n")
    (tmp_path / "query.txt").write_text("session2/001_02 1 b\n")
    touch(tmp_path, "session1/001_01/00001.jpg", "session1/001_01/readme.txt", "session2/001_02/00001.JPG")
    with pytest.warns(SkippedFilesWarning, match=r"(?s)skipped 1: not a \.jpg/\.jpeg/\.png file: .*readme\.txt"):
        ds = load_dataset("ccvid", tmp_path)
    assert [Path(p).name for p in ds.images["path"]] == ["00001.jpg", "00001.JPG"]


def test_empty_42street_tracklet_is_reported(tmp_path):
    touch(tmp_path, "gallery/001_a.jpg", "test/tracklets/v1/001_000/f1.png")
    (tmp_path / "test/tracklets/v1/002_001").mkdir()
    with pytest.warns(SkippedFilesWarning, match=r"empty tracklet \(no \.png frames\): .*v1/002_001"):
        ds = load_dataset("street42", tmp_path)
    assert ds.summary().loc["query", "skipped"] == 1 and ds.summary().loc["query", "tracklets"] == 1


def test_last_file_disagreeing_with_its_folder_is_kept_with_a_note(tmp_path):
    touch(tmp_path, "test/query/000003_1.jpg", "test/gallery/000003/000003_2.jpg",
          "test/gallery/000003/000009_3.jpg")
    with pytest.warns(SkippedFilesWarning, match=r"(?s)0 file\(s\) skipped, 1 kept.*person 9, its folder '000003'"):
        ds = load_dataset("last", tmp_path)
    assert ds.gallery["pid"].tolist() == [3, 9]  # labelled by the name, as the reference parser does
    assert ds.file_report["action"].tolist() == ["kept"]


def test_symlink_loop_as_root_is_named(tmp_path):
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    with pytest.raises(DatasetNotFoundError, match=rf"dataset folder {tmp_path}/loop is a symbolic link that "
                                                    r"leads nowhere .*loops back"):
        load_dataset("ltcc", tmp_path / "loop")


def test_symlink_loop_as_split_folder_is_named(tmp_path):
    touch(tmp_path, "test/001_1_c1_000001.png")
    os.symlink(tmp_path / "query", tmp_path / "query")
    with pytest.raises(DatasetNotFoundError, match=rf"split folder {tmp_path}/query is a symbolic link"):
        load_dataset("ltcc", tmp_path)


@pytest.mark.skipif(NO_DAC is None, reason="setpriv is not installed")
def test_folder_that_cannot_be_listed_is_named(tmp_path):
    touch(tmp_path, "test/001_1_c1_000001.png", "query/001_3_c3_000003.png")
    (tmp_path / "query").chmod(0o311)  # enterable, not listable
    try:
        done = run_python("import sys\nfrom reface_utils.data.datasets import load_dataset, DatasetError\n"
                          "try:\n    load_dataset('ltcc', sys.argv[1])\nexcept DatasetError as e:\n    print(e)\n",
                          str(tmp_path), prefix=NO_DAC)
    finally:
        (tmp_path / "query").chmod(0o755)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith(f"ltcc: cannot list the folder {tmp_path}/query: Permission denied")


# =========================================================================== pipeline
def _toy_dataset(tmp_path: Path, same_clothes_queries: bool = False, seed: int = 0):
    """An LTCC-like Dataset with random (L2-normalised) features: 4 people, 2 outfits each
    (or, with ``same_clothes_queries``, one outfit that the queries wear too)."""
    rng = np.random.default_rng(seed)
    rows = []
    for pid in range(4):
        for k in range(6):
            outfit = 0 if same_clothes_queries else k % 2  # same clothes only: no clothes-changing pair
            rows.append({"pid": pid, "camid": k % 3, "clothes_id": 2 * pid + outfit, "role": "gallery"})
        for k in range(3):
            clothes = 2 * pid if same_clothes_queries else 2 * pid + 1
            rows.append({"pid": pid, "camid": 3 + k % 2, "clothes_id": clothes, "role": "query"})
    images = pd.DataFrame(rows)
    images.insert(0, "path", [str(tmp_path / f"{i:03d}.png") for i in range(len(images))])
    images["track"] = ""
    n = len(images)
    reid = rng.normal(size=(n, 16)).astype(np.float32) + images["pid"].to_numpy()[:, None]
    reid /= np.linalg.norm(reid, axis=1, keepdims=True)
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    has = rng.random(n) < 0.6
    faces = FaceFeatures(has, np.where(has, 0.9, 0).astype(np.float32), np.zeros((n, 4)), np.zeros((n, 5, 2)),
                         np.where(has[:, None], emb, 0))
    ds = Dataset("ltcc", tmp_path, images, eval_modes=("standard", "CC", "SC"))
    return ds, pl.DatasetFeatures(images, reid, faces)


def test_unreadable_images_leave_metrics_as_without_them(tmp_path):
    """The issue's case: an unreadable query got a zero feature that was still ranked and
    changed top-1. Now: same table as a dataset without those images."""
    ds, full = _toy_dataset(tmp_path)
    bad = [3, ds.images.index[ds.images["role"] == "query"][2]]  # a gallery and a query image
    full.reid[bad] = 0  # what the extractor gives an unreadable image
    full.faces.has_face[bad] = False
    full.faces.embedding[bad] = 0
    readable = np.ones(len(ds.images), bool)
    readable[bad] = False
    masked = pl.DatasetFeatures(ds.images, full.reid, full.faces, readable)
    keep = np.flatnonzero(readable)
    images = ds.images.iloc[keep].reset_index(drop=True)
    without = pl.DatasetFeatures(images, full.reid[keep], full.faces.subset(keep))
    ds_without = Dataset("ltcc", tmp_path, images, eval_modes=ds.eval_modes)
    settings = pl.settings_for(dataset="ltcc", reid_checkpoint="x", face_model="sface", sim_threshold=0.2)
    got = pl.evaluate(ds, masked, pl.run_enrichment(ds, masked, settings), settings, progress=False)
    want = pl.evaluate(ds_without, without, pl.run_enrichment(ds_without, without, settings), settings,
                       progress=False)
    pd.testing.assert_frame_equal(got.table, want.table)
    assert got.unreadable == [ds.images["path"][i] for i in bad]
    assert got.table["evaluated"].max() == 11  # 12 queries, one unreadable


def test_zero_evaluated_queries_are_not_evaluated_not_zero(tmp_path):
    ds, feats = _toy_dataset(tmp_path, same_clothes_queries=True)
    settings = pl.settings_for(dataset="ltcc", reid_checkpoint="x", face_model="sface")
    ev = pl.evaluate(ds, feats, None, settings, progress=False)
    cc = ev.table[ev.table["mode"] == "CC"]
    assert (cc["evaluated"] == 0).all() and cc[["top1", "top5", "mAP"]].isna().all().all()
    assert set(cc["note"]) == {"not evaluated: none of the 12 queries has a correct match in the gallery in "
                               "other clothes (clothes-changing)"}
    standard = ev.table[ev.table["mode"] == "standard"]
    assert (standard["note"] == "").all() and standard["top1"].notna().all()
    pl.save_results(ev, tmp_path / "out")
    csv = (tmp_path / "out" / "results.csv").read_text().splitlines()
    cc_line = next(line for line in csv if ",CC," in line)
    assert ",n/a," in cc_line and "not evaluated" in cc_line
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    row = next(r for r in payload["results"] if r["mode"] == "CC")
    assert row["top1"] is None and row["mAP"] is None and row["note"].startswith("not evaluated")
    assert payload["unreadable_images"]["count"] == 0
    paper = pl.paper_table("ltcc", ev)
    ours_cc = paper[paper["source"].str.startswith("ours") & (paper["mode"] == "CC")]
    assert len(ours_cc) and ours_cc["top1"].isna().all()  # never 0.0 next to the paper


def test_pipeline_leaves_a_dataset_tree_untouched_and_skips_a_corrupt_image(tmp_path, demo_images):
    """Data safety: sha256 of every file of the tree before and after every pipeline step:
    identical, nothing added. The corrupt query is left out, counted and listed."""
    root = make_ltcc_tree(demo_images, tmp_path / "LTCC_ReID")
    corrupt = sorted((root / "query").iterdir())[0]
    corrupt.write_bytes(corrupt.read_bytes()[:60])  # truncated PNG
    touch(root, "query/readme.txt")
    before = tree_hashes(root)
    settings = pl.settings_for(dataset="LTCC", data_root=str(tmp_path), reid_model="mobilenetv2-imagenet", face_model="sface",
                               device="cpu", results_root=str(tmp_path / "results"))
    requirements = pl.check_requirements(settings, download=False)
    assert requirements.set_index("what").loc["dataset", "status"] == "ok"
    with pytest.warns(SkippedFilesWarning, match=r"readme\.txt"):
        ds = load_dataset(settings.dataset, settings.data_root)
    with pytest.warns(UserWarning, match=rf"1 unreadable image\(s\) are left out .*{corrupt.name}"):
        feats = pl.compute_features(ds, settings, progress=False)
    enrichment = pl.run_enrichment(ds, feats, settings)
    ev = pl.evaluate(ds, feats, enrichment, settings, progress=False)
    pl.alpha_sweep(ds, feats, enrichment, settings, alphas=[0.0, 1.0])
    pl.threshold_sweep(ds, feats, settings, thresholds=[0.4])
    pl.save_results(ev, settings.results_dir, enrichment=enrichment)
    assert tree_hashes(root) == before  # nothing modified, nothing added
    assert ev.unreadable == [str(corrupt)]
    n_query = int((ds.images["role"] == "query").sum())
    assert ev.table[ev.table["mode"] == "standard"]["evaluated"].max() <= n_query - 1
    payload = json.loads((settings.results_dir / "results.json").read_text())
    assert payload["unreadable_images"]["count"] == 1 and payload["unreadable_images"]["paths"] == [str(corrupt)]
    assert settings.results_dir == tmp_path / "results" / "ltcc"
