"""Your dataset without code: a CSV manifest, one row per image -> :class:`Dataset`; the reader,
the writer and the spec of the ``manifest`` dataset.

``load_manifest("my_data/manifest.csv")`` (or ``load_dataset("manifest", "my_data/manifest.csv")``,
or ``load_dataset("manifest", "my_data")`` for a folder holding ``manifest.csv``) reads::

    path,pid,camid,clothes_id,role
    gallery/0001_a.jpg,1,0,0,gallery
    gallery/0002_a.jpg,2,1,2,gallery
    query/0001_b.jpg,1,2,1,query
    query/0002_b.jpg,2,2,2,query_night

Columns (header names without case; other columns are ignored with a
:class:`ManifestWarning`):

===========  =========  =====================================================================
column       required   meaning
===========  =========  =====================================================================
path         yes        the image file, relative to the CSV's folder (or absolute; ``~`` works)
pid          yes        identity, an integer (``-1``: no identity, e.g. a distractor)
camid        yes        camera, an integer (gallery images of the query's camera are junk)
role         yes        ``gallery``, ``query``, or another query set: ``query_<name>``
clothes_id   no         outfit, an integer: enables the clothes-changing (``CC``) and
                        same-clothes (``SC``) evaluation modes
track        no         tracklet key (any text): the dataset is then a video dataset,
                        evaluated per tracklet; every row needs one
frame        no         order of the frames within a track (integers; needs ``track``)
===========  =========  =====================================================================

Rules (every one is checked before anything is returned):

* Roles: ``gallery``, ``query``, or ``query_`` followed by letters, digits and ``_``
  (``query_same``, ``query_diff``, ``query_2``); compared without case and surrounding
  spaces, stored in lower case. Each query role is a query set evaluated against the
  gallery on its own (like PRCC's two sets). There must be gallery rows and query rows.
* ``pid``, ``camid``, ``clothes_id`` and ``frame`` are integers as written (``3``, ``-1``;
  not ``3.5``, ``3.0``, ``abc`` or empty).
* Paths are resolved against the CSV's folder; every file must exist (a folder is an
  error), and no image may be listed twice (compared after resolving symbolic links).
* A track has one role, one pid, one camera and one outfit; frames of a track are unique.
* The file is UTF-8 (a byte-order mark, as Excel writes it, is fine); fields are separated
  by ``,`` (``;`` or tab are recognised from the header); blank lines are skipped; fields
  are stripped of surrounding spaces.

Every problem found is reported at once in one :class:`ManifestError`, which names the
CSV and each offending line as a spreadsheet numbers it (header = line 1, first data row
= line 2).

The :class:`Dataset` it gives: name ``"manifest"``; ``root`` the CSV's folder (feature
files may store paths relative to it, :mod:`reface_utils.method.feature_files`); rows in
the CSV's order, except that the frames of a track are gathered at the track's first row,
sorted by ``frame`` when given; ``path`` absolute (not symlink-resolved, like the other
loaders); ``clothes_id`` -1 without the column, ``track`` "" without it.
``query_roles``: ``query`` first when present, then the other query sets in order of first
appearance. ``eval_modes``: ``("tracklet",)`` with ``track``; else ``("standard", "CC", "SC")``
with ``clothes_id``, ``("standard",)`` without. :func:`save_manifest` writes any images
table (e.g. ``load_dataset("prcc", root).images``) as such a CSV.
"""
from __future__ import annotations

import csv
import difflib
import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from ...core.files import atomic_write_text
from .common import COLUMNS, Dataset, DatasetError, DatasetNotFoundError
from .registry import register_dataset
from .spec import DatasetSpec

__all__ = ["NAME", "SPEC", "ManifestError", "ManifestNotFoundError", "ManifestWarning", "load_manifest",
           "load_manifest_root", "manifest_file", "manifest_text", "save_manifest", "MANIFEST_FILE",
           "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "ROLE_RULE"]

NAME = "manifest"
#: The file ``load_dataset("manifest", <folder>)`` reads in a folder.
MANIFEST_FILE = "manifest.csv"
REQUIRED_COLUMNS = ("path", "pid", "camid", "role")
OPTIONAL_COLUMNS = ("clothes_id", "track", "frame")
#: What a role may be (shown in errors).
ROLE_RULE = "'gallery', 'query', or 'query_<name>' (<name>: letters, digits, '_'), e.g. 'query_diff'"
_ROLE = re.compile(r"gallery|query(?:_[a-z0-9_]+)?")
_INT = re.compile(r"[+-]?\d+")
#: Problems shown in one error (the rest are counted).
MAX_SHOWN = 10
_DELIMITERS = (",", ";", "\t")


class ManifestError(DatasetError):
    """A manifest CSV that cannot be read as a dataset; ``problems`` lists ``(line, text)``
    pairs (``line`` as a spreadsheet numbers it, ``None`` for the whole file)."""

    def __init__(self, csv_path: str | os.PathLike, problems: list[tuple[int | None, str]]) -> None:
        self.csv = Path(csv_path)
        self.problems = list(problems)
        shown = [f"  line {line}: {text}" if line is not None else f"  {text}" for line, text in problems[:MAX_SHOWN]]
        more = len(problems) - MAX_SHOWN
        if more > 0:
            shown.append(f"  ... and {more} more problem(s)")
        head = f"manifest {self.csv}: " + ("1 problem" if len(problems) == 1 else f"{len(problems)} problems")
        note = " (line 1 is the header)" if any(line is not None for line, _ in problems) else ""
        super().__init__(f"{head}{note}:\n" + "\n".join(shown))


class ManifestNotFoundError(ManifestError, DatasetNotFoundError):
    """The manifest CSV (or the folder that should hold it) does not exist."""


class ManifestWarning(UserWarning):
    """Something in a manifest was ignored (a column it does not know)."""


def manifest_file(root: str | os.PathLike | None) -> Path:
    """The CSV ``load_dataset("manifest", root)`` reads: ``root`` itself when it is a file,
    ``root/manifest.csv`` when ``root`` is a folder holding one."""
    if root is None:
        raise ManifestNotFoundError("<root=None>", [(None, (
            "load_dataset('manifest') needs root=<your manifest CSV> (or a folder holding "
            f"{MANIFEST_FILE}); columns {','.join(REQUIRED_COLUMNS)}[,{','.join(OPTIONAL_COLUMNS)}], "
            "one row per image (see reface_utils.data.datasets.manifest)"))])
    path = Path(root).expanduser()
    if path.is_dir():
        if (path / MANIFEST_FILE).is_file():
            return path / MANIFEST_FILE
        others = sorted(p.name for p in path.glob("*.csv"))
        hint = (f"; it has {', '.join(others[:3])}{' ...' if len(others) > 3 else ''}: pass that file's path as root"
                if others else "")
        raise ManifestNotFoundError(path, [(None, f"the folder has no {MANIFEST_FILE}{hint}")])
    if not path.exists():
        raise ManifestNotFoundError(path, [(None, "the manifest CSV does not exist")])
    return path


def load_manifest_root(root: str | os.PathLike | None, seed: int = 0) -> Dataset:
    """The ``manifest`` loader of :func:`reface_utils.data.datasets.load_dataset`
    (``seed`` is not used: nothing is drawn)."""
    return load_manifest(manifest_file(root))


# --------------------------------------------------------------------------- reading

def _read_text(path: Path) -> str:
    if path.is_dir():
        raise ManifestError(path, [(None, f"is a folder, not a CSV file (a folder holding {MANIFEST_FILE} "
                                          "is read by load_dataset('manifest', folder))")])
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise ManifestNotFoundError(path, [(None, "the manifest CSV does not exist")]) from err
    except OSError as err:
        raise ManifestError(path, [(None, f"cannot read the file: {err.strerror or err}")]) from err
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ManifestError(path, [(None, (
            f"is not UTF-8 text (byte {err.start}: {data[err.start:err.start + 1]!r}); "
            "save it as 'CSV UTF-8' (Excel) or re-encode it, e.g. "
            "iconv -f latin1 -t utf-8"))]) from err


def _records(path: Path, text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header (lower-cased, stripped) and ``(line, fields)`` of every non-blank record."""
    first = text.split("\n", 1)[0]
    # The delimiter that finds the most required columns in the header (Excel in some
    # locales writes ";"), "," on a tie.
    delimiter = max(_DELIMITERS, key=lambda d: (sum(c.strip().lower() in REQUIRED_COLUMNS for c in first.split(d)),
                                                d == ","))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    start = 1
    try:
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not any(f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip().lower() for f in fields]
                header_line = line
            else:
                records.append((line, [f.strip() for f in fields]))
    except csv.Error as err:
        raise ManifestError(path, [(reader.line_num, f"not valid CSV: {err}")]) from err
    if header is None:
        raise ManifestError(path, [(None, "the file is empty: write a header line "
                                          f"{','.join(REQUIRED_COLUMNS)} and one row per image")])
    if header_line != 1:
        raise ManifestError(path, [(header_line, "the header must be the first line (blank lines above it)")])
    return header, records


class _Problems(list):
    def add(self, line: int | None, text: str) -> None:
        self.append((line, text))


def load_manifest(csv_path: str | os.PathLike, *, name: str = "manifest") -> Dataset:
    """Read a manifest CSV (format in the module docstring) as a :class:`Dataset` called ``name``.

    Raises :class:`ManifestError` (a :class:`DatasetError`) listing every problem found, each
    with its line; :class:`ManifestNotFoundError` when the CSV does not exist.
    """
    path = Path(csv_path).expanduser()
    text = _read_text(path)
    header, records = _records(path, text)
    problems = _Problems()

    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(path, [(1, f"missing column(s) {', '.join(missing)}; the header is "
                                       f"{','.join(header)!r}, needed: {','.join(REQUIRED_COLUMNS)} "
                                       f"(optional: {','.join(OPTIONAL_COLUMNS)})")])
    known = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    dup = sorted({c for c in header if header.count(c) > 1 and c in known})
    if dup:
        raise ManifestError(path, [(1, f"column(s) {', '.join(dup)} appear more than once in the header")])
    unknown = [c for c in header if c not in known]
    if unknown:
        close = {c: difflib.get_close_matches(c, [k for k in known if k not in header], n=1, cutoff=0.6)
                 for c in unknown}
        hints = "".join(f"; did you mean {m[0]!r} for {c!r}?" for c, m in close.items() if m)
        warnings.warn(f"manifest {path}: column(s) {', '.join(repr(c) for c in unknown)} are not read "
                      f"(known columns: {', '.join(known)}){hints}", ManifestWarning, stacklevel=2)
    if not records:
        raise ManifestError(path, [(None, "the file has a header but no rows (one row per image)")])
    col = {c: header.index(c) for c in known if c in header}
    has_clothes, has_frame = "clothes_id" in col, "frame" in col

    folder = path.absolute().parent
    rows: list[dict[str, Any]] = []
    for line, fields in records:
        if len(fields) > len(header) and any(fields[len(header):]):
            problems.add(line, f"{len(fields)} fields, the header has {len(header)} (a ',' inside a path? "
                               "quote the field)")
            continue
        fields = fields + [""] * (len(header) - len(fields))
        row: dict[str, Any] = {"line": line}
        for c in ("pid", "camid") + (("clothes_id",) if has_clothes else ()) + (("frame",) if has_frame else ()):
            value = fields[col[c]]
            if _INT.fullmatch(value):
                row[c] = int(value)
            elif c != "frame" or ("track" in col and fields[col["track"]]):
                problems.add(line, f"{c} {value!r} is not an integer" if value else f"{c} is empty")
        role = fields[col["role"]].lower()
        if not _ROLE.fullmatch(role):
            problems.add(line, (f"role {fields[col['role']]!r} is not {ROLE_RULE}" if role
                                else f"role is empty; it must be {ROLE_RULE}"))
        row["role"] = role
        row["track"] = fields[col["track"]] if "track" in col else ""
        row["frame_given"] = has_frame and bool(fields[col["frame"]])
        raw = fields[col["path"]]
        row["raw"] = raw
        if not raw:
            problems.add(line, "path is empty")
            row["path"] = None
        else:
            row["path"] = os.path.abspath(folder / Path(raw).expanduser())
        rows.append(row)

    _check_files(rows, problems)
    is_video = _check_tracks(rows, "track" in col, has_frame, problems)
    roles = [r["role"] for r in rows if _ROLE.fullmatch(r["role"])]
    queries = list(dict.fromkeys(r for r in roles if r != "gallery"))
    if rows:
        if "gallery" not in roles:
            problems.add(None, f"no gallery rows: the query set(s) {', '.join(queries)} have nothing to be "
                               "matched against (give some rows role 'gallery')")
        if not queries:
            problems.add(None, "no query rows (give some rows role 'query', or 'query_<name>' for "
                               "several query sets)")
    if problems:
        raise ManifestError(path, sorted(problems, key=lambda p: (p[0] is not None, p[0] or 0)))

    rows = _order(rows, has_frame)
    table = pd.DataFrame({
        "path": [r["path"] for r in rows], "pid": [r["pid"] for r in rows], "camid": [r["camid"] for r in rows],
        "clothes_id": [r["clothes_id"] for r in rows] if has_clothes else [-1] * len(rows),
        "role": [r["role"] for r in rows], "track": [r["track"] for r in rows],
    })[list(COLUMNS)].astype({"path": str, "pid": "int64", "camid": "int64", "clothes_id": "int64",
                              "role": str, "track": str})
    query_roles = tuple(sorted(queries, key=lambda r: r != "query"))  # "query" first, else first appearance
    if is_video:
        modes: tuple[str, ...] = ("tracklet",)
    else:
        modes = ("standard", "CC", "SC") if has_clothes else ("standard",)
    return Dataset(name, folder, table, query_roles=query_roles, eval_modes=modes, is_video=is_video)


def _check_files(rows: list[dict[str, Any]], problems: _Problems) -> None:
    missing, folders = [], []
    seen: dict[str, int] = {}
    seen_raw: dict[str, str] = {}
    for r in rows:
        p = r["path"]
        if p is None:
            continue
        if os.path.isdir(p):
            folders.append(r)
            continue
        if not os.path.isfile(p):
            missing.append(r)
            continue
        key = os.path.realpath(p)
        if key in seen:
            same = "" if r["raw"] == seen_raw[key] else f" (as {seen_raw[key]!r})"
            problems.add(r["line"], f"image {r['raw']!r} is listed already on line {seen[key]}{same}")
        else:
            seen[key] = r["line"]
            seen_raw[key] = r["raw"]
    for r in folders:
        problems.add(r["line"], f"path {r['raw']!r} is a folder ({r['path']}), not an image file")
    for r in missing:
        problems.add(r["line"], f"image file {r['path']} does not exist (path {r['raw']!r}; relative paths "
                                "are read from the CSV's folder)")


def _check_tracks(rows: list[dict[str, Any]], has_track: bool, has_frame: bool, problems: _Problems) -> bool:
    """Whether this is a video dataset; notes the track/frame problems."""
    if has_frame and not has_track:
        problems.add(1, "column frame orders the frames of a track, but there is no track column "
                        "(add one, or drop frame)")
        return False
    if not has_track:
        return False
    given = [r for r in rows if r["track"]]
    if not given:  # an empty track column: an image dataset
        if any(r["frame_given"] for r in rows):
            problems.add(1, "column frame is filled but track is empty everywhere")
        return False
    for r in rows:
        if not r["track"]:
            problems.add(r["line"], f"track is empty, but {len(given)} other row(s) have one: in a video "
                                    "dataset every image belongs to a track")
    first: dict[str, dict[str, Any]] = {}
    frames: dict[tuple[str, int], int] = {}
    for r in given:
        t = r["track"]
        if t not in first:
            first[t] = r
            continue
        f = first[t]
        for c in ("role", "pid", "camid", "clothes_id"):
            if c in r and c in f and r[c] != f[c]:
                problems.add(r["line"], f"track {t!r} has {c} {r[c]!r} here but {f[c]!r} on line {f['line']} "
                                        f"(a track is one person, one camera, one outfit, one role)")
                break
    if has_frame:
        for r in given:
            if "frame" not in r:
                continue
            key = (r["track"], r["frame"])
            if key in frames:
                problems.add(r["line"], f"frame {r['frame']} of track {r['track']!r} is on line {frames[key]} already")
            else:
                frames[key] = r["line"]
    return True


def _order(rows: list[dict[str, Any]], has_frame: bool) -> list[dict[str, Any]]:
    """CSV order; the rows of a track gathered at its first row, by frame when given."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r["track"] or ("row", i), []).append(r)
    out = []
    for key, group in groups.items():
        if has_frame and not isinstance(key, tuple):
            group = sorted(group, key=lambda r: r["frame"])
        out += group
    return out


# --------------------------------------------------------------------------- writing

def manifest_text(images: pd.DataFrame, folder: str | os.PathLike) -> str:
    """An images table (the :data:`~reface_utils.data.datasets.COLUMNS`) as manifest CSV text,
    paths relative to ``folder`` (where the CSV goes) when the two share a folder below the
    file system's root (``/data/a.jpg`` from ``/data/lists``: ``../a.jpg``), else absolute;
    ``clothes_id`` is written when any is known (not -1), ``track`` when any is set."""
    folder = os.path.abspath(folder)
    out = pd.DataFrame({"path": [_relative(p, folder) for p in images["path"]]})
    for c in ("pid", "camid", "clothes_id", "role", "track"):
        if c == "clothes_id" and (images[c] == -1).all():
            continue
        if c == "track" and not (images[c].astype(str) != "").any():
            continue
        out[c] = images[c].to_numpy()
    return out.to_csv(index=False, lineterminator="\n")


def _relative(path: str, folder: str) -> str:
    path = os.path.abspath(path)
    try:
        common = os.path.commonpath([path, folder])
    except ValueError:  # another drive (Windows)
        return path
    if os.path.dirname(common) == common:  # only the file system root in common: keep it absolute
        return path
    return Path(os.path.relpath(path, folder)).as_posix()


def save_manifest(csv_path: str | os.PathLike, images: pd.DataFrame | Dataset) -> Path:
    """Write ``images`` (a :class:`Dataset` or its images table) as a manifest CSV, atomically;
    :func:`load_manifest` reads back the same table."""
    table = images.images if isinstance(images, Dataset) else images
    csv_path = Path(csv_path).expanduser()
    return atomic_write_text(csv_path, manifest_text(table, csv_path.absolute().parent))


SPEC = DatasetSpec(
    name=NAME,
    loader=load_manifest_root,
    title="your CSV (manifest)",
    layout=("<root> is a CSV (or a folder holding manifest.csv) with columns path,pid,camid,role"
            "[,clothes_id,track,frame], one row per image (see reface_utils.data.datasets.manifest)"),
    # no enrichment rules: decided from the data (the clothes filter where every image has
    # a clothes label, a vote per tracklet for video), unless the run's parameters say
)
SPECS = (SPEC,)
register_dataset(SPEC)
