"""Datasets from a CSV manifest (reface_utils.data.datasets.manifest): the table, the rules, every error."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from reface_utils.data import datasets
from reface_utils.data.datasets import COLUMNS, DatasetError, DatasetNotFoundError, load_dataset
from reface_utils.data.datasets.manifest import (MANIFEST_FILE, ManifestError, ManifestNotFoundError,
                                                 ManifestWarning, load_manifest, manifest_file, save_manifest)

REPO = Path(__file__).resolve().parents[2]


def touch(root: Path, *relpaths: str) -> None:
    for rel in relpaths:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


IMAGES = ("g/1a.jpg", "g/2a.jpg", "g/3a.jpg", "q/1b.jpg", "q/2b.jpg", "q/3c.jpg")
GOOD = """path,pid,camid,clothes_id,role
g/1a.jpg,1,0,0,gallery
g/2a.jpg,2,0,2,gallery
q/1b.jpg,1,1,1,query_diff
g/3a.jpg,3,1,4,gallery
q/2b.jpg,2,2,2,query
q/3c.jpg,3,2,5,query_diff
"""


@pytest.fixture
def folder(tmp_path) -> Path:
    touch(tmp_path, *IMAGES)
    return tmp_path


def test_good_manifest_table(folder):
    csv = write(folder / "lists" / "m.csv", GOOD.replace("\ng/", "\n../g/").replace("\nq/", "\n../q/"))
    ds = load_manifest(csv)
    assert ds.name == "manifest" and ds.root == (folder / "lists").absolute()
    assert list(ds.images.columns) == list(COLUMNS)
    assert ds.images.dtypes.to_dict() == load_dataset("demo").images.dtypes.to_dict()  # as the other loaders
    # CSV order kept; paths absolute and normalised (no "..")
    assert ds.images["path"].tolist() == [str(folder / p) for p in
                                          ("g/1a.jpg", "g/2a.jpg", "q/1b.jpg", "g/3a.jpg", "q/2b.jpg", "q/3c.jpg")]
    assert ds.images["pid"].tolist() == [1, 2, 1, 3, 2, 3]
    assert ds.images["clothes_id"].tolist() == [0, 2, 1, 4, 2, 5]
    assert (ds.images["track"] == "").all()
    # "query" first, then the other query sets in order of first appearance
    assert ds.query_roles == ("query", "query_diff")
    assert ds.eval_modes == ("standard", "CC", "SC") and not ds.is_video and ds.extra_roles == ()
    assert ds.view("query_diff")["path"].tolist() == [str(folder / "q/1b.jpg"), str(folder / "q/3c.jpg")]


def test_without_clothes_absolute_paths_spaces_case_bom_and_semicolons(folder):
    lines = ["Path ; PID ; CamID ; Role ; notes"]
    for rel, pid, cam, role in (("g/1a.jpg", 1, 0, "Gallery"), ("g/2a.jpg", 2, 1, " gallery "),
                                ("q/1b.jpg", 1, 2, "QUERY")):
        lines.append(f"{folder / rel} ; {pid} ; {cam} ; {role} ; some text")
    lines.insert(2, "")  # a blank line is skipped, line numbers still count it
    csv = write(folder / "m.csv", "\ufeff" + "\n".join(lines) + "\n")
    with pytest.warns(ManifestWarning, match="'notes' are not read"):
        ds = load_manifest(csv)
    assert ds.eval_modes == ("standard",) and ds.query_roles == ("query",)
    assert ds.images["clothes_id"].tolist() == [-1, -1, -1]
    assert ds.images["role"].tolist() == ["gallery", "gallery", "query"]
    assert ds.images["camid"].tolist() == [0, 1, 2]


def test_a_misspelt_optional_column_is_named(folder):
    csv = write(folder / "m.csv", "path,pid,camid,role,clothes\ng/1a.jpg,1,0,gallery,1\nq/1b.jpg,1,1,query,2\n")
    with pytest.warns(ManifestWarning, match="did you mean 'clothes_id' for 'clothes'"):
        ds = load_manifest(csv)
    assert ds.eval_modes == ("standard",)


def test_tracks_make_a_video_dataset_sorted_by_frame(folder):
    touch(folder, *(f"v/{t}/{f}.jpg" for t in ("a", "b", "c") for f in range(3)))
    csv = write(folder / "m.csv", "\n".join([
        "path,pid,camid,role,track,frame",
        "v/a/2.jpg,1,0,gallery,a,2",
        "v/b/0.jpg,1,1,query,b,0",
        "v/a/0.jpg,1,0,gallery,a,0",
        "v/c/1.jpg,2,0,gallery,c,10",
        "v/a/1.jpg,1,0,gallery,a,1",
        "v/c/0.jpg,2,0,gallery,c,-3",
        "v/b/1.jpg,1,1,query,b,1",
    ]) + "\n")
    ds = load_manifest(csv)
    assert ds.is_video and ds.eval_modes == ("tracklet",) and ds.query_roles == ("query",)
    rel = [os.path.relpath(p, folder) for p in ds.images["path"]]
    # tracks gathered at their first row, frames in order
    assert rel == ["v/a/0.jpg", "v/a/1.jpg", "v/a/2.jpg", "v/b/0.jpg", "v/b/1.jpg", "v/c/0.jpg", "v/c/1.jpg"]
    assert ds.images["track"].tolist() == ["a"] * 3 + ["b"] * 2 + ["c"] * 2
    assert ds.summary().loc["gallery", "tracklets"] == 2


def test_tracks_without_frame_keep_csv_order(folder):
    csv = write(folder / "m.csv", "path,pid,camid,role,track\ng/2a.jpg,1,0,gallery,t1\nq/1b.jpg,1,1,query,t2\n"
                                  "g/1a.jpg,1,0,gallery,t1\n")
    ds = load_manifest(csv)
    assert [os.path.relpath(p, folder) for p in ds.images["path"]] == ["g/2a.jpg", "g/1a.jpg", "q/1b.jpg"]


def test_an_empty_track_column_is_an_image_dataset(folder):
    csv = write(folder / "m.csv", "path,pid,camid,role,track\ng/1a.jpg,1,0,gallery,\nq/1b.jpg,1,1,query,\n")
    ds = load_manifest(csv)
    assert not ds.is_video and ds.eval_modes == ("standard",)


def test_load_dataset_manifest_file_folder_alias_and_errors(folder, tmp_path):
    csv = write(folder / MANIFEST_FILE, GOOD)
    by_file = load_dataset("manifest", csv)
    by_folder = load_dataset("Manifest", folder)
    pd.testing.assert_frame_equal(by_file.images, by_folder.images)
    assert "manifest" in datasets.available_datasets() and "manifest" not in datasets.DATASET_NAMES
    assert datasets.canonical_name("manifest") == "manifest" and "manifest" in datasets.LAYOUTS
    with pytest.raises(ManifestNotFoundError, match=r"needs root=<your manifest CSV>"):
        load_dataset("manifest")
    other = tmp_path / "other"
    write(other / "list.csv", GOOD)
    with pytest.raises(DatasetNotFoundError, match=r"has no manifest\.csv; it has list\.csv: pass that file"):
        load_dataset("manifest", other)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset("manifest", tmp_path / "nope.csv")
    assert manifest_file(folder) == folder / MANIFEST_FILE


def test_save_manifest_round_trip(folder, tmp_path):
    ds = load_manifest(write(folder / "m.csv", GOOD))
    out = save_manifest(folder / "copy" / "again.csv", ds)
    assert out.read_text().splitlines()[:2] == ["path,pid,camid,clothes_id,role", "../g/1a.jpg,1,0,0,gallery"]
    back = load_manifest(out)
    pd.testing.assert_frame_equal(back.images, ds.images)
    assert back.query_roles == ds.query_roles and back.eval_modes == ds.eval_modes
    assert not list((folder / "copy").glob(".*tmp"))  # written atomically, nothing left over


# --------------------------------------------------------------------------- errors

def bad(folder: Path, text: str, encoding: str = "utf-8") -> ManifestError:
    csv = write(folder / "bad.csv", text, encoding)
    with pytest.raises(ManifestError) as info:
        load_manifest(csv)
    message = str(info.value)
    assert str(csv) in message  # every error names the CSV
    assert isinstance(info.value, DatasetError) and info.value.csv == csv
    return info.value


def lines_of(err: ManifestError) -> list[int | None]:
    return [line for line, _ in err.problems]


def test_missing_columns(folder):
    err = bad(folder, "path,pid,role\ng/1a.jpg,1,gallery\n")
    assert "missing column(s) camid" in str(err) and "line 1:" in str(err)


def test_missing_image_files_listed_with_lines(folder):
    err = bad(folder, GOOD + "g/gone1.jpg,4,0,6,gallery\ng/gone2.jpg,5,0,7,gallery\n")
    assert lines_of(err) == [8, 9]
    assert f"line 8: image file {folder / 'g/gone1.jpg'} does not exist (path 'g/gone1.jpg'" in str(err)
    assert "line 9:" in str(err)


def test_many_problems_collected_and_capped(folder):
    text = "path,pid,camid,role\n" + "".join(f"g/missing{i}.jpg,1,0,gallery\n" for i in range(14))
    err = bad(folder, text + "q/1b.jpg,1,1,query\n")
    assert len(err.problems) == 14 and "... and 4 more problem(s)" in str(err)
    assert "line 2:" in str(err) and "line 11:" in str(err) and "line 12:" not in str(err)


@pytest.mark.parametrize("role, expect", [
    ("probe", "role 'probe' is not 'gallery', 'query', or 'query_<name>'"),
    ("", "role is empty; it must be 'gallery', 'query', or 'query_<name>'"),
    ("queryX", "role 'queryX' is not"),
    ("query-2", "role 'query-2' is not"),
    ("extra", "role 'extra' is not"),
])
def test_unknown_or_empty_roles(folder, role, expect):
    err = bad(folder, GOOD + f"q/3c.jpg,3,2,5,{role}\n".replace("q/3c.jpg", "q/3c.jpg"))
    assert expect in str(err)
    assert 8 in lines_of(err)


def test_query_set_without_gallery(folder):
    err = bad(folder, "path,pid,camid,role\nq/1b.jpg,1,1,query\nq/2b.jpg,2,1,query_night\n")
    assert "no gallery rows: the query set(s) query, query_night have nothing to be matched" in str(err)


def test_no_query_rows(folder):
    err = bad(folder, "path,pid,camid,role\ng/1a.jpg,1,0,gallery\n")
    assert "no query rows" in str(err)


def test_duplicate_paths_after_resolving(folder):
    os.symlink(folder / "g/1a.jpg", folder / "g/link.jpg")
    err = bad(folder, GOOD + "g/../g/1a.jpg,1,0,0,gallery\ng/link.jpg,1,0,0,gallery\n")
    assert lines_of(err) == [8, 9]
    assert "line 8: image 'g/../g/1a.jpg' is listed already on line 2 (as 'g/1a.jpg')" in str(err)
    assert "line 9: image 'g/link.jpg' is listed already on line 2" in str(err)


@pytest.mark.parametrize("column, value, expect", [
    ("pid", "3.5", "pid '3.5' is not an integer"),
    ("pid", "abc", "pid 'abc' is not an integer"),
    ("pid", "", "pid is empty"),
    ("camid", "3.0", "camid '3.0' is not an integer"),
    ("clothes_id", "x1", "clothes_id 'x1' is not an integer"),
    ("clothes_id", "", "clothes_id is empty"),
])
def test_non_integer_labels(folder, column, value, expect):
    row = {"path": "q/3c.jpg", "pid": "3", "camid": "2", "clothes_id": "5", "role": "query"}
    row[column] = value
    text = "\n".join(GOOD.splitlines()[:-1]) + "\n" + ",".join(row.values()) + "\n"
    err = bad(folder, text)
    assert f"line 7: {expect}" in str(err)


def test_track_column_partly_empty(folder):
    err = bad(folder, "path,pid,camid,role,track\ng/1a.jpg,1,0,gallery,t1\ng/2a.jpg,2,0,gallery,\n"
                      "q/1b.jpg,1,1,query,t3\n")
    assert lines_of(err) == [3] and "track is empty, but 2 other row(s) have one" in str(err)


def test_track_mixing_people_or_roles_and_repeated_frames(folder):
    err = bad(folder, "path,pid,camid,role,track,frame\ng/1a.jpg,1,0,gallery,t1,0\ng/2a.jpg,2,0,gallery,t1,1\n"
                      "q/1b.jpg,1,1,query,t1,2\nq/2b.jpg,2,1,query,t2,0\nq/3c.jpg,2,1,query,t2,0\n"
                      "g/3a.jpg,3,1,gallery,t3,\n")
    text = str(err)
    assert "line 3: track 't1' has pid 2 here but 1 on line 2" in text
    assert "line 4: track 't1' has role 'query' here but 'gallery' on line 2" in text
    assert "line 6: frame 0 of track 't2' is on line 5 already" in text
    assert "line 7: frame is empty" in text


def test_frame_without_track(folder):
    err = bad(folder, "path,pid,camid,role,frame\ng/1a.jpg,1,0,gallery,1\nq/1b.jpg,1,1,query,2\n")
    assert "line 1: column frame orders the frames of a track, but there is no track column" in str(err)
    err = bad(folder, "path,pid,camid,role,track,frame\ng/1a.jpg,1,0,gallery,,1\nq/1b.jpg,1,1,query,,\n")
    assert "line 1: column frame is filled but track is empty everywhere" in str(err)


def test_empty_csv_and_header_only(folder):
    err = bad(folder, "")
    assert "the file is empty" in str(err)
    err = bad(folder, "\n\n")
    assert "the file is empty" in str(err)
    err = bad(folder, "path,pid,camid,role\n")
    assert "has a header but no rows" in str(err)


def test_path_that_is_a_folder_or_empty(folder):
    err = bad(folder, GOOD + "g,4,0,6,gallery\n,5,0,7,gallery\n")
    assert f"line 8: path 'g' is a folder ({folder / 'g'}), not an image file" in str(err)
    assert "line 9: path is empty" in str(err)


def test_not_utf8(folder):
    err = bad(folder, GOOD + "g/caf\u00e9.jpg,4,0,6,gallery\n", encoding="latin-1")
    assert "is not UTF-8 text" in str(err) and "CSV UTF-8" in str(err)


def test_csv_is_a_folder_or_has_too_many_fields(folder):
    with pytest.raises(ManifestError, match="is a folder, not a CSV file"):
        load_manifest(folder / "g")
    err = bad(folder, GOOD + "g/x,y.jpg,4,0,6,gallery\n")
    assert "line 8: 6 fields, the header has 5" in str(err)


def test_duplicate_header_column(folder):
    err = bad(folder, "path,pid,pid,camid,role\ng/1a.jpg,1,1,0,gallery\n")
    assert "line 1: column(s) pid appear more than once" in str(err)


def test_several_kinds_of_problems_in_one_error(folder):
    err = bad(folder, "path,pid,camid,role\ng/1a.jpg,x,0,gallery\ng/nope.jpg,1,0,gallery\nq/1b.jpg,1,1,probe\n")
    assert lines_of(err) == [None, 2, 3, 4] and "no query rows" in str(err)
    err = bad(folder, "path,pid,camid,role\ng/1a.jpg,1,0,test\nq/1b.jpg,1,1,query\n")
    assert lines_of(err) == [None, 2] and "no gallery rows" in str(err)  # whole-file problems first


# --------------------------------------------------------------------------- generated example

def test_demo_manifest_layout_matches_the_demo():
    from reface_utils.data.demo_layouts import layout_plan, make_layout_dataset

    demo = load_dataset("demo")
    csv = make_layout_dataset("manifest")
    assert csv.name == MANIFEST_FILE and csv.is_file()
    assert csv.parent != demo.root and not (demo.root / MANIFEST_FILE).exists()  # never written into the demo
    first = csv.read_text().splitlines()[1]
    assert first.startswith(f"../{demo.root.name}/test/")  # relative to the CSV's folder
    ds = load_manifest(csv)
    pd.testing.assert_frame_equal(ds.images, demo.images)
    assert ds.query_roles == demo.query_roles and ds.eval_modes == demo.eval_modes
    pd.testing.assert_frame_equal(load_dataset("manifest", csv).images, demo.images)
    # reused as is: not rewritten when up to date
    stamp = csv.stat().st_mtime_ns
    assert make_layout_dataset("manifest") == csv and csv.stat().st_mtime_ns == stamp
    plan = layout_plan("manifest")
    assert sorted(str((csv.parent / f).resolve()) for f in plan["file"]) == \
        sorted(str(Path(p).resolve()) for p in demo.images["path"])


def test_demo_layouts_command_prints_the_csv():
    done = subprocess.run([sys.executable, "-m", "reface_utils.data.demo_layouts", "manifest"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    printed = Path(done.stdout.strip())
    assert printed.name == MANIFEST_FILE and printed.is_file()
    assert len(load_manifest(printed).images) == len(load_dataset("demo").images)
