"""Figures and the widget browser, driven without a browser."""
from __future__ import annotations

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from reface_utils.apps import visualise as vis


@pytest.fixture()
def images(tmp_path):
    paths = []
    for i in range(7):
        img = np.full((64, 32, 3), 30 * i, np.uint8)
        p = tmp_path / f"im{i}.png"
        cv2.imwrite(str(p), img)
        paths.append(str(p))
    return paths


def test_top_k_breaks_ties_by_index():
    d = np.array([0.5, 0.1, 0.5, 0.1, 0.3])
    np.testing.assert_array_equal(vis.top_k(d, 4), [1, 3, 4, 0])
    np.testing.assert_array_equal(vis.top_k(np.stack([d, -d]), 2), [[1, 3], [0, 2]])


def test_retrieval_grid_marks_correct_wrong_and_enriched(images):
    fig = vis.show_retrieval(images[:2], images[2:], np.array([[0, 1, 2], [2, 1, 0]]),
                             np.array([[True, False, False], [False, False, True]]),
                             via_enriched=np.array([[True, False, False], [False] * 3]),
                             gallery_boxes=np.array([[2, 2, 10, 10], [np.nan] * 4] * 3)[:5])
    axes = np.array(fig.axes).reshape(2, 4)
    assert axes[0, 1].spines["top"].get_edgecolor()[:3] == pytest.approx((0x1a / 255, 0x98 / 255, 0x50 / 255))
    assert axes[0, 2].spines["top"].get_edgecolor()[:3] == pytest.approx((0xd7 / 255, 0x30 / 255, 0x27 / 255))
    assert any(t.get_text() == "E" for t in axes[0, 1].texts)
    assert not any(t.get_text() == "E" for t in axes[0, 2].texts)
    assert len(axes[0, 1].patches) == 1  # the face box of gallery image 0
    plt.close(fig)


def test_sweeps_and_cmc_plot_what_they_are_given():
    fig = vis.plot_cmc({"ReID": np.linspace(0.2, 1, 30), "fused": np.linspace(0.5, 1, 30)})
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 and len(lines[0].get_xdata()) == 20
    assert lines[0].get_ydata()[0] == pytest.approx(20)
    plt.close(fig)
    sweep = pd.DataFrame({"alpha": [0, 0.5, 1], "top1": [0.1, 0.6, 0.3], "mAP": [0.1, 0.4, 0.2]})
    fig = vis.plot_alpha_sweep(sweep)
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [10, 60, 30])
    plt.close(fig)
    fig = vis.plot_threshold_sweep(pd.DataFrame({"threshold": [0.3, 0.5], "enriched": [9, 4],
                                                 "precision": [0.5, 1.0]}))
    assert len(fig.axes) == 2
    plt.close(fig)


def _legend_clear_of_axes(fig, ax, legend):
    fig.canvas.draw()
    box, axes_box, figure_box = (legend.get_window_extent(), ax.get_window_extent(), fig.bbox)
    return not box.overlaps(axes_box) and figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1 \
        and figure_box.y0 <= box.y0


def test_cmc_and_alpha_sweep_legends_sit_outside_the_curves():
    cmcs = {name: np.linspace(0.2, 1, 30) for name in
            ("ReID", "face", "fused", "fused+enriched", "fused+enriched (own copy left out)")}
    fig = vis.plot_cmc(cmcs)
    ax = fig.axes[0]
    assert len(ax.get_legend().get_texts()) == 5 and _legend_clear_of_axes(fig, ax, ax.get_legend())
    plt.close(fig)
    sweep = pd.DataFrame({"alpha": [0, 0.5, 1] * 2, "top1": [0.1, 0.6, 0.3] * 2, "mAP": [0.1, 0.4, 0.2] * 2,
                          "config": ["fused"] * 3 + ["fused+enriched"] * 3})
    fig = vis.plot_alpha_sweep(sweep, chosen=0.75)
    ax = fig.axes[0]
    assert _legend_clear_of_axes(fig, ax, ax.get_legend())
    plt.close(fig)


def _marks(ax):
    """x positions of vertical lines (constant x, spanning the axes) and the texts."""
    lines = [line for line in ax.get_lines() if len(set(np.atleast_1d(line.get_xdata()))) == 1
             and line.get_transform().contains_branch_seperately(ax.transData) == (True, False)]
    return [float(np.atleast_1d(line.get_xdata())[0]) for line in lines], [t.get_text() for t in ax.texts]


def test_sweeps_mark_the_chosen_value():
    sweep = pd.DataFrame({"alpha": [0, 0.5, 1], "top1": [0.1, 0.6, 0.3], "mAP": [0.1, 0.4, 0.2]})
    fig = vis.plot_alpha_sweep(sweep, chosen=0.75)
    xs, texts = _marks(fig.axes[0])
    assert xs == [0.75] and "alpha = 0.75" in texts
    assert "chosen alpha" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
    fig = vis.plot_threshold_sweep(pd.DataFrame({"threshold": [0.3, 0.5, 0.7], "enriched": [9, 4, 1],
                                                 "precision": [0.5, 0.8, 1.0]}), chosen=0.5)
    xs, texts = _marks(fig.axes[0])
    assert xs == [0.5] and "threshold = 0.5" in texts
    plt.close(fig)
    fig = vis.plot_alpha_sweep(sweep)  # nothing chosen: nothing marked
    assert _marks(fig.axes[0]) == ([], [])
    plt.close(fig)


@pytest.fixture()
def labelled():
    """A hand-made query/gallery split: pid 1 has a same-clothes query first and a
    clothes-changing one later; pid 2 only same-clothes queries; pid 3 has no gallery
    image; pid 4 a clothes-changing query; pid 5 unknown clothes (-1)."""
    query = pd.DataFrame({"pid": [1, 2, 1, 3, 2, 4, 1, 5],
                          "camid": [1, 1, 2, 1, 2, 2, 2, 1],
                          "clothes_id": [10, 20, 11, 30, 20, 41, 12, -1]})
    gallery = pd.DataFrame({"pid": [1, 2, 4, 4, 5], "camid": [0, 0, 0, 0, 0],
                            "clothes_id": [10, 20, 40, 42, 50]})
    return query, gallery


def test_pick_queries_one_per_identity_clothes_changing_first(labelled):
    query, gallery = labelled
    rows = vis.pick_queries(query, gallery)
    # pid 1: row 2 (first CC; row 0 wears gallery clothes), pid 4: row 5 (CC); then pid 2 (row 1,
    # same clothes), pid 5 (row 7, clothes unknown: not counted as CC); pid 3 last (no gallery).
    np.testing.assert_array_equal(rows, [2, 5, 1, 7, 3])
    assert query["pid"].to_numpy()[rows].tolist() == [1, 4, 2, 5, 3]
    np.testing.assert_array_equal(vis.pick_queries(query, gallery, 2), [2, 5])
    shuffled = query.sample(frac=1, random_state=0)
    again = vis.pick_queries(shuffled, gallery)
    assert shuffled["pid"].to_numpy()[again].tolist() == [1, 4, 2, 5, 3]  # same identities, same order
    with pytest.raises(ValueError, match="clothes_id"):
        vis.pick_queries(query.drop(columns="clothes_id"), gallery)


def test_show_ranks_titles_colours_and_appended_samples(labelled, images):
    query, gallery = labelled
    query = query.assign(path=(images * 2)[:len(query)])
    gallery = gallery.assign(path=images[:len(gallery)])
    ranks = np.tile(np.arange(5), (len(query), 1))
    ranks[2] = [5, 0, 1, 2, 3]  # column 5 = the first appended sample
    samples = pd.DataFrame({"query_index": [6], "gallery_index": [0], "pid": [1]})
    appended = vis.appended_samples(samples, query)
    via = np.zeros((2, 5), bool)
    via[1, 2] = True  # "min" enrichment lowered query 5's third-ranked distance
    fig = vis.show_ranks(ranks, query, gallery, [2, 5], k=3, appended=appended, via_enriched=via,
                         gallery_boxes=np.zeros((5, 4)), suptitle="test")
    axes = np.array(fig.axes).reshape(2, 4)
    titles = [[ax.get_title() for ax in row] for row in axes]
    assert titles[0] == ["query 2: pid 1\ncam 2 cl 11", "#1 pid 1\nenriched", "#2 pid 1\ncam 0 cl 10",
                         "#3 pid 2\ncam 0 cl 20"]
    assert titles[1][0] == "query 5: pid 4\ncam 2 cl 41" and titles[1][3] == "#3 pid 4\ncam 0 cl 40"
    assert any(t.get_text() == "E" for t in axes[0, 1].texts)
    assert not any(t.get_text() == "E" for t in axes[0, 2].texts)
    assert [any(t.get_text() == "E" for t in ax.texts) for ax in axes[1, 1:]] == [False, False, True]
    green, red = (0x1a / 255, 0x98 / 255, 0x50 / 255), (0xd7 / 255, 0x30 / 255, 0x27 / 255)
    assert axes[0, 2].spines["top"].get_edgecolor()[:3] == pytest.approx(green)
    assert axes[0, 3].spines["top"].get_edgecolor()[:3] == pytest.approx(red)
    plt.close(fig)
    with pytest.raises(ValueError, match="appended"):  # column 5 without the appended samples
        vis.show_ranks(ranks, query, gallery, [2], k=3)


def test_enriched_examples_frame_wrong_attachments_red(images):
    samples = pd.DataFrame({"query_index": [0, 1], "gallery_index": [2, 3], "pid": [5, 6],
                            "similarity": [0.9, 0.6], "true_pid": [5, 7]})
    fig = vis.show_enriched_examples(samples, images, images)
    top = np.array(fig.axes).reshape(2, 2)[0]
    assert top[0].spines["left"].get_edgecolor()[:3] == pytest.approx((0x1a / 255, 0x98 / 255, 0x50 / 255))
    assert top[1].spines["left"].get_edgecolor()[:3] == pytest.approx((0xd7 / 255, 0x30 / 255, 0x27 / 255))
    plt.close(fig)


def test_browser_callbacks_redraw_with_new_query_and_alpha(images):
    gallery = images[2:]
    reid = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]])
    face = np.array([[0.9, 0.8, 0.0, 0.7, 0.6], [0.0, 0.9, 0.9, 0.9, 0.9]])
    calls = []

    def score(q, alpha, enriched):
        calls.append((q, alpha, enriched))
        d = alpha * reid[q] + (1 - alpha) * face[q]
        return d, np.zeros(5, bool) | enriched

    pids = np.array([0, 1, 2, 0, 1])
    browser = vis.RetrievalBrowser(score, lambda q, idx: pids[idx] == q, images[:2], gallery,
                                   alpha=1.0, k=3)
    assert list(browser.ranked) == [0, 1, 2]
    first = browser.figure
    browser.alpha.value = 0.0  # the slider's observer redraws: face only
    assert calls[-1] == (0, 0.0, True)
    assert list(browser.ranked) == [2, 4, 3] and browser.figure is not first
    assert "alpha=0.00" in browser.figure._suptitle.get_text()
    browser.query.value = 1
    assert list(browser.ranked) == [0, 1, 2]
    browser.k.value = 5
    assert len(browser.ranked) == 5
    browser.enriched.value = False
    assert calls[-1][2] is False and "enrichment off" in browser.figure._suptitle.get_text()
    assert not any(t.get_text() == "E" for ax in browser.figure.axes for t in ax.texts)


def test_browser_lists_queries_by_label_wraps_long_top_k_and_shows_each_distance(tmp_path):
    import matplotlib.pyplot as plt

    from reface_utils.apps.visualise import RetrievalBrowser

    img = tmp_path / "x.png"
    plt.imsave(img, np.zeros((8, 4, 3)))
    n_gallery = 25
    fused = np.linspace(0, 1, n_gallery)

    def score(q, alpha, enriched):
        return fused + q, np.zeros(n_gallery, bool), fused * 2, fused * 3

    browser = RetrievalBrowser(score, lambda q, idx: idx % 2 == 0, [str(img)] * 3, [str(img)] * n_gallery,
                               query_labels=["pid 1 / cam 0", "pid 2 / cam 1", "pid 3 / cam 2"],
                               query_notes=lambda q: f"note {q}", k=15)
    assert browser.query.options[1] == ("1: pid 2 / cam 1", 1)
    assert not browser.alpha.continuous_update and not browser.k.continuous_update
    axes = [ax for ax in browser.figure.axes if ax.get_title()]
    # 15 results, 10 a row: two rows, each starting with the query
    assert sum(ax.get_title().startswith("1: pid 1") or ax.get_title() == "0: pid 1 / cam 0" for ax in axes) == 2
    assert any(ax.get_title() == "#1 0.00\nR 0.00 F 0.00" for ax in axes)
    assert any(ax.get_title().startswith("#15 ") for ax in axes)
    browser.query.value = 2
    assert browser.notes.value == "note 2"
