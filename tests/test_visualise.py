"""Figures and the widget browser, driven without a browser."""
from __future__ import annotations

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from reface_utils import visualise as vis


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
