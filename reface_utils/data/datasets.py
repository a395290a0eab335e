"""Clothes-changing ReID datasets as one table: ``load_dataset(name, root) -> Dataset``.

Every supported dataset is read from its folder as its authors distribute it, and
becomes one :class:`pandas.DataFrame` with one row per image:

===========  =======  ==========================================================
column       dtype    meaning
===========  =======  ==========================================================
path         str      absolute path of the image file
pid          int      identity label, as the reference parser gives it (raw ids
                      from the file names for the test split, not relabelled)
camid        int      camera label (0-based where the dataset numbers cameras)
clothes_id   int      outfit label (0-based integers, see each dataset below)
role         str      ``gallery`` or ``query`` (PRCC: ``query_same``, ``query_diff``)
track        str      tracklet key for video datasets (CCVID, 42Street); ``""`` for
                      image datasets (the column is always there)
===========  =======  ==========================================================

Ids, cameras and clothes follow the parsers of guxinqian/Simple-CCReID (the CAL code,
also vendored by bar371/GEFF) because the evaluation protocol depends on them: which
gallery images are junk for a query is decided by ``pid``, ``camid`` and ``clothes_id``.
Only the test split is parsed (train/val folders are optional). Rows are sorted by
path within each role (CCVID: tracklets in list-file order, frames sorted), so the
table does not depend on the order the file system lists files in. Nothing is ever
written into a dataset folder.

Files that are not part of the layout are skipped, never silently: ``Dataset.file_report``
lists each one with its role and the reason (hidden file, not an image of the dataset's
type, dangling symlink, a folder where files belong, an empty 42Street tracklet ...), the
``skipped`` column of :meth:`Dataset.summary` counts them, and ``load_dataset`` warns
(:class:`SkippedFilesWarning`) with the counts and the first paths. Extensions are matched
without case (``.JPG`` and ``.PNG`` are images too). A LaST gallery image whose file name
names another person than its folder keeps the file name's label, as the reference parser
does, and is listed with action ``kept``. A folder that cannot be listed (permission
denied, a symlink loop) is an error naming it.

``root`` is the dataset folder itself (the one holding the layout below); the parent
folder that contains it under its usual name (``prcc``, ``LTCC_ReID``, ``last``,
``CCVID``, ``VC-Clothes``, ``street42``/``42street``) is accepted too.

Expected layouts
----------------
prcc::

    <root>/rgb/test/A/<pid>/<image>.jpg     gallery, camera A -> camid 0
    <root>/rgb/test/B/<pid>/<image>.jpg     query_same, camera B -> camid 1
    <root>/rgb/test/C/<pid>/<image>.jpg     query_diff, camera C -> camid 2
    (<root>/rgb/train, <root>/rgb/val: optional, not read)

  ``pid`` is the folder name. Cameras A and B show the same clothes, C the other
  outfit: ``clothes_id = 2 * rank(pid) + (1 if camera C else 0)``, where ``rank`` is
  the position of the pid among the sorted pid folders of camera A.

ltcc::

    <root>/query/<pid>_<clothes>_c<cam>_<frame>.png    query
    <root>/test/<pid>_<clothes>_c<cam>_<frame>.png     gallery
    (<root>/train: optional, not read)

  ``camid = cam - 1``. The clothes key is the ``<pid>_<clothes>`` prefix as written
  in the file name; ``clothes_id`` is its rank among the sorted keys of query + test.
  The generated ``demo`` dataset uses this layout and this parser.

last::

    <root>/test/query/<pid>_<...>.jpg             query
    <root>/test/gallery/<pid>/<pid>_<...>.jpg     gallery
    (<root>/train, <root>/val: optional, not read)

  No camera or clothes labels in test: every image is its own camera (query images
  ``camid = 0..Q-1`` in sorted order, gallery images ``Q..Q+G-1``) and
  ``clothes_id = pid``.

ccvid::

    <root>/query.txt      lines "<session>/<tracklet> <pid> <clothes label>"
    <root>/gallery.txt    same format
    <root>/<session>/<tracklet>/<frame files>
    (<root>/train.txt: optional, not read)

  One row per frame; ``track`` is the tracklet path as written in the list.
  ``camid = int(<tracklet>.split("_")[1])``, plus 12 for ``session3``. The clothes key
  is ``"<pid>_<clothes label>"``; ``clothes_id`` is its rank among the sorted keys of
  query + gallery.

vcclothes::

    <root>/query/<pid>-<cam>-<clothes>-<n>.jpg      query
    <root>/gallery/<pid>-<cam>-<clothes>-<n>.jpg    gallery
    (<root>/train: optional, not read)

  ``camid = cam - 1``; clothes key is ``<pid><clothes>`` (the two strings joined),
  ranked over query + gallery. ``vcclothes_sc`` keeps cameras 2 and 3 only and
  ``vcclothes_cc`` cameras 3 and 4 (the reference's same-clothes / clothes-changing
  subsets); ids are then ranked within the subset, as the reference does.

street42::

    <root>/gallery/<pid>_<...>.jpg|png                      gallery (annotated crops)
    <root>/test/tracklets/<video>/<pid>_<n>/<frame>.png     query tracklets
    <root>/extra_data/**/<crop>.jpg|png                     optional: unlabelled crops,
                                                            role "extra" (also "extra-data")
    (<root>/val, <root>/test/vids: optional, not read)

  One row per frame; ``track`` is ``"<video>/<pid>_<n>"``. 42Street has no camera or
  clothes labels: ``camid`` is 0 for the gallery and 1 for query frames (no pair is
  ever "same camera"), ``clothes_id`` is -1 (unknown: do not use the CC flag).
  ``pid`` 12 is the "unknown person" class, not scored (:data:`STREET42_UNKNOWN_PID`).
  Extra-data crops (the reference's ``--extra_data``) only enrich the gallery: they
  have no identity (``pid`` -1), camid 1 like the query frames and no track; they are
  read from every sub-folder, since the two downloads unpack into folders of their own.

demo::

    generated by :func:`reface_utils.data.demo.make_demo_dataset` in the ltcc layout
    (``root=None``: the cached copy under ``paths.demo_root()``).
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

__all__ = [
    "Dataset", "DatasetError", "DatasetNotFoundError", "load_dataset", "canonical_name",
    "register_dataset", "available_datasets", "DatasetLoader", "registered_enrichment_rules",
    "DATASET_NAMES", "LAYOUTS", "STREET42_UNKNOWN_PID", "COLUMNS", "SkippedFilesWarning",
    "REPORT_COLUMNS",
]

COLUMNS = ("path", "pid", "camid", "clothes_id", "role", "track")

#: 42Street's label for "a person who is none of the gallery identities".
STREET42_UNKNOWN_PID = 12

DATASET_NAMES = ("prcc", "ltcc", "last", "ccvid", "vcclothes", "vcclothes_sc",
                 "vcclothes_cc", "street42", "demo")

# Spellings users type -> canonical name (compared after lower-casing and dropping
# "-", "_", " ").
_ALIASES = {
    "prcc": "prcc",
    "ltcc": "ltcc", "ltccreid": "ltcc",
    "last": "last",
    "ccvid": "ccvid",
    "vcclothes": "vcclothes", "vcclothessc": "vcclothes_sc", "vcclothescc": "vcclothes_cc",
    "street42": "street42", "42street": "street42",
    "demo": "demo",
    "manifest": "manifest",
}

# The layouts shown in "missing folder" errors (also in the module docstring).
LAYOUTS = {
    "prcc": "<root>/rgb/test/{A,B,C}/<pid>/<image>.jpg",
    "ltcc": "<root>/{query,test}/<pid>_<clothes>_c<cam>_<frame>.png",
    "last": "<root>/test/query/<pid>_<...>.jpg and <root>/test/gallery/<pid>/<pid>_<...>.jpg",
    "ccvid": ("<root>/{query,gallery}.txt with lines '<session>/<tracklet> <pid> <clothes label>',"
              " frames in <root>/<session>/<tracklet>/"),
    "vcclothes": "<root>/{query,gallery}/<pid>-<cam>-<clothes>-<n>.jpg",
    "street42": ("<root>/gallery/<pid>_<...>.jpg|png and "
                 "<root>/test/tracklets/<video>/<pid>_<n>/<frame>.png"),
}
LAYOUTS["vcclothes_sc"] = LAYOUTS["vcclothes_cc"] = LAYOUTS["vcclothes"]
LAYOUTS["demo"] = LAYOUTS["ltcc"]
LAYOUTS["manifest"] = ("<root> is a CSV (or a folder holding manifest.csv) with columns path,pid,camid,role"
                       "[,clothes_id,track,frame], one row per image (see reface_utils.data.manifest)")

# Usual folder names, so that the parent of the dataset folder works as root too.
_USUAL_DIRS = {
    "prcc": ("prcc", "PRCC"),
    "ltcc": ("LTCC_ReID", "ltcc", "LTCC"),
    "last": ("last", "LaST"),
    "ccvid": ("CCVID", "ccvid"),
    "vcclothes": ("VC-Clothes", "vcclothes", "VC_Clothes"),
    "street42": ("street42", "42street", "42Street"),
}
_USUAL_DIRS["vcclothes_sc"] = _USUAL_DIRS["vcclothes_cc"] = _USUAL_DIRS["vcclothes"]


class DatasetError(ValueError):
    """A dataset folder whose content does not follow the dataset's layout."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset folder, split folder or list file that does not exist."""


class SkippedFilesWarning(UserWarning):
    """Some files of a dataset folder were skipped (or kept with a note): see Dataset.file_report."""


#: Columns of ``Dataset.file_report``: what happened to a file outside the layout, and why.
REPORT_COLUMNS = ("path", "role", "action", "reason")


def _empty_report() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=str) for c in REPORT_COLUMNS})


@dataclass(frozen=True, eq=False)
class Dataset:
    """One dataset's test split as a table (see the module docstring for columns).

    ``query_roles``: the query sets, each evaluated against the gallery on its own
    (``("query",)``; PRCC ``("query_same", "query_diff")``). ``extra_roles``: unlabelled
    images that only enrich the gallery (42Street ``("extra",)`` when its extra-data
    folder is there), never evaluated. ``eval_modes``: the
    evaluation modes the dataset defines (``standard``, ``CC``, ``SC`` for images;
    ``tracklet`` accuracy for video datasets; ``single-shot``: one gallery image per
    identity, drawn at random, averaged over draws, as PRCC's own protocol).
    ``camera_subsets``: further protocols on a subset of the cameras, ``(mode name, camera
    ids)``, evaluated in standard mode on the queries and gallery images of those cameras
    (VC-Clothes: CAL's ``vcclothes_cc``, cameras 3 and 4, beside the all-camera rows).
    """

    name: str
    root: Path
    images: pd.DataFrame
    query_roles: tuple[str, ...] = ("query",)
    eval_modes: tuple[str, ...] = ("standard",)
    is_video: bool = False
    camera_subsets: tuple[tuple[str, tuple[int, ...]], ...] = ()
    extra_roles: tuple[str, ...] = ()
    file_report: pd.DataFrame = field(default_factory=_empty_report)

    @property
    def roles(self) -> tuple[str, ...]:
        return ("gallery",) + tuple(self.query_roles) + tuple(self.extra_roles)

    def without_extra(self) -> "Dataset":
        """The same dataset without its extra (enrichment-only) images."""
        if not self.extra_roles:
            return self
        images = self.images[~self.images["role"].isin(self.extra_roles)].reset_index(drop=True)
        return replace(self, images=images, extra_roles=())

    def view(self, role: str) -> pd.DataFrame:
        """The rows of one role, in table order, with a fresh 0..n-1 index."""
        if role not in self.roles:
            raise KeyError(f"{self.name} has no role {role!r}; roles are {list(self.roles)}")
        return self.images[self.images["role"] == role].reset_index(drop=True)

    @property
    def gallery(self) -> pd.DataFrame:
        return self.view("gallery")

    @property
    def query(self) -> pd.DataFrame:
        """The query rows; PRCC has two query sets: use ``view("query_same"/"query_diff")``."""
        if self.query_roles != ("query",):
            raise KeyError(f"{self.name} has several query sets {list(self.query_roles)}: "
                           "use dataset.view(role)")
        return self.view("query")

    def summary(self) -> pd.DataFrame:
        """Counts per role: images, identities, cameras, outfits (+ tracklets for video),
        and, when any file was left out, ``skipped``: how many of that role's folders (see
        :meth:`skipped_report`)."""
        rows = {}
        skipped = self.file_report[self.file_report["action"] == "skipped"]
        for role in self.roles:
            part = self.images[self.images["role"] == role]
            row = {"images": len(part), "ids": part["pid"].nunique(),
                   "cameras": part["camid"].nunique(), "outfits": part["clothes_id"].nunique()}
            if self.is_video:
                row["tracklets"] = part.loc[part["track"] != "", "track"].nunique()
            if len(skipped):
                row["skipped"] = int((skipped["role"] == role).sum())
            rows[role] = row
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.index.name = "role"
        return out

    def skipped_report(self, examples: int = 3) -> str:
        """What was skipped or kept with a note: counts per reason and the first paths ("" if nothing)."""
        report = self.file_report
        if report.empty:
            return ""
        lines = [f"{self.name}: {int((report['action'] == 'skipped').sum())} file(s) skipped, "
                 f"{int((report['action'] == 'kept').sum())} kept with a note (Dataset.file_report lists them):"]
        for (action, reason), group in report.groupby(["action", "reason"], sort=True):
            shown = ", ".join(group["path"].head(examples))
            more = f" (+{len(group) - examples} more)" if len(group) > examples else ""
            lines.append(f"  {action} {len(group)}: {reason}: {shown}{more}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        counts = ", ".join(f"{r}={int((self.images['role'] == r).sum())}" for r in self.roles)
        return f"Dataset({self.name!r}, root={str(self.root)!r}, {counts})"


# --------------------------------------------------------------------------- helpers

def canonical_name(name: str) -> str:
    """``"VC-Clothes"`` -> ``"vcclothes"``, ``"42street"`` -> ``"street42"``, ..."""
    key = re.sub(r"[-_\s]", "", str(name).lower())
    if key not in _ALIASES:
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(available_datasets())}. Add yours "
                         "without code as a CSV (dataset='manifest', data_root=<the CSV>: reface_utils.data.manifest), "
                         "or with register_dataset in a plugin (the notebooks' `plugins` parameter)")
    return _ALIASES[key]


def _missing(what: str, path: Path, name: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{name}: {what} {path} does not exist. Expected layout: {LAYOUTS[name]} "
        f"(see reface_utils.data.datasets for details)")


def _resolve_root(name: str, root: str | os.PathLike, marker: str) -> Path:
    """The dataset folder: ``root`` itself, or ``root/<usual name>`` if only that has ``marker``."""
    root = Path(root).expanduser()
    if root.is_symlink() and not root.exists():
        raise DatasetNotFoundError(f"{name}: dataset folder {root} is a symbolic link that leads "
                                   f"nowhere (its target is missing, or the link loops back on itself)")
    if not root.is_dir():
        raise _missing("dataset folder", root, name)
    if not (root / marker).exists():
        for sub in _USUAL_DIRS.get(name, ()):
            if (root / sub / marker).exists():
                return (root / sub).absolute()
    return root.absolute()


def _require_dir(path: Path, name: str, what: str = "split folder") -> Path:
    if path.is_symlink() and not path.exists():
        raise DatasetNotFoundError(f"{name}: {what} {path} is a symbolic link that leads nowhere "
                                   "(its target is missing, or the link loops back on itself)")
    if not path.is_dir():
        raise _missing(what, path, name)
    return path


#: Skipped/kept files found while parsing: rows of Dataset.file_report.
Report = list


def _note(report: Report | None, path: str, role: str, reason: str, action: str = "skipped") -> None:
    if report is not None:
        report.append({"path": path, "role": role, "action": action, "reason": reason})


def _entries(folder: Path | str, name: str) -> list[tuple[str, str, str]]:
    """``(name, path, kind)`` of every entry, kind "file", "dir", "dangling" or "hidden";
    a folder that cannot be listed is a DatasetError naming it."""
    out = []
    try:
        with os.scandir(folder) as it:
            for e in it:
                if e.name.startswith("."):
                    out.append((e.name, e.path, "hidden"))
                    continue
                try:
                    kind = "dir" if e.is_dir() else "file" if e.is_file() else \
                        "dangling" if e.is_symlink() else "other"
                except OSError:  # a symlink loop (ELOOP) and the like
                    kind = "dangling"
                out.append((e.name, e.path, kind))
    except OSError as err:
        raise DatasetError(f"{name}: cannot list the folder {folder}: {err.strerror or err}. "
                           "Check its permissions (the dataset is only read, never written).") from err
    return sorted(out, key=lambda t: t[1])


_WHY = {"hidden": "hidden file", "dangling": "dangling or looping symbolic link",
        "dir": "a folder where image files belong", "other": "not a regular file"}


def _files(folder: Path, suffixes: Iterable[str], name: str = "dataset", role: str = "",
           report: Report | None = None) -> list[str]:
    """Plain files in ``folder`` with one of the suffixes (any case), sorted by full path.

    Hidden files (``.name``) are skipped, as the reference's ``glob`` skips them; every
    skipped entry is noted in ``report``.
    """
    suffixes = tuple(x.lower() for x in suffixes)
    return _pick(folder, name, role, report, lambda entry, kind: kind == "file" and entry.lower().endswith(suffixes),
                 f"not a {'/'.join(suffixes)} file")


def _files_below(folder: Path, suffixes: Iterable[str], name: str, role: str, report: Report | None) -> list[str]:
    """:func:`_files` of ``folder`` and of every folder below it, sorted by full path.

    Each real folder is read once: a symbolic link back to a folder above (a loop, e.g.
    ``up -> ..``) or to a folder already read is skipped and noted in ``report``, so a
    loop can neither hang the walk nor pull in the rest of the dataset.
    """
    out: list[str] = []
    seen: set[str] = set()
    pending = [Path(folder)]
    while pending:
        current = pending.pop()
        real = os.path.realpath(current)
        if real in seen:
            _note(report, str(current), role, f"folder read already (a symbolic link to {real})")
            continue
        seen.add(real)
        out += _files(current, suffixes, name, role, report)
        for sub in _subdirs(current, name, role):
            target = os.path.realpath(sub)
            if target == real or real.startswith(target.rstrip(os.sep) + os.sep):
                _note(report, sub, role, f"symbolic link loop: leads back to {target}, a folder above it")
                continue
            pending.append(Path(sub))
    return sorted(out)


def _check_no_overlap(name: str, extra: Sequence[str], labelled: Sequence[str], extra_dir: Path) -> None:
    """Extra (enrichment-only) images must not be test images under another name: they
    would leak the test split into the enrichment."""
    def identity(path: str) -> tuple[int, int]:  # the file itself: symbolic and hard links alike
        st = os.stat(path)
        return st.st_dev, st.st_ino

    test_files = {identity(p) for p in labelled}
    shared = [p for p in extra if identity(p) in test_files]
    if shared:
        more = f" (+{len(shared) - 3} more)" if len(shared) > 3 else ""
        raise DatasetError(f"{name}: {len(shared)} file(s) under {extra_dir} are images of the test split "
                           f"(gallery or query), e.g. {', '.join(shared[:3])}{more}. Extra data must be other "
                           "images: remove the links or copies that lead into the gallery or test folders.")


def _subdirs(folder: Path, name: str = "dataset", role: str = "", report: Report | None = None,
             what: str = "sub-folders") -> list[str]:
    return _pick(folder, name, role, report, lambda entry, kind: kind == "dir", f"a file where {what} belong")


def _pick(folder: Path, name: str, role: str, report: Report | None, keep: Callable[[str, str], bool],
          why_not_file: str) -> list[str]:
    """Paths of the entries of ``folder`` that ``keep(entry, kind)`` accepts; every other
    entry is noted in ``report`` (a file with ``why_not_file``, anything else with why)."""
    out = []
    for entry, path, kind in _entries(folder, name):
        if keep(entry, kind):
            out.append(path)
        else:
            _note(report, path, role, why_not_file if kind == "file" else _WHY[kind])
    return out


def _lower_ext(filename: str) -> str:
    stem, ext = os.path.splitext(filename)
    return stem + ext.lower()


def _match_all(paths: Sequence[str], pattern: re.Pattern, name: str, expected: str) -> list[tuple[str, ...]]:
    """Match every file name against ``pattern``; the first that does not is named."""
    groups = []
    for p in paths:
        m = pattern.fullmatch(_lower_ext(os.path.basename(p)))
        if m is None:
            raise DatasetError(f"{name}: file {p} does not match the file name pattern "
                               f"{expected}. Remove or rename it.")
        groups.append(m.groups())
    return groups


def _nonempty(paths: Sequence, folder: Path | str, name: str, what: str = "images") -> None:
    if len(paths) == 0:
        raise DatasetError(f"{name}: split {folder} is empty (no {what} found). "
                           f"Expected layout: {LAYOUTS[name]}")


def _rank(keys: Iterable[str]) -> dict[str, int]:
    """Sorted distinct keys -> 0..K-1, the reference parsers' relabelling."""
    return {k: i for i, k in enumerate(sorted(set(keys)))}


def _report_table(report: Report) -> pd.DataFrame:
    return pd.DataFrame(report, columns=list(REPORT_COLUMNS)).astype(str) if report else _empty_report()


def _table(rows: dict[str, list]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if "track" not in df:
        df["track"] = ""
    df = df[list(COLUMNS)]
    return df.astype({"path": str, "pid": "int64", "camid": "int64", "clothes_id": "int64",
                      "role": str, "track": str})


# --------------------------------------------------------------------------- parsers

def _load_prcc(root: Path) -> Dataset:
    name = "prcc"
    root = _resolve_root(name, root, "rgb")
    test = _require_dir(root / "rgb" / "test", name)
    cams = {c: _require_dir(test / c, name, "camera folder") for c in "ABC"}

    report: Report = []
    roles = {"A": "gallery", "B": "query_same", "C": "query_diff"}

    def pid_dirs(cam: str, note: bool = False) -> list[tuple[int, str]]:
        out = []
        for d in _subdirs(cams[cam], name, roles[cam], report if note else None, "<pid> folders"):
            if not os.path.basename(d).isdigit():
                raise DatasetError(f"{name}: folder {d} is not a person id folder "
                                   f"(expected a number). Expected layout: {LAYOUTS[name]}")
            out.append((int(os.path.basename(d)), d))
        return out

    # Clothes ids are numbered from the pids of the gallery camera A (reference rule).
    label = {pid: i for i, pid in enumerate(sorted(p for p, _ in pid_dirs("A")))}
    rows: dict[str, list] = {k: [] for k in ("path", "pid", "camid", "clothes_id", "role")}
    for camid, (cam, role) in enumerate((("A", "gallery"), ("B", "query_same"), ("C", "query_diff"))):
        n_before = len(rows["path"])
        for pid, d in pid_dirs(cam, note=True):
            if pid not in label:
                raise DatasetError(f"{name}: person {pid} ({d}) has no gallery folder in "
                                   f"{cams['A']}; every test id must appear in camera A")
            files = _files(Path(d), (".jpg",), name, role, report)
            rows["path"] += files
            rows["pid"] += [pid] * len(files)
            rows["camid"] += [camid] * len(files)
            rows["clothes_id"] += [2 * label[pid] + (cam == "C")] * len(files)
            rows["role"] += [role] * len(files)
        _nonempty(rows["path"][n_before:], cams[cam], name)
    return Dataset(name, root, _table(rows), query_roles=("query_same", "query_diff"),
                   eval_modes=("standard", "single-shot"), file_report=_report_table(report))


_LTCC_NAME = re.compile(r"((\d+)_(\d+))_c(\d+)(?:_.*)?\.png")


def _load_ltcc(root: Path, name: str = "ltcc") -> Dataset:
    root = _resolve_root(name, root, "query")
    splits = (("test", "gallery"), ("query", "query"))
    parsed = []
    report: Report = []
    for folder, role in splits:
        d = _require_dir(root / folder, name)
        files = _files(d, (".png",), name, role, report)
        _nonempty(files, d, name)
        parsed.append((role, files, _match_all(files, _LTCC_NAME, name,
                                               "<pid>_<clothes>_c<cam>_<frame>.png")))
    clothes = _rank(g[0] for _, _, groups in parsed for g in groups)
    rows: dict[str, list] = {k: [] for k in ("path", "pid", "camid", "clothes_id", "role")}
    for role, files, groups in parsed:
        rows["path"] += files
        rows["pid"] += [int(g[1]) for g in groups]
        rows["camid"] += [int(g[3]) - 1 for g in groups]
        rows["clothes_id"] += [clothes[g[0]] for g in groups]
        rows["role"] += [role] * len(files)
    return Dataset(name, root, _table(rows), eval_modes=("standard", "CC", "SC"),
                   file_report=_report_table(report))


_LAST_NAME = re.compile(r"(\d+)(?:_.*)?\.jpg")


def _load_last(root: Path) -> Dataset:
    name = "last"
    root = _resolve_root(name, root, "test")
    test = _require_dir(root / "test", name)
    qdir = _require_dir(test / "query", name)
    gdir = _require_dir(test / "gallery", name)
    report: Report = []
    query = _files(qdir, (".jpg",), name, "query", report)
    _nonempty(query, qdir, name)
    gallery = sorted(f for d in _subdirs(gdir, name, "gallery", report, "<pid> folders")
                     for f in _files(Path(d), (".jpg",), name, "gallery", report))
    _nonempty(gallery, gdir, name, "images in <pid> sub-folders")
    pattern = "<pid>_<...>.jpg"
    q_pid = [int(g[0]) for g in _match_all(query, _LAST_NAME, name, pattern)]
    g_pid = [int(g[0]) for g in _match_all(gallery, _LAST_NAME, name, pattern)]
    for path, pid in zip(gallery, g_pid):
        folder = os.path.basename(os.path.dirname(path))
        if not folder.isdigit() or int(folder) != pid:
            _note(report, path, "gallery", f"its name says person {pid}, its folder {folder!r}; "
                  "labelled by the name, as the reference parser does", action="kept")
    nq = len(query)
    rows = {
        "path": gallery + query,
        "pid": g_pid + q_pid,
        # Every image is its own camera; queries first, as the reference numbers them.
        "camid": list(range(nq, nq + len(gallery))) + list(range(nq)),
        "clothes_id": g_pid + q_pid,  # no clothes labels in LaST test
        "role": ["gallery"] * len(gallery) + ["query"] * nq,
    }
    return Dataset(name, root, _table(rows), eval_modes=("standard",), file_report=_report_table(report))


def _read_list(path: Path, name: str) -> list[tuple[str, str, str, int]]:
    """CCVID list file -> (tracklet, pid, clothes label, line number)."""
    if not path.is_file():
        raise _missing("list file", path, name)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{name}: cannot read list file {path}: {err}") from err
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or not fields[1].isdigit():
            raise DatasetError(f"{name}: {path} line {n}: expected '<session>/<tracklet> <pid> "
                               f"<clothes label>', got {line.strip()!r}")
        out.append((fields[0], fields[1], fields[2], n))
    if not out:
        raise DatasetError(f"{name}: list file {path} is empty (no tracklets). "
                           f"Expected layout: {LAYOUTS[name]}")
    return out


def _ccvid_camid(tracklet: str, where: str) -> int:
    # Reference rule: the camera is the 2nd "_" field of the tracklet path; session3
    # cameras are shifted by 12 so that they never equal session1/2 cameras.
    parts = tracklet.split("_")
    if len(parts) < 2 or not parts[1].isdigit():
        raise DatasetError(f"ccvid: {where}: tracklet {tracklet!r} does not match "
                           "'<session>/<pid>_<cam>' (cannot read its camera)")
    cam = int(parts[1])
    return cam + 12 if tracklet.split("/")[0] == "session3" else cam


#: CCVID frame files (the reference globs every file of a tracklet; its frames are .jpg).
_FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def _load_ccvid(root: Path) -> Dataset:
    name = "ccvid"
    root = _resolve_root(name, root, "query.txt")
    lists = {role: _read_list(root / f"{role}.txt", name) for role in ("gallery", "query")}
    clothes = _rank(f"{pid}_{c}" for entries in lists.values() for _, pid, c, _ in entries)
    rows: dict[str, list] = {k: [] for k in COLUMNS}
    report: Report = []
    for role, entries in lists.items():
        list_file = root / f"{role}.txt"
        for tracklet, pid, clothes_label, n in entries:
            where = f"{list_file} line {n}"
            camid = _ccvid_camid(tracklet, where)
            folder = root / tracklet
            if not folder.is_dir():
                raise DatasetNotFoundError(f"ccvid: {where}: tracklet folder {folder} does not "
                                           f"exist. Expected layout: {LAYOUTS[name]}")
            frames = _files(folder, _FRAME_SUFFIXES, name, role, report)
            if not frames:
                raise DatasetError(f"ccvid: {where}: tracklet folder {folder} holds no frames "
                                   f"({'/'.join(_FRAME_SUFFIXES)} files)")
            k = len(frames)
            rows["path"] += frames
            rows["pid"] += [int(pid)] * k
            rows["camid"] += [camid] * k
            rows["clothes_id"] += [clothes[f"{pid}_{clothes_label}"]] * k
            rows["role"] += [role] * k
            rows["track"] += [tracklet] * k
    return Dataset(name, root, _table(rows), eval_modes=("tracklet",), is_video=True,
                   file_report=_report_table(report))


_VC_NAME = re.compile(r"(\d+)-(\d+)-(\d+)-(\d+)\.jpg")
_VC_CAMERAS = {"vcclothes": None, "vcclothes_sc": (2, 3), "vcclothes_cc": (3, 4)}


def _load_vcclothes(root: Path, name: str = "vcclothes") -> Dataset:
    keep = _VC_CAMERAS[name]
    root = _resolve_root(name, root, "query")
    parsed = []
    report: Report = []
    for folder, role in (("gallery", "gallery"), ("query", "query")):
        d = _require_dir(root / folder, name)
        files = _files(d, (".jpg",), name, role, report)
        _nonempty(files, d, name)
        groups = _match_all(files, _VC_NAME, name, "<pid>-<cam>-<clothes>-<n>.jpg")
        if keep is not None:  # camera subset of the reference's sc/cc variants
            kept = [(f, g) for f, g in zip(files, groups) if int(g[1]) in keep]
            files, groups = [f for f, _ in kept], [g for _, g in kept]
            _nonempty(files, d, name, f"images of cameras {keep}")
        parsed.append((role, files, groups))
    clothes = _rank(g[0] + g[2] for _, _, groups in parsed for g in groups)
    rows: dict[str, list] = {k: [] for k in ("path", "pid", "camid", "clothes_id", "role")}
    for role, files, groups in parsed:
        rows["path"] += files
        rows["pid"] += [int(g[0]) for g in groups]
        rows["camid"] += [int(g[1]) - 1 for g in groups]
        rows["clothes_id"] += [clothes[g[0] + g[2]] for g in groups]
        rows["role"] += [role] * len(files)
    # the all-camera rows are GEFF's protocol; CAL's vcclothes_cc (cameras 3 and 4) beside them
    subsets = (("cameras-3-4", tuple(c - 1 for c in _VC_CAMERAS["vcclothes_cc"])),) if keep is None else ()
    return Dataset(name, root, _table(rows), eval_modes=("standard", "CC", "SC"), camera_subsets=subsets,
                   file_report=_report_table(report))


_STREET42_GALLERY = re.compile(r"(\d+)_.*\.(?:jpg|png)")
_STREET42_TRACK = re.compile(r"(\d+)_.*")


def _load_street42(root: Path) -> Dataset:
    name = "street42"
    root = _resolve_root(name, root, "gallery")
    gdir = _require_dir(root / "gallery", name)
    tdir = _require_dir(root / "test" / "tracklets", name)
    report: Report = []
    gallery = _files(gdir, (".jpg", ".png"), name, "gallery", report)
    _nonempty(gallery, gdir, name)
    g_pid = [int(g[0]) for g in _match_all(gallery, _STREET42_GALLERY, name, "<pid>_<...>.jpg|png")]
    rows: dict[str, list] = {"path": list(gallery), "pid": g_pid, "camid": [0] * len(gallery),
                             "clothes_id": [-1] * len(gallery), "role": ["gallery"] * len(gallery),
                             "track": [""] * len(gallery)}
    n_tracks = 0
    for video in _subdirs(tdir, name, "query", report, "<video> folders"):
        for track_dir in _subdirs(Path(video), name, "query", report, "<pid>_<n> tracklet folders"):
            track_name = os.path.basename(track_dir)
            m = _STREET42_TRACK.fullmatch(track_name)
            if m is None:
                raise DatasetError(f"{name}: tracklet folder {track_dir} does not match "
                                   "<pid>_<n> (the folder name carries the identity)")
            frames = _files(Path(track_dir), (".png",), name, "query", report)
            if not frames:
                _note(report, track_dir, "query", "empty tracklet (no .png frames)")
            k = len(frames)
            n_tracks += 1
            rows["path"] += frames
            rows["pid"] += [int(m.group(1))] * k
            rows["camid"] += [1] * k
            rows["clothes_id"] += [-1] * k
            rows["role"] += ["query"] * k
            rows["track"] += [f"{os.path.basename(video)}/{track_name}"] * k
    _nonempty(rows["path"][len(gallery):], tdir, name, "tracklet frames")
    extra_roles: tuple[str, ...] = ()
    extra_dir = next((root / d for d in ("extra_data", "extra-data") if (root / d).is_dir()), None)
    if extra_dir is not None:
        extra = _files_below(extra_dir, (".jpg", ".png"), name, "extra", report)
        _check_no_overlap(name, extra, rows["path"], extra_dir)
        _nonempty(extra, extra_dir, name, "extra-data crops (.jpg/.png); remove the empty folder to run without")
        n = len(extra)
        rows["path"] += extra
        rows["pid"] += [-1] * n
        rows["camid"] += [1] * n
        rows["clothes_id"] += [-1] * n
        rows["role"] += ["extra"] * n
        rows["track"] += [""] * n
        extra_roles = ("extra",)
    return Dataset(name, root, _table(rows), eval_modes=("tracklet",), is_video=True, extra_roles=extra_roles,
                   file_report=_report_table(report))


def _load_demo(root: str | os.PathLike | None, seed: int) -> Dataset:
    from . import demo  # local import: demo pulls in image assets, datasets must stay light

    if root is not None and (Path(root) / demo.MANIFEST_NAME).is_file():
        folder = Path(root)  # an already generated demo folder
    else:
        if root is not None:
            _check_demo_parent(Path(root).expanduser())
        folder = demo.make_demo_dataset(root=root, seed=seed)
    return _load_ltcc(folder, name="demo")


def _check_demo_parent(root: Path) -> None:
    """The demo is generated under REFACE_HOME, or into a new or empty folder, or next to
    other generated demos: never into a folder of the user's (say, a real LTCC tree)."""
    if not root.exists():
        return
    if not root.is_dir():
        raise DatasetError(f"demo: data_root {root} is a file, not a folder")
    foreign = sorted(p.name for p in root.iterdir() if not (p.name.startswith(("demo-", ".demo-"))))
    if foreign:
        raise DatasetError(
            f"demo: data_root {root} is an existing folder with other content ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); the demo is never written into a folder of yours. "
            "Leave data_root unset (the demo lives under $REFACE_HOME), give a new or empty folder, "
            "or, for a real dataset there, set dataset to its name (e.g. dataset='ltcc').")


# --------------------------------------------------------------------------- entry point

def load_dataset(name: str, root: str | os.PathLike | None = None, *, seed: int = 0) -> Dataset:
    """Load the test split of a supported dataset as a :class:`Dataset`.

    ``name``: ``prcc``, ``ltcc``, ``last``, ``ccvid``, ``vcclothes`` (also
    ``vcclothes_sc``/``vcclothes_cc``), ``street42`` (alias ``42street``) or ``demo``;
    case, ``-`` and ``_`` do not matter. ``root``: the dataset folder (layouts in the
    module docstring). For ``demo`` it may be ``None`` (the cached demo, generated on
    first use with ``seed``), a generated demo folder, or the folder to generate it in.
    """
    dataset = _load(canonical_name(name), root, seed)
    report = dataset.skipped_report()
    if report:
        warnings.warn(report, SkippedFilesWarning, stacklevel=2)
    return dataset


#: ``loader(root, seed) -> Dataset``: what :func:`register_dataset` takes.
DatasetLoader = Callable[[Any, int], Dataset]


def _load_manifest(root: str | os.PathLike | None, seed: int) -> Dataset:
    from .manifest import load_manifest_root  # local import: manifest.py builds on this module
    return load_manifest_root(root, seed)


def _needs_root(canonical: str, load: Callable[[Any], Dataset]) -> DatasetLoader:
    def loader(root: str | os.PathLike | None, seed: int) -> Dataset:
        if root is None:
            raise DatasetNotFoundError(f"load_dataset({canonical!r}) needs root=<the dataset folder>. "
                                       f"Expected layout: {LAYOUTS[canonical]}")
        return load(root)
    return loader


# The registry behind load_dataset: canonical name -> loader (built-ins below, yours via register_dataset).
_LOADERS: dict[str, DatasetLoader] = {
    "prcc": _needs_root("prcc", _load_prcc),
    "ltcc": _needs_root("ltcc", _load_ltcc),
    "last": _needs_root("last", _load_last),
    "ccvid": _needs_root("ccvid", _load_ccvid),
    **{v: _needs_root(v, lambda root, v=v: _load_vcclothes(root, v)) for v in ("vcclothes", "vcclothes_sc", "vcclothes_cc")},
    "street42": _needs_root("street42", _load_street42),
    "demo": _load_demo,
    "manifest": _load_manifest,
}


#: Enrichment rules registered with a dataset (``register_dataset(..., enrichment=...)``).
_ENRICHMENT_RULES: dict[str, dict[str, Any]] = {}
_RULE_NAMES = ("clothes_changing", "vote_by_track", "why")


def register_dataset(name: str, loader: DatasetLoader, *, aliases: Sequence[str] = (), layout: str = "",
                     enrichment: dict[str, Any] | None = None, overwrite: bool = False) -> None:
    """Make ``load_dataset(name, root, seed=...)`` call ``loader(root, seed)`` (a :class:`Dataset`).

    ``aliases`` are other spellings; ``layout`` is the folder layout shown in errors. Names
    compare after lower-casing and dropping ``-``, ``_`` and spaces, like the built-in ones.
    ``enrichment``: the dataset's enrichment rules, ``{"clothes_changing": bool,
    "vote_by_track": bool, "why": str}`` (docs/METHOD.md section 3); without them the run's
    parameters and the documented defaults apply. Evaluation modes come with the
    :class:`Dataset` the loader returns (``eval_modes``).
    """
    key = re.sub(r"[-_\s]", "", str(name).lower())
    keys = [key, *(re.sub(r"[-_\s]", "", str(a).lower()) for a in aliases)]
    taken = [k for k in keys if k in _ALIASES]
    if taken and not overwrite:
        raise ValueError(f"a dataset called {taken[0]!r} is registered already (pass overwrite=True)")
    if enrichment is not None:
        unknown = sorted(set(enrichment) - set(_RULE_NAMES))
        bad = [k for k in ("clothes_changing", "vote_by_track") if not isinstance(enrichment.get(k, False), bool)]
        if unknown or bad:
            raise ValueError(f"enrichment rules of dataset {name!r}: known keys are {list(_RULE_NAMES)} "
                             f"(clothes_changing and vote_by_track True or False); got {dict(enrichment)!r}")
    _LOADERS[key] = loader
    _ALIASES.update({k: key for k in keys})
    LAYOUTS[key] = layout or "see the loader registered for it"
    if enrichment is not None:
        _ENRICHMENT_RULES[key] = dict(enrichment)
    else:
        _ENRICHMENT_RULES.pop(key, None)


def registered_enrichment_rules(name: str) -> dict[str, Any] | None:
    """The enrichment rules registered with dataset ``name`` (canonical), or None."""
    rules = _ENRICHMENT_RULES.get(name)
    return dict(rules) if rules is not None else None


def available_datasets() -> list[str]:
    """Canonical names :func:`load_dataset` accepts: the built-in ones and the registered ones."""
    return list(_LOADERS)


def _load(canonical: str, root: str | os.PathLike | None, seed: int) -> Dataset:
    return _LOADERS[canonical](root, seed)
