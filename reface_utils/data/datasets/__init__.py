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
``CCVID``, ``VC-Clothes``, ``street42``/``42street``: each spec's ``usual_dirs``) is
accepted too.

A dataset is one module of this package: ``prcc.py``, ``ltcc.py``, ``last.py``,
``ccvid.py``, ``vcclothes.py`` (with its ``_sc``/``_cc`` camera subsets), ``street42.py``,
``demo.py`` and ``manifest.py`` (your CSV: its reader and writer too). Each
holds its parser and one :class:`DatasetSpec` (``spec.py``) with everything the project
knows about it: names, layout, loader, enrichment rules, evaluation facts, the paper
comparison, its CAL checkpoint, where to get it, and whether its default models are the
offline ones. Each registers its spec with :func:`register_dataset`, exactly as your
plugin registers yours, and the rest of the project asks :func:`dataset_spec` instead of
naming a dataset. ``common.py`` holds the :class:`Dataset` table, the errors and the
folder walks; ``registry.py`` the registry.

Expected layouts
----------------
(each dataset module's own text, gathered below)
"""
from __future__ import annotations

from .common import COLUMNS, REPORT_COLUMNS, Dataset, DatasetError, DatasetNotFoundError, SkippedFilesWarning
from .registry import (LAYOUTS, available_datasets, canonical_name, dataset_spec, load_dataset,
                       register_dataset, registered_enrichment_rules)
from .spec import DatasetLoader, DatasetSpec, EnrichmentRules, PaperComparison, PublishedResult, published
# The built-in datasets, in this order; each module registers its spec(s) as it is imported.
from . import prcc, ltcc, last, ccvid, vcclothes, street42, demo, manifest  # isort: skip
from .street42 import STREET42_UNKNOWN_PID

__all__ = [
    "Dataset", "DatasetError", "DatasetNotFoundError", "load_dataset", "canonical_name",
    "register_dataset", "available_datasets", "DatasetLoader", "registered_enrichment_rules",
    "DATASET_NAMES", "LAYOUTS", "STREET42_UNKNOWN_PID", "COLUMNS", "SkippedFilesWarning",
    "REPORT_COLUMNS", "DatasetSpec", "EnrichmentRules", "PaperComparison", "PublishedResult", "dataset_spec",
    "BUILT_IN_SPECS",
]

#: The specs of the built-in datasets with a layout of their own, in registration order
#: (the demo included; ``manifest``, your CSV, is registered too but not listed here).
BUILT_IN_SPECS: tuple[DatasetSpec, ...] = tuple(
    spec for module in (prcc, ltcc, last, ccvid, vcclothes, street42, demo) for spec in module.SPECS)
DATASET_NAMES = tuple(spec.name for spec in BUILT_IN_SPECS)

if __doc__ is not None:  # each layout's documentation lives with its parser (python -OO drops docstrings)
    __doc__ += "".join("\n" + module.__doc__[module.__doc__.index(f"\n{module.NAME}::\n") + 1:]
                       for module in (prcc, ltcc, last, ccvid, vcclothes, street42, demo) if module.__doc__)
