"""What every dataset module shares: the :class:`Dataset` table, the errors, and the folder
walks and checks the parsers build on (each real folder read once, every skipped file noted).

The dataset modules of this package (``prcc.py``, ``ltcc.py``, ...) import from here; the
registry (``registry.py``) too, so nothing here looks at the registry: a parser passes its
own layout text (and usual folder names) to the walks whose errors show them, and a
parser read under another name (the demo reads the LTCC layout) shows the layout it reads.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

COLUMNS = ("path", "pid", "camid", "clothes_id", "role", "track")


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
# ``name`` in the helpers below is the dataset being read, for messages; ``layout`` is the
# layout text of the parser reading it (its spec's ``layout``), shown where a folder does
# not follow it: passed in, never looked up (the registry builds on this module).

def _missing(what: str, path: Path, name: str, layout: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{name}: {what} {path} does not exist. Expected layout: {layout} "
        f"(see reface_utils.data.datasets for details)")


def _resolve_root(name: str, root: str | os.PathLike | None, marker: str, layout: str,
                  usual_dirs: Sequence[str] = ()) -> Path:
    """The dataset folder: ``root`` itself, or ``root/<usual name>`` (one of ``usual_dirs``,
    the spec's) if only that has ``marker``; ``root=None`` is an error showing the layout."""
    if root is None:
        raise DatasetNotFoundError(f"load_dataset({name!r}) needs root=<the dataset folder>. "
                                   f"Expected layout: {layout}")
    root = Path(root).expanduser()
    if root.is_symlink() and not root.exists():
        raise DatasetNotFoundError(f"{name}: dataset folder {root} is a symbolic link that leads "
                                   f"nowhere (its target is missing, or the link loops back on itself)")
    if not root.is_dir():
        raise _missing("dataset folder", root, name, layout)
    if not (root / marker).exists():
        for sub in usual_dirs:
            if (root / sub / marker).exists():
                return (root / sub).absolute()
    return root.absolute()


def _require_dir(path: Path, name: str, layout: str, what: str = "split folder") -> Path:
    if path.is_symlink() and not path.exists():
        raise DatasetNotFoundError(f"{name}: {what} {path} is a symbolic link that leads nowhere "
                                   "(its target is missing, or the link loops back on itself)")
    if not path.is_dir():
        raise _missing(what, path, name, layout)
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


def _nonempty(paths: Sequence, folder: Path | str, name: str, layout: str, what: str = "images") -> None:
    if len(paths) == 0:
        raise DatasetError(f"{name}: split {folder} is empty (no {what} found). "
                           f"Expected layout: {layout}")


def _rank(keys: Iterable[str]) -> dict[str, int]:
    """Sorted distinct keys -> 0..K-1, the reference parsers' relabelling."""
    return {k: i for i, k in enumerate(sorted(set(keys)))}


def _labelled_rows(parsed: Sequence[tuple[str, Sequence[str], Sequence[tuple[str, ...]]]],
                   label: Callable[[tuple[str, ...]], tuple[int, int, str]]) -> dict[str, list]:
    """The rows of image files labelled by their names: ``parsed`` holds ``(role, files,
    name groups)`` per split, ``label(groups) -> (pid, camid, clothes key)``; ``clothes_id``
    is the key's rank among the keys of every split (the reference parsers' relabelling)."""
    labels = [[label(g) for g in groups] for _, _, groups in parsed]
    clothes = _rank(key for part in labels for _, _, key in part)
    rows: dict[str, list] = {k: [] for k in ("path", "pid", "camid", "clothes_id", "role")}
    for (role, files, _), part in zip(parsed, labels):
        rows["path"] += files
        rows["pid"] += [pid for pid, _, _ in part]
        rows["camid"] += [camid for _, camid, _ in part]
        rows["clothes_id"] += [clothes[key] for _, _, key in part]
        rows["role"] += [role] * len(files)
    return rows


def _report_table(report: Report) -> pd.DataFrame:
    return pd.DataFrame(report, columns=list(REPORT_COLUMNS)).astype(str) if report else _empty_report()


def _table(rows: dict[str, list]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if "track" not in df:
        df["track"] = ""
    df = df[list(COLUMNS)]
    return df.astype({"path": str, "pid": "int64", "camid": "int64", "clothes_id": "int64",
                      "role": str, "track": str})


def _folder_loader(load: Callable[[Any], Dataset]) -> Callable[[Any, int], Dataset]:
    """``loader(root, seed)`` for a parser that reads a folder: nothing is drawn, the seed is
    not used (``root=None`` is the parser's error: :func:`_resolve_root`)."""
    def loader(root: str | os.PathLike | None, seed: int) -> Dataset:
        return load(root)
    return loader
