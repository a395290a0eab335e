"""What the project knows about one dataset, in one object: :class:`DatasetSpec`.

Each dataset module of this package (``prcc.py``, ``ltcc.py``, ...) holds its parser and
its spec and registers the spec with :func:`reface_utils.data.datasets.register_dataset`,
exactly as a plugin registers its own dataset. Everything else reads the spec
(:func:`reface_utils.data.datasets.dataset_spec`) instead of naming a dataset: the
pipeline's defaults (enrichment rules, offline models, the CAL checkpoint), the video
protocol (unknown identity, shortest scored tracklet), the paper comparison, and where
to get the data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .common import Dataset

__all__ = ["DatasetSpec", "DatasetLoader", "EnrichmentRules", "PaperComparison", "PublishedResult", "published"]

#: ``loader(root, seed) -> Dataset``: what :func:`register_dataset` takes.
DatasetLoader = Callable[[Any, int], Dataset]


@dataclass(frozen=True)
class EnrichmentRules:
    """How the reference enriches one dataset's gallery (docs/METHOD.md, section 3).

    ``clothes_changing``: gallery images in the query's own clothes are excluded (the
    reference's ``--CC``); ``vote_by_track``: a tracklet's frames share the majority
    label of their face matches (else every frame is enriched on its own face);
    ``why``: where the rule comes from.
    """

    clothes_changing: bool
    vote_by_track: bool
    why: str

    def __post_init__(self) -> None:
        problems = self.problems({"clothes_changing": self.clothes_changing, "vote_by_track": self.vote_by_track,
                                  "why": self.why})
        if problems:
            raise TypeError(f"EnrichmentRules: {'; '.join(problems)}")

    @staticmethod
    def problems(values: Mapping[str, Any]) -> list[str]:
        """What is wrong with the rules in ``values`` (those given; keys are not checked):
        a rule given as text ("no") or a number would be truthy and switch itself on."""
        problems = [f"{rule} must be True or False, got {values[rule]!r}" for rule in ("clothes_changing", "vote_by_track")
                    if rule in values and not isinstance(values[rule], bool)]
        if "why" in values and not isinstance(values["why"], str):
            problems.append(f"why must be text (where the rules come from), got {values['why']!r}")
        return problems


@dataclass(frozen=True)
class PublishedResult:
    """One number of the reference README's results table: the README version (``commit``,
    one of :data:`reface_utils.apps.paper.README_VERSIONS`), top-1 and mAP in % (``nan``:
    not published), and the variant (``""``, or e.g. ``"with extra data"``)."""

    commit: str
    top1: float
    mAP: float
    variant: str = ""


def published(numbers: Mapping[str, tuple[float, float | None]], variant: str = "") -> tuple[PublishedResult, ...]:
    """``{commit: (top1, mAP)}`` (mAP None: not published) -> :class:`PublishedResult` s."""
    return tuple(PublishedResult(commit, float(top1), math.nan if m is None else float(m), variant)
                 for commit, (top1, m) in numbers.items())


@dataclass(frozen=True)
class PaperComparison:
    """Which of our result rows the paper's numbers are set against, and the numbers.

    ``rows``: ``(query set, mode)`` pairs, the first the headline one; ``why``: why these
    rows; ``published``: every version of the published numbers.
    """

    rows: tuple[tuple[str, str], ...]
    why: str
    published: tuple[PublishedResult, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the project knows about one dataset.

    ==================  ===================================================================
    name                the canonical name (``load_dataset``, results folder)
    loader              ``loader(root, seed) -> Dataset``
    title               how people write it (``"42Street"``), for messages
    aliases             other spellings (compared without case, ``-``, ``_`` and spaces)
    layout              the folder layout in one line, shown in errors
    usual_dirs          the folder names it usually has: a parent holding one works as root
    eval_modes          the evaluation modes its :class:`Dataset` defines (``()``: as the
                        loader's Dataset says)
    camera_subsets      further protocols on some cameras, ``(mode, camera ids)``
    unknown_pid         the "unknown person" label, never scored (42Street: 12)
    min_track_frames    shorter tracklets are not scored (42Street: 10; 0: all)
    extra_data          it may have an extra-data folder (unlabelled crops that only enrich)
    enrichment          the reference's :class:`EnrichmentRules`; None: decided from the
                        data and the run's parameters
    paper               the :class:`PaperComparison`, None where the paper has no numbers
    reid_checkpoint     the registry name of its CAL checkpoint; None where none is published
    how_to_get          where the data comes from (datasets are never downloaded for you)
    downloads           links to the published files, where there are any
    offline_models      its default models are the offline ones (the generated demo)
    ==================  ===================================================================
    """

    name: str
    loader: DatasetLoader
    title: str = ""
    aliases: tuple[str, ...] = ()
    layout: str = ""
    usual_dirs: tuple[str, ...] = ()
    eval_modes: tuple[str, ...] = ()
    camera_subsets: tuple[tuple[str, tuple[int, ...]], ...] = ()
    unknown_pid: int | None = None
    min_track_frames: int = 0
    extra_data: bool = False
    enrichment: EnrichmentRules | None = None
    paper: PaperComparison | None = None
    reid_checkpoint: str | None = None
    how_to_get: str = ""
    downloads: tuple[str, ...] = ()
    offline_models: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a dataset spec needs a name, got {self.name!r}")
        if not callable(self.loader):
            raise TypeError(f"dataset {self.name!r}: loader must be callable as loader(root, seed), got {self.loader!r}")
        if self.enrichment is not None and not isinstance(self.enrichment, EnrichmentRules):
            raise TypeError(f"dataset {self.name!r}: enrichment must be EnrichmentRules(clothes_changing, "
                            f"vote_by_track, why) or None, got {self.enrichment!r}")
        # sequences given as lists become tuples (the spec is frozen and hashable)
        for name in ("aliases", "usual_dirs", "eval_modes", "downloads"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "camera_subsets", tuple((str(m), tuple(int(c) for c in cams))
                                                         for m, cams in self.camera_subsets))
        if not self.title:
            object.__setattr__(self, "title", self.name)

    @property
    def instructions(self) -> str:
        """Where the dataset comes from (the text check_requirements shows when it is missing)."""
        return self.how_to_get or f"no download instructions are registered for {self.name!r}"

    @property
    def paper_rows(self) -> tuple[tuple[str, str], ...]:
        """The (query set, mode) rows the paper's numbers correspond to (default: query, standard)."""
        return self.paper.rows if self.paper is not None else (("query", "standard"),)
