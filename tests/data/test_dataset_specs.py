"""A dataset is one file: each built-in dataset's module holds its parser and one complete
:class:`DatasetSpec`, a registered dataset's spec drives a run like a built-in one, and no
other module of the package names a dataset."""
from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from reface_utils.apps import paper, pipeline
from reface_utils.apps.pipeline import steps
from reface_utils.core import checkpoints
from reface_utils.data import datasets
from reface_utils.data.datasets import (BUILT_IN_SPECS, DATASET_NAMES, LAYOUTS, Dataset, DatasetSpec, EnrichmentRules,
                                        PaperComparison, available_datasets, canonical_name, dataset_spec,
                                        load_dataset, register_dataset, registered_enrichment_rules)
from reface_utils.method.metrics import MODES

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "reface_utils"
EXPECTED = Path(__file__).resolve().parents[1] / "expected"
README_COMMITS = set(paper.README_VERSIONS["commit"])


# --------------------------------------------------------------------------- built-in specs
def test_the_built_in_datasets_register_in_order():
    assert DATASET_NAMES == ("prcc", "ltcc", "last", "ccvid", "vcclothes", "vcclothes_sc", "vcclothes_cc",
                             "street42", "demo")
    assert available_datasets()[:len(DATASET_NAMES) + 1] == [*DATASET_NAMES, "manifest"]
    for spec in BUILT_IN_SPECS:
        assert dataset_spec(spec.name) is spec


@pytest.mark.parametrize("spec", BUILT_IN_SPECS + (dataset_spec("manifest"),), ids=lambda s: s.name)
def test_every_built_in_spec_is_complete(spec):
    assert isinstance(spec, DatasetSpec) and spec.title and callable(spec.loader)
    # names: the canonical one, every alias and every spelling of it
    for spelling in (spec.name, spec.name.upper(), *spec.aliases):
        assert canonical_name(spelling) == spec.name
    # the layout shown in errors, and the module that holds it
    assert spec.layout and LAYOUTS[spec.name] == spec.layout
    module = getattr(datasets, spec.name.split("_")[0])
    assert spec in module.SPECS and module.__name__ == f"reface_utils.data.datasets.{spec.name.split('_')[0]}"
    if spec.name == "manifest":  # your CSV: everything else comes from the data
        assert spec.enrichment is None and spec.paper is None and spec.reid_checkpoint is None
        return
    assert spec.eval_modes and set(spec.eval_modes) <= set(MODES) | {"single-shot", "tracklet"}
    assert isinstance(spec.enrichment, EnrichmentRules) and spec.enrichment.why
    assert spec.paper_rows and all(len(row) == 2 for row in spec.paper_rows)
    if spec.paper is not None:
        assert isinstance(spec.paper, PaperComparison) and spec.paper.why
        assert {p.commit for p in spec.paper.published} <= README_COMMITS
        assert all(isinstance(p.top1, float) and (math.isnan(p.mAP) or p.mAP > 0) for p in spec.paper.published)
    # the default CAL checkpoint: a registry entry trained on this dataset, or None
    if spec.reid_checkpoint is not None:
        entry = checkpoints.get(spec.reid_checkpoint)
        assert (entry.kind, entry.architecture, entry.dataset) == ("reid", "cal", spec.name)
    if spec.offline_models:  # the generated demo: nothing to get
        assert spec.reid_checkpoint is None
    else:
        assert spec.how_to_get.startswith(("Request", "Download", spec.title)) and "https://" in spec.how_to_get
        assert spec.usual_dirs and spec.instructions == spec.how_to_get
    for mode, cameras in spec.camera_subsets:
        assert mode not in spec.eval_modes and cameras and all(c >= 0 for c in cameras)
    if "tracklet" not in spec.eval_modes:
        assert spec.unknown_pid is None and spec.min_track_frames == 0


@pytest.mark.parametrize("name", sorted(p.stem for p in EXPECTED.glob("*.csv")))
def test_the_specs_modes_and_paper_rows_are_those_of_the_committed_results(name):
    # tests/expected/<name>.csv: the evaluated table of the generated tree in that layout
    spec = dataset_spec(name)
    table = pd.read_csv(EXPECTED / f"{name}.csv")
    assert set(table["mode"]) == set(spec.eval_modes) | {mode for mode, _ in spec.camera_subsets}
    pairs = set(zip(table["query_set"], table["mode"]))
    assert set(spec.paper_rows) <= pairs
    assert paper.paper_rows(name) == list(spec.paper_rows)


def test_the_video_protocol_and_extra_data_come_from_the_spec():
    street42, ccvid = dataset_spec("42Street"), dataset_spec("ccvid")
    assert (street42.unknown_pid, street42.min_track_frames, street42.extra_data) == (12, 10, True)
    assert datasets.STREET42_UNKNOWN_PID == street42.unknown_pid
    assert (ccvid.unknown_pid, ccvid.min_track_frames, ccvid.extra_data) == (None, 0, False)
    video = lambda name: Dataset(name, Path("/x"), pd.DataFrame(), is_video=True)  # noqa: E731
    assert steps._track_protocol(video("street42")) == {"min_frames": 10, "unknown_pid": 12}
    assert steps._track_protocol(video("ccvid")) == {"min_frames": 0, "unknown_pid": None}
    assert steps._track_protocol(video("made-by-hand")) == {}
    assert [name for name in DATASET_NAMES if dataset_spec(name).extra_data] == ["street42"]
    assert dataset_spec("vcclothes").camera_subsets == (("cameras-3-4", (2, 3)),)
    assert dataset_spec("vcclothes_cc").camera_subsets == ()


def test_the_pipeline_defaults_are_the_specs():
    for name in DATASET_NAMES:
        spec = dataset_spec(name)
        assert pipeline.enrichment_rules(name) is spec.enrichment is pipeline.ENRICHMENT_DEFAULTS[name]
    assert pipeline.OFFLINE_DATASETS == ("demo",) and pipeline.Settings().dataset == "demo"
    table = pipeline.enrichment_defaults_table()
    assert list(table["dataset"]) == list(DATASET_NAMES)
    assert list(table.loc[table["extra_data"] == "when present", "dataset"]) == ["street42"]
    assert pipeline.enrichment_rules("manifest") is None and pipeline.enrichment_rules("nothere") is None
    for name in ("prcc", "ccvid", "vcclothes"):
        s = pipeline.settings_for(dataset=name, face_model="sface")
        assert s.reid_checkpoint == dataset_spec(name).reid_checkpoint and s.spec is dataset_spec(name)


# --------------------------------------------------------------------------- registered datasets
def _toy_loader(seen: list):
    def load(root, seed):
        seen.append((root, seed))
        return load_dataset("demo", None)
    return load


def test_a_registered_spec_drives_a_run_like_a_built_in_one(registry, tmp_path):
    seen: list = []
    spec = DatasetSpec(name="toyset", loader=_toy_loader(seen), title="Toy Set", aliases=("toy-set", "TS"),
                       layout="<root>/anything", eval_modes=("standard",), extra_data=True,
                       enrichment=EnrichmentRules(False, True, "my rules"), reid_checkpoint="cal_ltcc",
                       paper=PaperComparison(rows=(("query", "CC"),), why="my comparison"),
                       how_to_get="Ask me: https://example.org/toy")
    assert register_dataset(spec) is spec
    assert canonical_name("TOY_SET") == canonical_name("ts") == "toyset" and dataset_spec("Toy-Set") is spec
    assert "toyset" in available_datasets() and LAYOUTS["toyset"] == "<root>/anything"
    s = pipeline.settings_for(dataset="toy set", face_model="sface", extra_data=True)
    assert (s.dataset, s.reid_model, s.reid_checkpoint) == ("toyset", "cal", "cal_ltcc")
    assert (s.clothes_changing, s.vote_by_track, s.extra_data) == (False, True, True)
    assert s.paper_setting == ["face model sface (paper: insightface buffalo_l)"]
    assert pipeline.enrichment_rules("toyset") is spec.enrichment
    assert registered_enrichment_rules("toyset") == {"clothes_changing": False, "vote_by_track": True,
                                                     "why": "my rules"}
    row = pipeline.enrichment_defaults_table().set_index("dataset").loc["toyset"]
    assert (row["vote"], row["extra_data"], row["why"]) == ("per tracklet", "when present", "my rules")
    assert paper.paper_rows("toyset") == [("query", "CC")]
    assert paper.paper_table("toyset", pd.DataFrame(columns=["query_set", "mode", "config", "top1"])).attrs["why"] \
        == "my comparison"
    # loading goes through the spec's loader; a missing dataset says how to get it
    assert load_dataset("ts", tmp_path, seed=4).name == "demo" and seen == [(tmp_path, 4)]
    register_dataset(DatasetSpec(name="toyset", loader=lambda root, seed: load_dataset("prcc", root)), overwrite=True)
    s = pipeline.settings_for(dataset="toyset", data_root=str(tmp_path / "nowhere"), face_model="sface",
                              reid_model="mobilenetv2-imagenet")
    assert s.clothes_changing is None and s.vote_by_track is None  # no rules: decided from the data
    dataset_row = pipeline.check_requirements(s, download=False).set_index("what").loc["dataset"]
    assert dataset_row["status"] == "missing"
    assert "no download instructions are registered for 'toyset'" in dataset_row["detail"]
    with pytest.raises(ValueError, match="only 42Street has an extra-data folder, not 'toyset'"):
        pipeline.settings_for(dataset="toyset", extra_data=True)


def test_an_offline_registered_spec_gets_the_offline_models(registry):
    register_dataset(DatasetSpec(name="toyoffline", loader=_toy_loader([]), offline_models=True))
    s = pipeline.settings_for(dataset="toyoffline")
    assert (s.face_model, s.reid_model, s.reid_checkpoint) == ("sface", "mobilenetv2-imagenet", None)


def test_register_dataset_by_name_builds_a_spec(registry):
    spec = register_dataset("My-Data", _toy_loader([]), aliases=["mine2"],
                            enrichment={"clothes_changing": True, "why": "mine"})
    assert spec is dataset_spec("my_data") and spec.name == "mydata" and spec.aliases == ("mine2",)
    assert spec.enrichment == EnrichmentRules(True, False, "mine") and LAYOUTS["mydata"] == "see the loader registered for it"
    assert pipeline.settings_for(dataset="mine2", face_model="sface").clothes_changing is True
    with pytest.raises(ValueError, match="registered already"):
        register_dataset("MYDATA", _toy_loader([]))
    with pytest.raises(ValueError, match="enrichment rules of dataset 'bad'"):
        register_dataset("bad", _toy_loader([]), enrichment={"vote": True})
    with pytest.raises(TypeError, match="takes the spec alone"):
        register_dataset(spec, aliases=("x",), overwrite=True)
    with pytest.raises(TypeError, match="loader must be callable"):
        register_dataset("noloader")


@pytest.mark.parametrize("enrichment, error, message", [
    ({"vote": True}, ValueError, r"unknown key 'vote'\. Known keys are \['clothes_changing', 'vote_by_track', 'why'\]"),
    ({"clothes_changing": "no"}, ValueError, r"clothes_changing must be True or False, got 'no'"),
    ({"vote_by_track": 1}, ValueError, r"vote_by_track must be True or False, got 1"),
    ({"clothes_changing": True, "why": 3}, ValueError, r"why must be text \(where the rules come from\), got 3"),
    ({"clotes_changing": True, "vote_by_track": "yes"}, ValueError,
     r"unknown key 'clotes_changing'; vote_by_track must be True or False, got 'yes'"),
    ("CC", TypeError, r"must be a dict \{'clothes_changing': True/False, .*EnrichmentRules or None .*got 'CC'"),
    (True, TypeError, r"must be a dict .*got True"),
])
def test_register_dataset_refuses_bad_enrichment_rules(registry, enrichment, error, message):
    # a truthy "no" or a misspelt key would otherwise switch a rule on, or be dropped, silently
    with pytest.raises(error, match=r"enrichment rules of dataset 'bad'.*" + message):
        register_dataset("bad", _toy_loader([]), enrichment=enrichment)
    assert "bad" not in available_datasets()  # nothing registered


def test_enrichment_rules_and_specs_refuse_values_that_are_not_rules(registry):
    with pytest.raises(TypeError, match=r"EnrichmentRules: clothes_changing must be True or False, got 'no'"):
        EnrichmentRules("no", False, "text where a flag belongs")
    with pytest.raises(TypeError, match=r"EnrichmentRules: vote_by_track must be True or False, got 0"):
        EnrichmentRules(True, 0, "a number where a flag belongs")
    with pytest.raises(TypeError, match=r"EnrichmentRules: why must be text"):
        EnrichmentRules(True, False, None)
    with pytest.raises(TypeError, match=r"dataset 'bad': enrichment must be EnrichmentRules\(clothes_changing, "
                                        r"vote_by_track, why\) or None, got \{'clothes_changing': True\}"):
        register_dataset(DatasetSpec(name="bad", loader=_toy_loader([]), enrichment={"clothes_changing": True}))
    assert "bad" not in available_datasets()


# --------------------------------------------------------------------------- nothing else names a dataset
#: Files that may name datasets, and why: the generated-data writers draw a tree in each
#: layout (their writers need the demo generator's image assets, which the dataset
#: modules must not import); the CAL loader's messages say which data the published CAL
#: checkpoints were trained on (a model's provenance, like checkpoints.json's entries).
EXEMPT = {"data/demo/plan.py", "data/demo_layouts.py", "data/demo_video.py", "models/reid/cal.py",
          "models/reid/weights.py"}
#: Strings inside these assignments may name datasets: the notebooks' parameter help (the
#: notebooks' parameters cells repeat it word for word), the reference README versions'
#: own titles, the old flat module names (``reface_utils.demo`` is a module) and the
#: package's public names (``STREET42_UNKNOWN_PID``).
DOCUMENTED = {"apps/pipeline/settings.py": "PARAMETERS", "apps/paper.py": "README_VERSIONS", "__init__.py": "_MOVED",
              "data/datasets/__init__.py": "__all__"}
#: Names that are ordinary words too: only a string that is exactly the name counts.
WORDS = {"demo", "last", "manifest"}


def _names() -> dict[str, set[str]]:
    """module file (relative to reface_utils/) -> the spellings of its datasets."""
    out: dict[str, set[str]] = {}
    for spec in BUILT_IN_SPECS + (dataset_spec("manifest"),):
        module = getattr(datasets, spec.name.split("_")[0])
        spellings = {spec.name, *spec.aliases, *spec.usual_dirs}
        if " " not in spec.title:
            spellings.add(spec.title)
        out.setdefault(Path(module.__file__).relative_to(PKG).as_posix(), set()).update(spellings)
    return out


def _key(text: str) -> str:
    return re.sub(r"[-_\s]", "", text.lower())


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _allowed_nodes(tree: ast.AST, assignment: str | None) -> set[int]:
    if assignment is None:
        return set()
    return {id(sub) for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name) and target.id == assignment for sub in ast.walk(node)}


def literal_hits(source: str, spellings: set[str], allowed_assignment: str | None = None) -> list[tuple[int, str]]:
    """(line, text) of every string literal (not a docstring) that names one of ``spellings``:
    is it (without case, ``-``, ``_``, spaces), or has it as a word (except WORDS)."""
    tree = ast.parse(source)
    skip = _docstrings(tree) | _allowed_nodes(tree, allowed_assignment)
    keys = {_key(s) for s in spellings}
    words = sorted({s for s in spellings if _key(s) not in WORDS}, key=len, reverse=True)
    pattern = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(map(re.escape, words)) + r")(?![A-Za-z0-9])",
                         re.IGNORECASE) if words else None
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
            if _key(text) in keys or (pattern is not None and pattern.search(text)):
                hits.append((node.lineno, text))
    return hits


def test_the_checker_sees_a_dataset_name():
    names = {"street42", "42Street", "last", "LaST"}
    assert literal_hits("x = 'street42'\n", names) == [(1, "street42")]
    assert literal_hits("def f(name):\n    return name == '42-street'\n", names) == [(2, "42-street")]
    assert literal_hits("msg = f'only 42Street has it: {x}'\n", names) == [(1, "only 42Street has it: ")]
    assert literal_hits("keep = 'the last frame'\n", names) == []  # 'last' as a word is a word
    assert literal_hits("LAST = 'last'\n", names) == [(1, "last")]
    assert literal_hits('"""42Street, in a docstring."""\n', names) == []
    assert literal_hits("HELP = {'a': 'street42'}\nb = 'street42'\n", names, "HELP") == [(2, "street42")]


def test_no_module_outside_a_datasets_own_file_names_it():
    names = _names()
    every = set().union(*names.values())
    found = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if rel in EXEMPT:
            continue
        others = every - names.get(rel, set())
        if rel == "data/datasets/demo.py":  # the demo is LTCC's layout: it reads ltcc's spec, never its name
            others = every - names[rel]
        for line, text in literal_hits(path.read_text(), others, DOCUMENTED.get(rel)):
            found.append(f"reface_utils/{rel}:{line}: {text!r}")
    assert not found, ("dataset names outside the dataset's own module (read its spec: "
                       "reface_utils.data.datasets.dataset_spec):\n" + "\n".join(found))
