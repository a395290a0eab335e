"""Pictures of results: retrieval grids, CMC curves, sweeps, and a live widget browser.

Every function returns a matplotlib ``Figure`` (the notebook shows it, a script saves
it); nothing here computes metrics. The :class:`RetrievalBrowser` takes a scoring
function, so it works with any distance (ReID, face, fused, enriched) the caller defines.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .images import read_rgb

__all__ = ["visible_boxes", "show_retrieval", "show_enriched_examples", "plot_cmc", "plot_alpha_sweep",
           "plot_threshold_sweep", "RetrievalBrowser", "top_k"]

CORRECT, WRONG, FACE, ENRICHED = "#1a9850", "#d73027", "#fee08b", "#4575b4"


def top_k(distances: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest distances, ties broken by gallery index (as in metrics)."""
    return np.argsort(np.asarray(distances), axis=-1, kind="stable")[..., :k]


def visible_boxes(has_face: np.ndarray, bbox: np.ndarray) -> np.ndarray:
    """Face boxes to draw: the accepted ones, NaN elsewhere (rejected detections keep
    their raw box in ``FaceFeatures`` for inspection, but are not faces)."""
    return np.where(np.asarray(has_face, bool)[:, None], bbox, np.nan)


def _image_axis(ax, path: str, *, border: str | None = None, box=None, badge: str | None = None,
                title: str | None = None) -> None:
    try:
        img = read_rgb(path)
        ax.imshow(img)
    except OSError:
        ax.text(0.5, 0.5, "unreadable", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    if box is not None and np.all(np.isfinite(box)):
        x1, y1, x2, y2 = box
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=FACE, lw=1.5))
    if border is not None:
        for spine in ax.spines.values():
            spine.set_edgecolor(border)
            spine.set_linewidth(4)
    if badge:
        ax.text(0.03, 0.97, badge, transform=ax.transAxes, va="top", ha="left", fontsize=8,
                color="white", bbox=dict(facecolor=ENRICHED, edgecolor="none", pad=1.5))
    if title:
        ax.set_title(title, fontsize=8)


def show_retrieval(query_paths: Sequence[str], gallery_paths: Sequence[str], ranked: np.ndarray,
                   correct: np.ndarray, *, query_boxes: np.ndarray | None = None,
                   gallery_boxes: np.ndarray | None = None,
                   via_enriched: np.ndarray | None = None,
                   query_titles: Sequence[str] | None = None,
                   gallery_titles: np.ndarray | None = None,
                   suptitle: str | None = None) -> Figure:
    """One row per query: the query, then its top-k gallery images.

    ``ranked`` (nq x k) holds gallery indices; ``correct`` (nq x k) colours each frame
    green/red; face boxes are drawn in yellow; ``via_enriched`` (nq x k) marks gallery
    entries whose distance came from an enriched sample ("E").
    """
    ranked = np.atleast_2d(ranked)
    correct = np.atleast_2d(correct)
    nq, k = ranked.shape
    fig, axes = plt.subplots(nq, k + 1, figsize=(1.3 * (k + 1), 2.6 * nq), squeeze=False)
    for row in range(nq):
        qbox = None if query_boxes is None else query_boxes[row]
        _image_axis(axes[row, 0], query_paths[row], border="black", box=qbox,
                    title=query_titles[row] if query_titles is not None else "query")
        for col in range(k):
            g = int(ranked[row, col])
            gbox = None if gallery_boxes is None else gallery_boxes[g]
            badge = "E" if via_enriched is not None and via_enriched[row, col] else None
            title = gallery_titles[row][col] if gallery_titles is not None else f"#{col + 1}"
            _image_axis(axes[row, col + 1], gallery_paths[g],
                        border=CORRECT if correct[row, col] else WRONG, box=gbox, badge=badge,
                        title=title)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def show_enriched_examples(samples: pd.DataFrame, query_paths: Sequence[str],
                           gallery_paths: Sequence[str], *, n: int = 6,
                           query_boxes: np.ndarray | None = None,
                           gallery_boxes: np.ndarray | None = None) -> Figure:
    """Pairs (enriched query -> the gallery image it was attached to), with similarity.

    ``samples`` is the enrichment table (query_index, gallery_index, pid, similarity and,
    when labels exist, true_pid). Wrong attachments are framed red.
    """
    shown = samples.sort_values("similarity", ascending=False).head(n)
    cols = max(len(shown), 1)
    fig, axes = plt.subplots(2, cols, figsize=(1.6 * cols, 5.4), squeeze=False)
    for col, (_, s) in enumerate(shown.iterrows()):
        ok = None
        if "true_pid" in s and pd.notna(s["true_pid"]):
            ok = int(s["true_pid"]) == int(s["pid"])
        border = None if ok is None else (CORRECT if ok else WRONG)
        qi, gi = int(s["query_index"]), int(s["gallery_index"])
        _image_axis(axes[0, col], query_paths[qi], border=border,
                    box=None if query_boxes is None else query_boxes[qi],
                    title=f"query {qi}\nsim {s['similarity']:.2f}")
        _image_axis(axes[1, col], gallery_paths[gi], border=border,
                    box=None if gallery_boxes is None else gallery_boxes[gi],
                    title=f"gallery {gi}\npid {int(s['pid'])}")
    for col in range(len(shown), cols):
        axes[0, col].axis("off")
        axes[1, col].axis("off")
    fig.suptitle("Enriched samples: query (top) attached to gallery image (bottom)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_cmc(cmcs: Mapping[str, np.ndarray], *, max_rank: int = 20, title: str = "CMC") -> Figure:
    """CMC curves (rank 1..max_rank), one line per configuration."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, cmc in cmcs.items():
        cmc = np.asarray(cmc)[:max_rank]
        ax.plot(np.arange(1, len(cmc) + 1), 100 * cmc, marker=".", label=name)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_title(title)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_alpha_sweep(sweep: pd.DataFrame, *, title: str = "ReID/face fusion weight") -> Figure:
    """top-1 and mAP against alpha (columns: alpha, top1, mAP, optional config)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    groups = sweep.groupby("config") if "config" in sweep else [("", sweep)]
    for name, part in groups:
        part = part.sort_values("alpha")
        suffix = f" ({name})" if name else ""
        ax.plot(part["alpha"], 100 * part["top1"], marker="o", label=f"top-1{suffix}")
        ax.plot(part["alpha"], 100 * part["mAP"], marker="s", ls="--", label=f"mAP{suffix}")
    ax.set_xlabel("alpha (1 = ReID only, 0 = face only)")
    ax.set_ylabel("%")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_threshold_sweep(sweep: pd.DataFrame, *, title: str = "Enrichment threshold") -> Figure:
    """Enriched count and precision against the face similarity threshold."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(sweep["threshold"], sweep["enriched"], marker="o", color=ENRICHED, label="enriched samples")
    ax.set_xlabel("face similarity threshold")
    ax.set_ylabel("enriched samples", color=ENRICHED)
    if "precision" in sweep:
        twin = ax.twinx()
        twin.plot(sweep["threshold"], 100 * sweep["precision"], marker="s", color=CORRECT,
                  label="precision")
        twin.set_ylabel("precision (%)", color=CORRECT)
        twin.set_ylim(0, 105)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


ScoreFn = Callable[[int, float, bool], tuple[np.ndarray, np.ndarray]]


class RetrievalBrowser:
    """An ipywidgets browser: query picker, alpha slider, enrichment on/off, top-k.

    ``score(query_index, alpha, enriched) -> (distances (G,), via_enriched (G,) bool)``
    defines the ranking; ``is_correct(query_index, gallery_indices) -> bool array``
    colours it. Widgets are created on construction; :meth:`update` redraws (the
    widgets' observers call it), so the browser can be driven without a browser.
    """

    def __init__(self, score: ScoreFn, is_correct: Callable[[int, np.ndarray], np.ndarray],
                 query_paths: Sequence[str], gallery_paths: Sequence[str], *,
                 query_boxes: np.ndarray | None = None, gallery_boxes: np.ndarray | None = None,
                 query_titles: Sequence[str] | None = None, alpha: float = 0.75,
                 enriched: bool = True, k: int = 8):
        import ipywidgets as widgets

        self._score, self._is_correct = score, is_correct
        self.query_paths, self.gallery_paths = list(query_paths), list(gallery_paths)
        self.query_boxes, self.gallery_boxes = query_boxes, gallery_boxes
        self.query_titles = query_titles
        self.query = widgets.IntSlider(value=0, min=0, max=max(len(self.query_paths) - 1, 0),
                                       description="query")
        self.alpha = widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05,
                                         description="alpha")
        self.enriched = widgets.Checkbox(value=enriched, description="enriched gallery")
        self.k = widgets.IntSlider(value=k, min=1, max=min(20, len(self.gallery_paths)),
                                   description="top-k")
        # The picture is an Image widget (PNG bytes): updating it is a plain state change,
        # whereas capturing plots into an Output widget was seen to hang headless runs.
        self.image = widgets.Image(format="png")
        self.widget = widgets.VBox([widgets.HBox([self.query, self.alpha]),
                                    widgets.HBox([self.enriched, self.k]), self.image])
        self.figure: Figure | None = None
        self.ranked: np.ndarray = np.empty(0, dtype=int)
        for control in (self.query, self.alpha, self.enriched, self.k):
            control.observe(lambda change: self.update(), names="value")
        self.update()

    def update(self) -> Figure:
        q = int(self.query.value)
        distances, via = self._score(q, float(self.alpha.value), bool(self.enriched.value))
        self.ranked = top_k(distances, int(self.k.value))
        correct = np.asarray(self._is_correct(q, self.ranked))
        title = (f"query {q}: alpha={self.alpha.value:.2f}, "
                 f"enrichment {'on' if self.enriched.value else 'off'}")
        self.figure = show_retrieval(
            [self.query_paths[q]], self.gallery_paths, self.ranked[None], correct[None],
            query_boxes=None if self.query_boxes is None else self.query_boxes[[q]],
            gallery_boxes=self.gallery_boxes, via_enriched=np.asarray(via)[self.ranked][None],
            query_titles=None if self.query_titles is None else [self.query_titles[q]],
            suptitle=title)
        import io

        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=80)
        # Closed at once (it stays readable): the Image widget shows it, whereas an open figure
        # is also shown by the inline backend after the callback, in JupyterLab's Log Console.
        plt.close(self.figure)
        self.image.value = buffer.getvalue()
        return self.figure

    def _ipython_display_(self):  # shows the widget when it is a cell's last expression
        from IPython.display import display

        display(self.widget)
