"""42Street (the GEFF authors' theatre-play dataset): its parser and its spec.

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
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .common import (Dataset, DatasetError, Report, _check_no_overlap, _files, _files_below, _match_all,
                     _folder_loader, _nonempty, _note, _report_table, _require_dir, _resolve_root, _subdirs, _table)
from .registry import register_dataset
from .spec import DatasetSpec, EnrichmentRules, PaperComparison, published

NAME = "street42"

#: 42Street's label for "a person who is none of the gallery identities" (GEFF evaluate.py:
#: label 12 is "unknown person", not scored).
STREET42_UNKNOWN_PID = 12
#: Tracklets with fewer frames are not scored (GEFF evaluate.py TRACK_MIN_IMGS).
STREET42_MIN_FRAMES = 10
#: The extra-data folder, under either spelling.
EXTRA_DIRS = ("extra_data", "extra-data")

_STREET42_GALLERY = re.compile(r"(\d+)_.*\.(?:jpg|png)")
_STREET42_TRACK = re.compile(r"(\d+)_.*")


def load_street42(root: Path) -> Dataset:
    name, layout = NAME, SPEC.layout
    root = _resolve_root(name, root, "gallery", layout, SPEC.usual_dirs)
    gdir = _require_dir(root / "gallery", name, layout)
    tdir = _require_dir(root / "test" / "tracklets", name, layout)
    report: Report = []
    gallery = _files(gdir, (".jpg", ".png"), name, "gallery", report)
    _nonempty(gallery, gdir, name, layout)
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
    _nonempty(rows["path"][len(gallery):], tdir, name, layout, "tracklet frames")
    extra_roles: tuple[str, ...] = ()
    extra_dir = next((root / d for d in EXTRA_DIRS if (root / d).is_dir()), None)
    if extra_dir is not None:
        extra = _files_below(extra_dir, (".jpg", ".png"), name, "extra", report)
        _check_no_overlap(name, extra, rows["path"], extra_dir)
        _nonempty(extra, extra_dir, name, layout,
                  "extra-data crops (.jpg/.png); remove the empty folder to run without")
        n = len(extra)
        rows["path"] += extra
        rows["pid"] += [-1] * n
        rows["camid"] += [1] * n
        rows["clothes_id"] += [-1] * n
        rows["role"] += ["extra"] * n
        rows["track"] += [""] * n
        extra_roles = ("extra",)
    return Dataset(name, root, _table(rows), eval_modes=SPEC.eval_modes, is_video=True, extra_roles=extra_roles,
                   file_report=_report_table(report))


SPEC = DatasetSpec(
    name=NAME,
    loader=_folder_loader(load_street42),
    title="42Street",
    aliases=("42street",),
    layout=("<root>/gallery/<pid>_<...>.jpg|png and "
            "<root>/test/tracklets/<video>/<pid>_<n>/<frame>.png"),
    usual_dirs=("street42", "42street", "42Street"),
    eval_modes=("tracklet",),
    unknown_pid=STREET42_UNKNOWN_PID,
    min_track_frames=STREET42_MIN_FRAMES,
    extra_data=True,
    enrichment=EnrichmentRules(False, False, "frame by frame, no cameras or clothes; extra data when present"),
    paper=PaperComparison(
        rows=(("query", "tracklet"),),
        why="tracklet accuracy; 'with extra data' is the fused+enriched+extra row",
        published=(published({"09be7de": (75.0, None), "90717cc": (75.0, None)})
                   + published({"09be7de": (80.7, None), "90717cc": (92.2, None)}, variant="with extra data"))),
    # no CAL checkpoint is published for 42Street: reid_checkpoint None
    how_to_get="42Street is released by the GEFF authors on Google Drive (see https://github.com/bar371/GEFF)",
    # the dataset, then the two extra-data archives
    downloads=("https://drive.google.com/file/d/1BP1TR5gNMB1ByyReFGJ4G4Zt6gHd4J0G",
               "https://drive.google.com/file/d/10s_IJvogVZaIXtPirJv_idKHIQTJryDx",
               "https://drive.google.com/file/d/1E36IoB-Iyi2XNgfOXoi6d1CQKu2EDP2o"),
)
SPECS = (SPEC,)
register_dataset(SPEC)
