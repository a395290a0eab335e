"""load_dataset on tiny fake trees with the real naming rules; expected tables by hand; files it
skips (non-images, dangling symlinks, unlistable folders) counted and named."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd
import pytest

from conftest import NO_DAC, run_python
from reface_utils.data import datasets
from reface_utils.data.datasets import (COLUMNS, DatasetError, DatasetNotFoundError, SkippedFilesWarning,
                                   canonical_name, load_dataset)


def touch(root: Path, *relpaths: str, data: bytes = b"") -> None:
    """Create files (the parsers never open images, so empty files will do).

    Created in reverse order so that a parser relying on the file system's order
    would show it.
    """
    for rel in reversed(relpaths):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def rows(ds, role: str) -> list[tuple]:
    """(path relative to root, pid, camid, clothes_id, track) of one role, in table order."""
    v = ds.view(role)
    return [(os.path.relpath(r.path, ds.root), r.pid, r.camid, r.clothes_id, r.track)
            for r in v.itertuples()]


def snapshot(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}


# --------------------------------------------------------------------------- PRCC
def make_prcc(root: Path) -> None:
    touch(root / "rgb" / "test",
          "A/001/cropped_rgb001.jpg", "A/001/cropped_rgb002.jpg", "A/003/cropped_rgb010.jpg",
          "A/010/cropped_rgb004.jpg", "A/010/notes.txt",
          "B/001/cropped_rgb005.jpg", "B/010/cropped_rgb001.jpg", "B/010/cropped_rgb002.jpg",
          "C/003/cropped_rgb001.jpg", "C/010/cropped_rgb007.jpg")


def test_prcc_cameras_and_clothes_rule(tmp_path):
    make_prcc(tmp_path)
    before = snapshot(tmp_path)
    with pytest.warns(datasets.SkippedFilesWarning, match=r"(?s)1 file\(s\) skipped.*notes\.txt"):
        ds = load_dataset("PRCC", tmp_path)
    assert snapshot(tmp_path) == before  # nothing written into the dataset folder
    assert ds.name == "prcc" and ds.query_roles == ("query_same", "query_diff")
    assert ds.eval_modes == ("standard", "single-shot") and not ds.is_video
    assert list(ds.images.columns) == list(COLUMNS)
    # pids of camera A sorted: 1, 3, 10 -> ranks 0, 1, 2; clothes 2*rank (A, B), 2*rank+1 (C)
    t = "rgb/test/"
    assert rows(ds, "gallery") == [
        (t + "A/001/cropped_rgb001.jpg", 1, 0, 0, ""), (t + "A/001/cropped_rgb002.jpg", 1, 0, 0, ""),
        (t + "A/003/cropped_rgb010.jpg", 3, 0, 2, ""), (t + "A/010/cropped_rgb004.jpg", 10, 0, 4, "")]
    assert rows(ds, "query_same") == [
        (t + "B/001/cropped_rgb005.jpg", 1, 1, 0, ""), (t + "B/010/cropped_rgb001.jpg", 10, 1, 4, ""),
        (t + "B/010/cropped_rgb002.jpg", 10, 1, 4, "")]
    assert rows(ds, "query_diff") == [
        (t + "C/003/cropped_rgb001.jpg", 3, 2, 3, ""), (t + "C/010/cropped_rgb007.jpg", 10, 2, 5, "")]
    assert all(os.path.isabs(p) for p in ds.images["path"])
    s = ds.summary()
    assert s.loc["gallery"].to_dict() == {"images": 4, "ids": 3, "cameras": 1, "outfits": 3, "skipped": 1}
    assert s.loc["query_diff"].to_dict() == {"images": 2, "ids": 2, "cameras": 1, "outfits": 2, "skipped": 0}
    assert ds.file_report.to_dict("records") == [
        {"path": str(tmp_path / t / "A/010/notes.txt"), "role": "gallery", "action": "skipped",
         "reason": "not a .jpg file"}]
    with pytest.raises(KeyError, match="several query sets"):
        ds.query


def test_prcc_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"dataset folder .*missing.* does not exist"):
        load_dataset("prcc", tmp_path / "missing")
    touch(tmp_path, "rgb/test/A/001/a.jpg", "rgb/test/B/001/b.jpg")
    with pytest.raises(DatasetNotFoundError, match=r"camera folder .*test/C does not exist.*rgb/test/\{A,B,C\}"):
        load_dataset("prcc", tmp_path)
    touch(tmp_path, "rgb/test/C/007/c.jpg")
    with pytest.raises(DatasetError, match=r"person 7 .* has no gallery folder"):
        load_dataset("prcc", tmp_path)
    (tmp_path / "rgb/test/C/007/c.jpg").unlink()
    (tmp_path / "rgb/test/C/007").rmdir()
    touch(tmp_path, "rgb/test/C/abc/c.jpg")
    with pytest.raises(DatasetError, match=r"folder .*C/abc is not a person id folder"):
        load_dataset("prcc", tmp_path)
    (tmp_path / "rgb/test/C/abc/c.jpg").unlink()
    (tmp_path / "rgb/test/C/abc").rmdir()
    with pytest.raises(DatasetError, match=r"split .*test/C is empty"):
        load_dataset("prcc", tmp_path)


# --------------------------------------------------------------------------- LTCC
def make_ltcc(root: Path) -> None:
    touch(root, "test/001_1_c1_000001.png", "test/001_1_c2_000002.png", "test/001_2_c3_000003.png",
          "test/002_1_c1_000004.png", "test/010_3_c12_000005.png", "test/readme.txt",
          "test/._001_1_c1_000001.png",  # a macOS resource fork: hidden, skipped (and reported)
          "query/001_3_c4_000006.png", "query/002_1_c2_000007.png",
          "train/100_1_c1_000008.png")


def test_ltcc_clothes_keys_and_cameras(tmp_path):
    make_ltcc(tmp_path / "LTCC_ReID")
    before = snapshot(tmp_path)
    ds = load_dataset("ltcc", tmp_path)  # the parent folder works too
    assert snapshot(tmp_path) == before
    assert ds.root == (tmp_path / "LTCC_ReID").absolute()
    assert ds.eval_modes == ("standard", "CC", "SC") and ds.query_roles == ("query",)
    # clothes keys over query + test, sorted: 001_1, 001_2, 001_3, 002_1, 010_3 -> 0..4
    assert rows(ds, "gallery") == [
        ("test/001_1_c1_000001.png", 1, 0, 0, ""), ("test/001_1_c2_000002.png", 1, 1, 0, ""),
        ("test/001_2_c3_000003.png", 1, 2, 1, ""), ("test/002_1_c1_000004.png", 2, 0, 3, ""),
        ("test/010_3_c12_000005.png", 10, 11, 4, "")]
    assert rows(ds, "query") == [("query/001_3_c4_000006.png", 1, 3, 2, ""),
                                 ("query/002_1_c2_000007.png", 2, 1, 3, "")]
    q = ds.query
    assert list(q.index) == [0, 1]
    assert ds.summary().loc["query"].to_dict() == {"images": 2, "ids": 2, "cameras": 2, "outfits": 2,
                                                   "skipped": 0}
    assert ds.images.dtypes["pid"] == "int64" and ds.images.dtypes["clothes_id"] == "int64"


def test_ltcc_errors(tmp_path):
    touch(tmp_path, "test/001_1_c1_000001.png")
    with pytest.raises(DatasetNotFoundError,
                       match=r"split folder .*query does not exist\. Expected layout: .*<pid>_<clothes>_c<cam>"):
        load_dataset("ltcc", tmp_path)
    (tmp_path / "query").mkdir()
    with pytest.raises(DatasetError, match=r"split .*query is empty"):
        load_dataset("ltcc", tmp_path)
    touch(tmp_path, "query/001_x_c2_7.png")
    with pytest.raises(DatasetError, match=r"file .*001_x_c2_7\.png does not match"):
        load_dataset("ltcc", tmp_path)


# --------------------------------------------------------------------------- LaST
def test_last_one_camera_per_image(tmp_path):
    touch(tmp_path, "test/query/000005_012_01066_1075_01_000.jpg", "test/query/000003_2_9.jpg",
          "test/gallery/000007/000007_5_5.jpg", "test/gallery/000003/000003_1_2.jpg",
          "test/gallery/000003/000003_0_1.jpg", "test/gallery/stray.jpg")
    ds = load_dataset("LaST", tmp_path)
    assert ds.eval_modes == ("standard",)
    # queries sorted: camid 0, 1; gallery continues at Q = 2; clothes_id = pid
    assert rows(ds, "query") == [("test/query/000003_2_9.jpg", 3, 0, 3, ""),
                                 ("test/query/000005_012_01066_1075_01_000.jpg", 5, 1, 5, "")]
    assert rows(ds, "gallery") == [("test/gallery/000003/000003_0_1.jpg", 3, 2, 3, ""),
                                   ("test/gallery/000003/000003_1_2.jpg", 3, 3, 3, ""),
                                   ("test/gallery/000007/000007_5_5.jpg", 7, 4, 7, "")]


def test_last_errors(tmp_path):
    touch(tmp_path, "test/query/000003_2_9.jpg")
    with pytest.raises(DatasetNotFoundError, match=r"split folder .*test/gallery does not exist"):
        load_dataset("last", tmp_path)
    (tmp_path / "test/gallery").mkdir()
    with pytest.raises(DatasetError, match=r"split .*gallery is empty \(no images in <pid> sub-folders"):
        load_dataset("last", tmp_path)
    touch(tmp_path, "test/gallery/000003/person3.jpg")
    with pytest.raises(DatasetError, match=r"file .*person3\.jpg does not match .*<pid>_<\.\.\.>\.jpg"):
        load_dataset("last", tmp_path)


# --------------------------------------------------------------------------- CCVID
def make_ccvid(root: Path) -> None:
    (root).mkdir(parents=True, exist_ok=True)
    (root / "gallery.txt").write_text("session1/001_01\t1\ta\nsession1/002_02\t2\ta\n\n")
    (root / "query.txt").write_text("session3/001_03 1 b\nsession2/002_05 2 a\n")
    touch(root, "session1/001_01/00001.jpg", "session1/001_01/00002.jpg", "session1/002_02/00001.jpg",
          "session3/001_03/00002.jpg", "session3/001_03/00001.jpg", "session3/001_03/00003.jpg",
          "session2/002_05/00001.jpg")


def test_ccvid_tracklets(tmp_path):
    make_ccvid(tmp_path)
    ds = load_dataset("ccvid", tmp_path)
    assert ds.is_video and ds.eval_modes == ("tracklet",)
    # clothes keys "1_a", "2_a", "1_b" sorted -> 1_a: 0, 1_b: 1, 2_a: 2; camera of
    # sessionX/PPP_CC = CC, +12 for session3
    assert rows(ds, "gallery") == [
        ("session1/001_01/00001.jpg", 1, 1, 0, "session1/001_01"),
        ("session1/001_01/00002.jpg", 1, 1, 0, "session1/001_01"),
        ("session1/002_02/00001.jpg", 2, 2, 2, "session1/002_02")]
    assert rows(ds, "query") == [  # list order for tracklets, frames sorted
        ("session3/001_03/00001.jpg", 1, 15, 1, "session3/001_03"),
        ("session3/001_03/00002.jpg", 1, 15, 1, "session3/001_03"),
        ("session3/001_03/00003.jpg", 1, 15, 1, "session3/001_03"),
        ("session2/002_05/00001.jpg", 2, 5, 2, "session2/002_05")]
    assert ds.summary().loc["query"].to_dict() == {"images": 4, "ids": 2, "cameras": 2, "outfits": 2,
                                                   "tracklets": 2}  # no "skipped" column: nothing was


def test_ccvid_errors(tmp_path):
    make_ccvid(tmp_path / "a")
    (tmp_path / "a" / "query.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"list file .*query\.txt does not exist.*<session>/<tracklet>"):
        load_dataset("ccvid", tmp_path / "a")

    make_ccvid(tmp_path / "b")
    (tmp_path / "b" / "query.txt").write_text("session3/001_03 1\n")
    with pytest.raises(DatasetError,
                       match=r"query\.txt line 1: expected '<session>/<tracklet> <pid> <clothes label>'"):
        load_dataset("ccvid", tmp_path / "b")

    (tmp_path / "b" / "query.txt").write_bytes(b"\xff\xfe\x00session3")
    with pytest.raises(DatasetError, match=r"cannot read list file .*query\.txt"):
        load_dataset("ccvid", tmp_path / "b")

    (tmp_path / "b" / "query.txt").write_text("\n")
    with pytest.raises(DatasetError, match=r"list file .*query\.txt is empty"):
        load_dataset("ccvid", tmp_path / "b")

    (tmp_path / "b" / "query.txt").write_text("session3/001_03 1 b\nsession9/001_07 1 b\n")
    with pytest.raises(DatasetNotFoundError,
                       match=r"query\.txt line 2: tracklet folder .*session9/001_07 does not exist"):
        load_dataset("ccvid", tmp_path / "b")

    (tmp_path / "b" / "query.txt").write_text("session3/noc 1 b\n")
    with pytest.raises(DatasetError, match=r"tracklet 'session3/noc' does not match"):
        load_dataset("ccvid", tmp_path / "b")


# --------------------------------------------------------------------------- VC-Clothes
def make_vc(root: Path) -> None:
    touch(root, "gallery/0001-01-01-01.jpg", "gallery/0001-02-01-02.jpg", "gallery/0002-03-02-01.jpg",
          "query/0001-03-02-03.jpg", "query/0002-04-02-02.jpg")


@pytest.mark.parametrize("name, expected_gallery, expected_query", [
    # all cameras: keys 000101, 000102, 000202 -> 0, 1, 2
    ("VC-Clothes",
     [("gallery/0001-01-01-01.jpg", 1, 0, 0, ""), ("gallery/0001-02-01-02.jpg", 1, 1, 0, ""),
      ("gallery/0002-03-02-01.jpg", 2, 2, 2, "")],
     [("query/0001-03-02-03.jpg", 1, 2, 1, ""), ("query/0002-04-02-02.jpg", 2, 3, 2, "")]),
    # cameras 2 and 3 only: keys 000101, 000202, 000102 -> 0, 2, 1
    ("vcclothes_sc",
     [("gallery/0001-02-01-02.jpg", 1, 1, 0, ""), ("gallery/0002-03-02-01.jpg", 2, 2, 2, "")],
     [("query/0001-03-02-03.jpg", 1, 2, 1, "")]),
    # cameras 3 and 4 only: keys 000202, 000102 -> 1, 0
    ("vc_clothes_cc",
     [("gallery/0002-03-02-01.jpg", 2, 2, 1, "")],
     [("query/0001-03-02-03.jpg", 1, 2, 0, ""), ("query/0002-04-02-02.jpg", 2, 3, 1, "")]),
])
def test_vcclothes(tmp_path, name, expected_gallery, expected_query):
    make_vc(tmp_path)
    ds = load_dataset(name, tmp_path)
    assert ds.eval_modes == ("standard", "CC", "SC")
    assert rows(ds, "gallery") == expected_gallery
    assert rows(ds, "query") == expected_query


def test_vcclothes_errors(tmp_path):
    touch(tmp_path, "gallery/0001-01-01-01.jpg", "query/0001_03_02_03.jpg")
    with pytest.raises(DatasetError,
                       match=r"file .*0001_03_02_03\.jpg does not match .*<pid>-<cam>-<clothes>-<n>\.jpg"):
        load_dataset("vcclothes", tmp_path)
    (tmp_path / "query/0001_03_02_03.jpg").unlink()
    touch(tmp_path, "query/0001-01-02-03.jpg", "gallery/0001-03-01-02.jpg")
    with pytest.raises(DatasetError, match=r"query is empty \(no images of cameras \(3, 4\)"):
        load_dataset("vcclothes_cc", tmp_path)


# --------------------------------------------------------------------------- 42Street
def test_street42(tmp_path):
    touch(tmp_path, "gallery/000_a.jpg", "gallery/001_b.png", "gallery/012_c.jpg", "gallery/notes.txt",
          "test/tracklets/part1_s0_e100/001_000/v_part1_f2.png",
          "test/tracklets/part1_s0_e100/001_000/v_part1_f1.png",
          "test/tracklets/part1_s0_e100/012_001/v_part1_f1.png",
          "test/tracklets/part2_s5_e9/000_000/v_part2_f1.png")
    ds = load_dataset("42street", tmp_path)
    assert ds.name == "street42" and ds.is_video and ds.eval_modes == ("tracklet",)
    assert rows(ds, "gallery") == [("gallery/000_a.jpg", 0, 0, -1, ""), ("gallery/001_b.png", 1, 0, -1, ""),
                                   ("gallery/012_c.jpg", 12, 0, -1, "")]
    tr = "test/tracklets/"
    assert rows(ds, "query") == [
        (tr + "part1_s0_e100/001_000/v_part1_f1.png", 1, 1, -1, "part1_s0_e100/001_000"),
        (tr + "part1_s0_e100/001_000/v_part1_f2.png", 1, 1, -1, "part1_s0_e100/001_000"),
        (tr + "part1_s0_e100/012_001/v_part1_f1.png", 12, 1, -1, "part1_s0_e100/012_001"),
        (tr + "part2_s5_e9/000_000/v_part2_f1.png", 0, 1, -1, "part2_s5_e9/000_000")]
    assert datasets.STREET42_UNKNOWN_PID == 12
    assert ds.summary().loc["query", "tracklets"] == 3


def test_street42_errors(tmp_path):
    touch(tmp_path, "gallery/000_a.jpg")
    with pytest.raises(DatasetNotFoundError, match=r"test/tracklets does not exist.*<video>/<pid>_<n>"):
        load_dataset("street42", tmp_path)
    (tmp_path / "test/tracklets/vid1").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"tracklets is empty \(no tracklet frames"):
        load_dataset("street42", tmp_path)
    touch(tmp_path, "test/tracklets/vid1/personA/f1.png")
    with pytest.raises(DatasetError, match=r"tracklet folder .*personA does not match <pid>_<n>"):
        load_dataset("street42", tmp_path)


def _street42_with_extra(root):
    touch(root, "gallery/000_a.jpg", "gallery/001_b.png",
          "test/tracklets/part1/001_000/f1.png", "test/tracklets/part1/000_000/f1.png",
          "extra_data/crops/x1.jpg", "extra_data/x2.png")


def test_street42_extra_data_symlink_loop_is_reported_not_followed(tmp_path):
    _street42_with_extra(tmp_path)
    (tmp_path / "extra_data" / "up").symlink_to("..")          # a loop back to the dataset root
    (tmp_path / "extra_data" / "crops" / "again").symlink_to("../crops")  # a loop to itself
    with pytest.warns(datasets.SkippedFilesWarning, match="symbolic link loop"):
        ds = load_dataset("street42", tmp_path)
    extra = ds.view("extra")["path"].tolist()
    # the two real extra images, once each; no gallery or tracklet frame taken as extra data
    assert sorted(os.path.relpath(p, tmp_path) for p in extra) == ["extra_data/crops/x1.jpg", "extra_data/x2.png"]
    loops = ds.file_report[ds.file_report["reason"].str.contains("loop")]
    assert sorted(os.path.basename(p) for p in loops["path"]) == ["again", "up"]


def test_street42_extra_data_never_holds_test_images(tmp_path):
    _street42_with_extra(tmp_path)
    (tmp_path / "extra_data" / "g").symlink_to("../gallery")   # the gallery under another name
    with pytest.raises(DatasetError, match=r"2 file\(s\) under .*extra_data are images of the test split"):
        load_dataset("street42", tmp_path)
    (tmp_path / "extra_data" / "g").unlink()
    os.link(tmp_path / "test/tracklets/part1/001_000/f1.png", tmp_path / "extra_data" / "f1.png")  # a hard link
    # a hard link is another name for the same file: the same inode is the same image
    with pytest.raises(DatasetError, match=r"images of the test split"):
        load_dataset("street42", tmp_path)


# --------------------------------------------------------------------------- names, roots
def test_names_and_aliases():
    assert canonical_name("VC-Clothes") == "vcclothes"
    assert canonical_name("vc_clothes") == "vcclothes"
    assert canonical_name("42Street") == "street42"
    assert canonical_name("LTCC_ReID") == "ltcc"
    assert canonical_name("Demo") == "demo"
    with pytest.raises(ValueError, match=r"unknown dataset 'market1501'; registered: prcc, ltcc"):
        canonical_name("market1501")
    with pytest.raises(DatasetNotFoundError, match=r"needs root=<the dataset folder>.*<pid>-<cam>-<clothes>"):
        load_dataset("vcclothes", None)


def test_register_dataset(tmp_path, registry):
    # a user's dataset: here an LTCC-layout folder under another name, loaded by name and alias
    make_ltcc(tmp_path)
    seen = []

    def load_mine(root, seed):
        seen.append((root, seed))
        return datasets.ltcc.load_ltcc(root, name="mine")

    datasets.register_dataset("mine", load_mine, aliases=("My-Set",), layout="<root>/{query,test}/*.png")
    ds = load_dataset("my_set", tmp_path, seed=3)
    assert seen == [(tmp_path, 3)] and ds.name == "mine"
    assert rows(ds, "query") == rows(load_dataset("ltcc", tmp_path), "query")
    assert "mine" in datasets.available_datasets()
    with pytest.raises(ValueError, match="registered already"):
        datasets.register_dataset("ltcc", load_mine)


def test_every_layout_is_documented():
    doc = datasets.__doc__
    for name in ("prcc", "ltcc", "last", "ccvid", "vcclothes", "street42", "demo"):
        assert f"\n{name}::\n" in doc
    for name in datasets.DATASET_NAMES:
        assert name in datasets.LAYOUTS


def test_order_does_not_depend_on_creation_order(tmp_path):
    files = [f"query/{p:03d}_1_c1_{k:06d}.png" for p in (3, 1, 2) for k in (5, 1)] + ["test/001_1_c2_000009.png"]
    touch(tmp_path / "a", *files)
    touch(tmp_path / "b", *reversed(files))
    a, b = load_dataset("ltcc", tmp_path / "a"), load_dataset("ltcc", tmp_path / "b")
    rel = lambda ds: [os.path.relpath(p, ds.root) for p in ds.images["path"]]  # noqa: E731
    assert rel(a) == rel(b)
    assert rel(a)[1:] == sorted(f for f in files if f.startswith("query"))
    pd.testing.assert_frame_equal(a.images.drop(columns="path"), b.images.drop(columns="path"))


# --------------------------------------------------------------------------- faults (issue 12)
def test_upper_case_extensions_are_images(tmp_path):
    touch(tmp_path, "test/001_1_c1_000001.PNG", "test/001_2_c2_000002.png", "query/001_3_c3_000003.Png")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedFilesWarning)
        ds = load_dataset("ltcc", tmp_path)
    assert [Path(p).name for p in ds.images["path"]] == ["001_1_c1_000001.PNG", "001_2_c2_000002.png",
                                                         "001_3_c3_000003.Png"]
    assert ds.file_report.empty and "skipped" not in ds.summary()


def test_non_images_and_dangling_symlinks_are_counted_and_named(tmp_path):
    touch(tmp_path, "test/001_1_c1_000001.png", "test/Thumbs.db", "test/.DS_Store", "query/001_3_c3_000003.png")
    (tmp_path / "test/sub").mkdir()
    os.symlink(tmp_path / "gone.png", tmp_path / "query/001_3_c3_000004.png")
    with pytest.warns(SkippedFilesWarning) as record:
        ds = load_dataset("ltcc", tmp_path)
    text = str(record[0].message)
    assert text.startswith("ltcc: 4 file(s) skipped, 0 kept with a note")
    assert f"dangling or looping symbolic link: {tmp_path}/query/001_3_c3_000004.png" in text
    assert ds.summary()["skipped"].to_dict() == {"gallery": 3, "query": 1}
    assert sorted(ds.file_report["reason"]) == ["a folder where image files belong",
                                                "dangling or looping symbolic link", "hidden file",
                                                "not a .png file"]
    assert len(ds.images) == 2


def test_readme_inside_a_ccvid_tracklet_is_not_a_frame(tmp_path):
    (tmp_path / "gallery.txt").write_text("session1/001_01 1 a\n")
    (tmp_path / "query.txt").write_text("session2/001_02 1 b\n")
    touch(tmp_path, "session1/001_01/00001.jpg", "session1/001_01/readme.txt", "session2/001_02/00001.JPG")
    with pytest.warns(SkippedFilesWarning, match=r"(?s)skipped 1: not a \.jpg/\.jpeg/\.png file: .*readme\.txt"):
        ds = load_dataset("ccvid", tmp_path)
    assert [Path(p).name for p in ds.images["path"]] == ["00001.jpg", "00001.JPG"]


def test_empty_42street_tracklet_is_reported(tmp_path):
    touch(tmp_path, "gallery/001_a.jpg", "test/tracklets/v1/001_000/f1.png")
    (tmp_path / "test/tracklets/v1/002_001").mkdir()
    with pytest.warns(SkippedFilesWarning, match=r"empty tracklet \(no \.png frames\): .*v1/002_001"):
        ds = load_dataset("street42", tmp_path)
    assert ds.summary().loc["query", "skipped"] == 1 and ds.summary().loc["query", "tracklets"] == 1


def test_last_file_disagreeing_with_its_folder_is_kept_with_a_note(tmp_path):
    touch(tmp_path, "test/query/000003_1.jpg", "test/gallery/000003/000003_2.jpg",
          "test/gallery/000003/000009_3.jpg")
    with pytest.warns(SkippedFilesWarning, match=r"(?s)0 file\(s\) skipped, 1 kept.*person 9, its folder '000003'"):
        ds = load_dataset("last", tmp_path)
    assert ds.gallery["pid"].tolist() == [3, 9]  # labelled by the name, as the reference parser does
    assert ds.file_report["action"].tolist() == ["kept"]


def test_symlink_loop_as_root_is_named(tmp_path):
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    with pytest.raises(DatasetNotFoundError, match=rf"dataset folder {tmp_path}/loop is a symbolic link that "
                                                    r"leads nowhere .*loops back"):
        load_dataset("ltcc", tmp_path / "loop")


def test_symlink_loop_as_split_folder_is_named(tmp_path):
    touch(tmp_path, "test/001_1_c1_000001.png")
    os.symlink(tmp_path / "query", tmp_path / "query")
    with pytest.raises(DatasetNotFoundError, match=rf"split folder {tmp_path}/query is a symbolic link"):
        load_dataset("ltcc", tmp_path)


@pytest.mark.skipif(NO_DAC is None, reason="setpriv is not installed")
def test_folder_that_cannot_be_listed_is_named(tmp_path):
    touch(tmp_path, "test/001_1_c1_000001.png", "query/001_3_c3_000003.png")
    (tmp_path / "query").chmod(0o311)  # enterable, not listable
    try:
        done = run_python("import sys\nfrom reface_utils.data.datasets import load_dataset, DatasetError\n"
                          "try:\n    load_dataset('ltcc', sys.argv[1])\nexcept DatasetError as e:\n    print(e)\n",
                          str(tmp_path), prefix=NO_DAC)
    finally:
        (tmp_path / "query").chmod(0o755)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith(f"ltcc: cannot list the folder {tmp_path}/query: Permission denied")
