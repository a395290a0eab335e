"""The generated demo dataset: deterministic, parsed by the real LTCC parser, clothes-
changing by construction, and its faces are where the manifest says (real detector)."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from reface_utils.data import demo
from reface_utils.data.datasets import load_dataset
from reface_utils.data.demo.people import _source_image


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    """A REFACE_HOME whose demo cache holds the seed-0 demo, generated once per session."""
    home = tmp_path_factory.mktemp("reface-home")
    demo.make_demo_dataset(root=home / "datasets", seed=0)
    return home


@pytest.fixture(scope="session")
def demo_dir(home) -> Path:
    return home / "datasets" / f"demo-{demo.DEMO_VERSION}-seed0"


@pytest.fixture(scope="session")
def manifest(demo_dir) -> pd.DataFrame:
    return demo.read_manifest(demo_dir)


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_and_sizes(demo_dir, manifest):
    assert sorted(p.name for p in demo_dir.iterdir()) == [demo.MANIFEST_NAME, "query", "test", "train"]
    assert list(manifest.columns[:len(demo.MANIFEST_COLUMNS)]) == list(demo.MANIFEST_COLUMNS)
    counts = manifest["role"].value_counts().to_dict()
    # 9 ids x (12 + 12) gallery, 9 x (3 + 5 + 5) query, 2 train ids x 2 outfits x 4
    assert counts == {"gallery": 216, "query": 117, "train": 16}
    assert manifest["file"].is_unique
    files = sorted(str(p.relative_to(demo_dir)) for p in demo_dir.glob("*/*.png"))
    assert files == sorted(manifest["file"])
    img = cv2.imread(str(demo_dir / manifest["file"][0]))
    assert img.shape == (256, 128, 3)  # DEFAULT_SIZE is (width, height)
    # the parent holds nothing but the finished folder (the temporary one was renamed)
    assert [p.name for p in demo_dir.parent.iterdir()] == [demo_dir.name]


def test_parsed_by_the_ltcc_parser(demo_dir, manifest, home, monkeypatch):
    monkeypatch.setenv("REFACE_HOME", str(home))
    ds = load_dataset("demo")  # root=None: the cached copy under REFACE_HOME, not regenerated
    assert ds.root == demo_dir.absolute()
    assert ds.name == "demo" and ds.eval_modes == ("standard", "CC", "SC")
    test = manifest[manifest["role"] != "train"].sort_values(["role", "path"])
    table = ds.images.sort_values(["role", "path"])
    assert table["path"].tolist() == test["path"].tolist()
    assert table["pid"].tolist() == test["pid"].tolist()
    assert table["camid"].tolist() == (test["camera"] - 1).tolist()
    # LTCC clothes ids are ranks of "<pid>_<clothes>" keys: one per (pid, outfit)
    pairs = set(zip(table["pid"], test["clothes"], table["clothes_id"]))
    assert len(pairs) == len({(p, c) for p, c, _ in pairs}) == len({i for _, _, i in pairs}) == 9 * 4
    s = ds.summary()
    assert s.loc["gallery"].to_dict() == {"images": 216, "ids": 9, "cameras": 6, "outfits": 18}
    assert s.loc["query"].to_dict() == {"images": 117, "ids": 9, "cameras": 6, "outfits": 27}
    # the demo folder itself works as root too
    assert len(load_dataset("demo", demo_dir).images) == 333


def test_clothes_changing_by_construction(manifest):
    gallery = manifest[manifest["role"] == "gallery"]
    query = manifest[manifest["role"] == "query"]
    gallery_outfits = set(zip(gallery["pid"], gallery["clothes"]))
    changing = [(p, c) not in gallery_outfits for p, c in zip(query["pid"], query["clothes"])]
    assert sum(changing) == 9 * 10          # outfits 3 and 4: never in that person's gallery
    assert len(query) - sum(changing) == 27  # outfit 1: same-clothes queries
    per_outfit = query.groupby(["pid", "clothes"]).size()
    assert (per_outfit >= 3).all()           # several queries share each outfit
    # every clothes-changing outfit has queries with and without a usable face
    cc = query[changing]
    faces = cc.groupby(["pid", "clothes"])["face_visible"].agg(["sum", "size"])
    assert ((faces["sum"] >= 2) & (faces["sum"] < faces["size"])).all()
    # styles are shared across people: an appearance model must confuse them
    people_per_style = manifest[manifest["role"] != "train"].groupby("style")["pid"].nunique()
    assert (people_per_style >= 2).sum() >= 8
    # each query has a same-identity gallery image in another camera (a valid query)
    for r in query.itertuples():
        g = gallery[(gallery["pid"] == r.pid) & (gallery["camera"] != r.camera)]
        assert len(g) >= 12
    # about a third of the images show no usable face, of each kind
    test = manifest[manifest["role"] != "train"]
    assert 0.28 <= 1 - test["face_visible"].mean() <= 0.40
    assert set(test.loc[~test["face_visible"], "view"]) == {"back", "small", "occluded"}


def test_deterministic_and_regenerated_when_incomplete(demo_dir, tmp_path):
    # A damaged copy (one file missing, one truncated) is detected and regenerated,
    # and the regenerated folder is byte-identical to the first generation.
    copy = tmp_path / demo_dir.name
    shutil.copytree(demo_dir, copy)
    first = sorted(copy.glob("query/*.png"))
    first[0].unlink()
    first[1].write_bytes(b"")
    out = demo.make_demo_dataset(root=tmp_path, seed=0)
    assert out == copy
    assert hashes(out) == hashes(demo_dir)
    # complete: reused as is, nothing rewritten
    stamp = (out / demo.MANIFEST_NAME).stat().st_mtime_ns
    assert demo.make_demo_dataset(root=tmp_path, seed=0) == out
    assert (out / demo.MANIFEST_NAME).stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [copy.name]


def test_another_seed_gives_another_dataset():
    a, b = demo.demo_plan(0), demo.demo_plan(1)
    assert len(a) == len(b) and not a.equals(b)
    person = demo.load_identities()[0]
    outfit = demo.OUTFIT_STYLES[0]
    same = [demo.render_person(person, outfit, np.random.default_rng(7)) for _ in range(2)]
    other = demo.render_person(person, outfit, np.random.default_rng(8))
    assert np.array_equal(same[0], same[1]) and not np.array_equal(same[0], other)


def test_face_boxes_match_the_detector():
    """The fixed face boxes in FACE_SOURCES are where YuNet finds the faces."""
    from reface_utils.models.face import load_face_model

    model = load_face_model("sface", det_size=None)
    for source in sorted({s for s, _ in demo.FACE_SOURCES.values()}):
        image = _source_image(source)
        found = model.detect_all(image).bbox
        for name, (src, (x, y, w, h)) in demo.FACE_SOURCES.items():
            if src != source:
                continue
            box = np.array([x, y, x + w, y + h], np.float32)
            lo, hi = np.maximum(found[:, :2], box[:2]), np.minimum(found[:, 2:], box[2:])
            inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
            union = np.prod(found[:, 2:] - found[:, :2], axis=1) + w * h - inter
            assert (inter / union).max() > 0.9, name


def test_the_face_detector_agrees_with_the_manifest(manifest):
    """The offline detector finds the faces meant to be seen, and not the others.

    Measured on all 333 test images of the seed-0 demo with ``load_face_model("sface")``
    (YuNet, default det_size) at score >= 0.6: 144/144 gallery and 72/72 query
    face-visible images detected (215/216 also at >= 0.8; scores 0.78-0.94), and 1 of
    the 117 no-face images (a far-away crop, score 0.65; none of the back views or
    occluded faces). Recognising a face costs ~50 ms on a CPU, so every query image
    and every no-face image is checked here, but only a third of the gallery's faces.
    """
    from reface_utils.models.face import load_face_model

    test = manifest[manifest["role"] != "train"].reset_index(drop=True)
    gallery_faces = test.index[(test["role"] == "gallery") & test["face_visible"]]
    keep = test.index.difference(gallery_faces[1::3]).difference(gallery_faces[2::3])
    sample = test.loc[keep].reset_index(drop=True)
    assert sample["face_visible"].sum() >= 110 and (~sample["face_visible"]).sum() == 117

    feats = load_face_model("sface").extract(list(sample["path"]), cache_dir=None, progress=False)
    found = feats.thresholded(0.6).has_face
    visible = sample["face_visible"].to_numpy()
    assert found[visible].mean() >= 0.95
    assert found[~visible].mean() <= 0.05
    for view in ("back", "occluded"):
        assert not found[sample["view"].to_numpy() == view].any(), view

    # The faces are the identities' real faces: a query's face finds its person.
    emb, pid = feats.embedding, sample["pid"].to_numpy()
    q = np.flatnonzero(found & (sample["role"] == "query").to_numpy())
    g = np.flatnonzero(found & (sample["role"] == "gallery").to_numpy())
    best = g[np.argmax(emb[q] @ emb[g].T, axis=1)]
    assert (pid[best] == pid[q]).mean() >= 0.9


def test_render_api_for_videos():
    person = demo.load_identities()[3]
    outfit = demo.make_outfit(demo.OUTFIT_STYLES[5], np.random.default_rng(0))
    frames = [demo.person_layer(person, outfit, 200, walk_phase=p) for p in (0.0, 0.25)]
    assert frames[0].shape == (200, 100, 4) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[1])  # the legs moved
    alpha = frames[0][:, :, 3]
    assert alpha[0, 0] == alpha[-1, 0] == alpha[0, -1] == 0  # transparent around the person
    assert alpha[100, 50] == 255                              # opaque on the body
    back = demo.person_layer(person, outfit, 200, facing="back")
    assert not np.array_equal(back[:40], frames[0][:40])      # the head differs ...
    assert np.array_equal(back[120:], frames[0][120:])        # ... the legs do not
    scene = demo.camera_background(2, (320, 180), np.random.default_rng(0))
    assert scene.shape == (180, 320, 3)
    crop = demo.render_person(person, outfit, np.random.default_rng(0), (96, 192), view="back",
                              background=scene)
    assert crop.shape == (192, 96, 3) and crop.dtype == np.uint8
    with pytest.raises(ValueError, match="view must be one of"):
        demo.render_person(person, outfit, np.random.default_rng(0), view="side")


def test_source_photos_are_available():
    people = demo.load_identities()
    assert [p.pid for p in people] == list(range(1, 10))
    assert len({p.name for p in people}) == 9
    for p in people:
        assert p.face is not None and p.face.shape == (128, 128, 3)
