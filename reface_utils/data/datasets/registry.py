"""The dataset registry: canonical name -> :class:`DatasetSpec`, and the functions on it.

Built-in datasets register here exactly as yours do (each module of this package calls
:func:`register_dataset` with its spec); :func:`load_dataset` and every part of the
project that needs a fact about a dataset go through :func:`dataset_spec`.
"""
from __future__ import annotations

import os
import re
import warnings
from typing import Any, Mapping, Sequence

from .common import Dataset, SkippedFilesWarning
from .spec import DatasetLoader, DatasetSpec, EnrichmentRules

__all__ = ["register_dataset", "load_dataset", "canonical_name", "available_datasets", "dataset_spec",
           "registered_enrichment_rules", "LAYOUTS"]

#: The registry: canonical name -> spec, in registration order.
_SPECS: dict[str, DatasetSpec] = {}
#: Spellings users type -> canonical name (compared after lower-casing and dropping "-", "_", " ").
_ALIASES: dict[str, str] = {}
#: The layouts shown in "missing folder" errors, by canonical name (each spec's ``layout``).
LAYOUTS: dict[str, str] = {}

_RULE_NAMES = ("clothes_changing", "vote_by_track", "why")
_NO_LAYOUT = "see the loader registered for it"


def _key(name: str) -> str:
    return re.sub(r"[-_\s]", "", str(name).lower())


def canonical_name(name: str) -> str:
    """``"VC-Clothes"`` -> ``"vcclothes"``, ``"42street"`` -> ``"street42"``, ..."""
    key = _key(name)
    if key not in _ALIASES:
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(available_datasets())}. Add yours "
                         "without code as a CSV (dataset='manifest', data_root=<the CSV>: "
                         "reface_utils.data.datasets.manifest), "
                         "or with register_dataset in a plugin (the notebooks' `plugins` parameter)")
    return _ALIASES[key]


def dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of dataset ``name`` (any spelling :func:`canonical_name` accepts)."""
    return _SPECS[canonical_name(name)]


def _rules(name: str, enrichment: Mapping[str, Any] | EnrichmentRules | None) -> EnrichmentRules | None:
    """The ``enrichment=`` of :func:`register_dataset` as :class:`EnrichmentRules`, every
    problem named at once (a misspelt rule would otherwise be dropped without a word)."""
    if enrichment is None or isinstance(enrichment, EnrichmentRules):
        return enrichment
    if not isinstance(enrichment, Mapping):
        raise TypeError(f"enrichment rules of dataset {name!r} must be a dict {{'clothes_changing': True/False, "
                        "'vote_by_track': True/False, 'why': text}, EnrichmentRules or None (decided from the "
                        f"data), got {enrichment!r}")
    problems = [f"unknown key {k!r}" for k in sorted(set(enrichment) - set(_RULE_NAMES), key=str)]
    problems += EnrichmentRules.problems(enrichment)
    if problems:
        raise ValueError(f"enrichment rules of dataset {name!r}: {'; '.join(problems)}. Known keys are "
                         f"{list(_RULE_NAMES)}, e.g. {{'clothes_changing': True, 'vote_by_track': False, "
                         "'why': 'as the paper'}")
    return EnrichmentRules(enrichment.get("clothes_changing", False), enrichment.get("vote_by_track", False),
                           enrichment.get("why", "registered with the dataset"))


def register_dataset(name: str | DatasetSpec, loader: DatasetLoader | None = None, *, aliases: Sequence[str] = (),
                     layout: str = "", enrichment: Mapping[str, Any] | EnrichmentRules | None = None,
                     overwrite: bool = False) -> DatasetSpec:
    """Make ``load_dataset(name, root, seed=...)`` call ``loader(root, seed)`` (a :class:`Dataset`).

    Either a whole :class:`DatasetSpec` (``register_dataset(spec)``, as the built-in datasets
    do), or ``name`` and ``loader`` with, optionally: ``aliases``, other spellings;
    ``layout``, the folder layout shown in errors; ``enrichment``, the dataset's enrichment
    rules, ``{"clothes_changing": bool, "vote_by_track": bool, "why": str}`` (docs/METHOD.md
    section 3), without which the run's parameters and the documented defaults apply. The
    name given this way is stored lower-cased without ``-``, ``_`` and spaces. Names compare
    after lower-casing and dropping ``-``, ``_`` and spaces, like the built-in ones.
    Evaluation modes come with the :class:`Dataset` the loader returns (``eval_modes``).
    Returns the registered spec.
    """
    if isinstance(name, DatasetSpec):
        if loader is not None or aliases or layout or enrichment is not None:
            raise TypeError("register_dataset(spec) takes the spec alone (and overwrite): the spec holds the "
                            "loader, aliases, layout and enrichment rules")
        spec = name
    else:
        if loader is None or not callable(loader):
            raise TypeError(f"register_dataset({name!r}, loader): loader must be callable as loader(root, seed) "
                            f"-> Dataset, got {loader!r}")
        spec = DatasetSpec(name=_key(name), loader=loader, aliases=tuple(aliases), layout=layout,
                           enrichment=_rules(name, enrichment))
    keys = list(dict.fromkeys([_key(spec.name), *(_key(a) for a in spec.aliases)]))
    taken = [k for k in keys if k in _ALIASES]
    if taken and not overwrite:
        raise ValueError(f"a dataset called {taken[0]!r} is registered already (pass overwrite=True)")
    _SPECS[spec.name] = spec
    _ALIASES.update({k: spec.name for k in keys})
    LAYOUTS[spec.name] = spec.layout or _NO_LAYOUT
    return spec


def registered_enrichment_rules(name: str) -> dict[str, Any] | None:
    """The enrichment rules registered with dataset ``name`` (canonical), or None."""
    spec = _SPECS.get(name)
    if spec is None or spec.enrichment is None:
        return None
    rules = spec.enrichment
    return {"clothes_changing": rules.clothes_changing, "vote_by_track": rules.vote_by_track, "why": rules.why}


def available_datasets() -> list[str]:
    """Canonical names :func:`load_dataset` accepts: the built-in ones and the registered ones."""
    return list(_SPECS)


def _load(canonical: str, root: str | os.PathLike | None, seed: int) -> Dataset:
    return _SPECS[canonical].loader(root, seed)


def load_dataset(name: str, root: str | os.PathLike | None = None, *, seed: int = 0) -> Dataset:
    """Load the test split of a supported dataset as a :class:`Dataset`.

    ``name``: a registered dataset (:func:`available_datasets`: the built-in ones are
    ``prcc``, ``ltcc``, ``last``, ``ccvid``, ``vcclothes`` (also ``vcclothes_sc``/``vcclothes_cc``),
    ``street42`` (alias ``42street``), ``demo`` and ``manifest``); case, ``-`` and ``_`` do
    not matter. ``root``: the dataset folder (layouts in :mod:`reface_utils.data.datasets`).
    For ``demo`` it may be ``None`` (the cached demo, generated on first use with ``seed``),
    a generated demo folder, or the folder to generate it in.
    """
    dataset = _load(canonical_name(name), root, seed)
    report = dataset.skipped_report()
    if report:
        warnings.warn(report, SkippedFilesWarning, stacklevel=2)
    return dataset
