"""The ReFace pipeline for one dataset, as the notebooks run it.

features -> gallery enrichment -> retrieval (ReID only, face only, fused, fused +
enriched) -> one results table next to the paper's numbers. Each step is a function
that takes data and returns data; the notebooks (``notebooks/*.ipynb``) narrate and call
them, and every expensive step goes through the feature cache, so running
``enrich_gallery``, ``infer`` and ``visualise`` one after the other extracts features once.

The modules, in the order they build on each other:

* :mod:`.settings`: every parameter, its defaults by dataset and model, the one check;
* :mod:`.features`: requirements and the features of every image;
* :mod:`.steps`: enrichment, evaluation (with the subset protocols), sweeps, per-query scores;
* :mod:`.store`: the saved artefacts of a run, read back only by the run that made them;
* :mod:`.reports`: the tables and figures the notebooks show.

The notebooks use the names below as ``pipeline.<name>``.
"""
from __future__ import annotations

from ...core.paths import project_root  # public here too (notebooks)
from .. import paper
from ..paper import PAPER_RESULTS
from ..tables import ShownTable
from .features import (DatasetFeatures, MissingRequirementsError, TinyImagesWarning, check_requirements,
                       compute_features, require, uses_extra_data)
from .reports import (METRIC_COLUMNS, describe_features, enriched_examples_figure, enrichment_report, model_gain,
                      paper_comparison, percent, results_report, results_table, retrieval_browser,
                      retrieval_figure)
from .settings import (DEFAULT_THRESHOLDS, ENRICHMENT_DEFAULTS, FEATURES_MODEL, OFFLINE_DATASETS, PAPER_FACE_MODELS,
                       PAPER_REID_MODEL, PARAMETERS, Settings, check_parameters,
                       enrichment_defaults_table, enrichment_rules, notebook_parameters, settings_for,
                       settings_from_namespace)
from .steps import (SINGLE_SHOT_DRAWS, SINGLE_SHOT_SEED, Evaluation, QueryScores, alpha_sweep, evaluate, paper_table,
                    query_scorer, run_enrichment, threshold_sweep)
from .store import SavedResults, enrichment_for, load_enrichment, load_results, results_for, save_enrichment, save_results

__all__ = ["Settings", "DatasetFeatures", "Evaluation", "TinyImagesWarning", "PAPER_RESULTS", "PARAMETERS", "settings_for",
           "settings_from_namespace", "notebook_parameters", "save_enrichment", "load_enrichment",
           "enrichment_for", "percent", "SavedResults", "load_results", "results_for", "describe_features",
           "enrichment_report", "results_report", "enriched_examples_figure", "retrieval_figure",
           "retrieval_browser",
           "ENRICHMENT_DEFAULTS", "enrichment_defaults_table", "uses_extra_data",
           "compute_features", "run_enrichment", "evaluate", "paper_table", "alpha_sweep",
           "threshold_sweep", "save_results", "project_root", "DEFAULT_THRESHOLDS", "query_scorer",
           "check_requirements", "check_parameters", "require", "MissingRequirementsError", "enrichment_rules",
           "PAPER_FACE_MODELS", "PAPER_REID_MODEL", "OFFLINE_DATASETS", "FEATURES_MODEL", "ShownTable",
           "results_table", "paper_comparison", "model_gain", "QueryScores", "METRIC_COLUMNS", "SINGLE_SHOT_DRAWS",
           "SINGLE_SHOT_SEED", "paper"]
