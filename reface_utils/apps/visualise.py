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

from ..core.images import read_rgb
from ..method.retrieval import top_k  # re-exported: visualise.top_k is public

__all__ = ["visible_boxes", "show_retrieval", "show_enriched_examples", "plot_cmc", "plot_alpha_sweep",
           "plot_threshold_sweep", "RetrievalBrowser", "top_k", "pick_queries", "appended_samples", "show_ranks"]

CORRECT, WRONG, FACE, ENRICHED = "#1a9850", "#d73027", "#fee08b", "#4575b4"


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

    ``ranked`` (nq x k) holds gallery indices (-1: an empty slot); ``correct`` (nq x k) colours each frame
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
            if g < 0:  # an empty slot (a wrapped row shorter than the others)
                axes[row, col + 1].axis("off")
                continue
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


def pick_queries(query: pd.DataFrame, gallery: pd.DataFrame, n: int | None = None) -> np.ndarray:
    """Rows of ``query`` (positions) to show in a retrieval figure: one query per identity,
    preferring clothes-changing ones, deterministic.

    Within an identity the first query (in table order) of the best tier is taken:
    0 = clothes-changing (its ``clothes_id`` is known and none of that pid's gallery images
    wear it), 1 = same clothes as some gallery image of its pid, 2 = its pid has no
    gallery image. Identities are then listed by that tier, then by pid; ``n`` keeps the
    first n. Both tables need ``pid`` and ``clothes_id`` (-1: unknown clothes).
    """
    for name, table in (("query", query), ("gallery", gallery)):
        missing = {"pid", "clothes_id"} - set(table.columns)
        if missing:
            raise ValueError(f"{name} table lacks the column(s) {sorted(missing)} (columns: {list(table.columns)})")
    pairs = pd.MultiIndex.from_frame(query[["pid", "clothes_id"]].reset_index(drop=True))
    gallery_pairs = pd.MultiIndex.from_frame(gallery[["pid", "clothes_id"]].drop_duplicates())
    in_gallery = query["pid"].isin(gallery["pid"]).to_numpy()
    clothes_changing = in_gallery & (query["clothes_id"].to_numpy() >= 0) & ~pairs.isin(gallery_pairs)
    candidates = pd.DataFrame({"row": np.arange(len(query)), "pid": query["pid"].to_numpy(),
                               "tier": np.where(clothes_changing, 0, np.where(in_gallery, 1, 2))})
    chosen = (candidates.sort_values(["pid", "tier", "row"], kind="stable")
              .drop_duplicates("pid").sort_values(["tier", "pid"], kind="stable"))
    rows = chosen["row"].to_numpy(np.int64)
    return rows if n is None else rows[:n]


def appended_samples(samples: pd.DataFrame, sources: pd.DataFrame,
                     boxes: np.ndarray | None = None) -> pd.DataFrame:
    """The appended gallery columns of the "append" enrichment, for :func:`show_ranks`.

    ``samples`` is the enrichment table (``query_index``, ``pid``; row e is gallery column
    G + e of the saved ranks -- ``pipeline`` saves them so, through
    ``EnrichedGallery.columns_by_table_row``), ``sources`` the query images it indexes (all query sets,
    concatenated, as in ``pipeline.run_enrichment``), ``boxes`` their face boxes. A sample
    shows its query's image and carries the pid it was given (what the metrics count).
    """
    index = samples["query_index"].to_numpy(np.int64)
    if len(index) and (index.min() < 0 or index.max() >= len(sources)):
        raise ValueError(f"enrichment query_index must lie in 0..{len(sources) - 1} (the query images given)")
    table = pd.DataFrame({"path": sources["path"].to_numpy()[index], "pid": samples["pid"].to_numpy(),
                          "camid": -1, "clothes_id": -1, "enriched": True})
    if boxes is not None:
        table["box"] = list(np.asarray(boxes, float)[index])
    return table


def _label(row: Mapping, head: str) -> str:
    """Two title lines: what the image is, then its labels (pid / camera / clothes)."""
    if row.get("enriched", False):
        return f"{head} pid {row['pid']}\nenriched"
    clothes = row.get("clothes_id", -1)
    return f"{head} pid {row['pid']}\ncam {row['camid']} cl {clothes if clothes >= 0 else '?'}"


def show_ranks(ranks: np.ndarray, query: pd.DataFrame, gallery: pd.DataFrame, rows: Sequence[int], *,
               k: int = 8, appended: pd.DataFrame | None = None,
               query_boxes: np.ndarray | None = None, gallery_boxes: np.ndarray | None = None,
               via_enriched: np.ndarray | None = None, suptitle: str | None = None) -> Figure:
    """The retrieval figure from saved ranks: for each query row in ``rows``, its top-k.

    ``ranks`` (Q x K) are gallery columns per query of ``query``, best first, as saved in
    ``ranks_<role>.npz`` (``RetrievalResult.topk[config]``). Columns >= len(gallery) are the
    appended enriched samples of the "append" formulation: pass them as ``appended`` (see
    :func:`appended_samples`); they are marked "E". ``via_enriched`` (len(rows) x k) marks
    gallery entries whose distance came from an enriched sample ("min" formulation).
    Titles give pid / camera / clothes; green frames: same pid as the query.
    ``query_boxes`` and ``gallery_boxes`` are indexed like ``query`` and ``gallery``.
    """
    ranks = np.asarray(ranks)
    rows = np.asarray(rows, np.int64).ravel()
    if ranks.ndim != 2 or len(ranks) != len(query):
        raise ValueError(f"ranks has shape {ranks.shape}, expected ({len(query)}, K): one row per query")
    if len(rows) and (rows.min() < 0 or rows.max() >= len(query)):
        raise ValueError(f"rows must lie in 0..{len(query) - 1}")
    ranked = ranks[rows, :min(k, ranks.shape[1])]
    columns = gallery.reset_index(drop=True).assign(enriched=False)
    boxes = None if gallery_boxes is None else np.asarray(gallery_boxes, float)
    n_columns = len(columns) + (len(appended) if appended is not None else 0)
    if ranked.size and ranked.max() >= n_columns:
        raise ValueError(f"ranks refer to gallery column {int(ranked.max())} but there are {len(columns)} gallery "
                         f"images and {n_columns - len(columns)} appended samples: pass the enrichment's appended "
                         "samples (visualise.appended_samples) for ranks saved with enrichment='append'")
    if appended is not None and len(appended):
        columns = pd.concat([columns, appended.drop(columns="box", errors="ignore")], ignore_index=True)
        if boxes is not None:
            extra = np.stack(appended["box"].to_numpy()) if "box" in appended else np.full((len(appended), 4), np.nan)
            boxes = np.concatenate([boxes, extra])
    pids = columns["pid"].to_numpy()
    correct = pids[ranked] == query["pid"].to_numpy()[rows, None]
    via = np.zeros(ranked.shape, bool) if via_enriched is None else np.asarray(via_enriched, bool)[:, :ranked.shape[1]]
    if via.shape != ranked.shape:
        raise ValueError(f"via_enriched has shape {via.shape}, expected {ranked.shape} (rows x k)")
    via = via | columns["enriched"].to_numpy(bool)[ranked]
    records = columns.to_dict("records")
    gallery_titles = [[_label(records[g], f"#{rank + 1}") for rank, g in enumerate(line)] for line in ranked]
    query_records = query.reset_index(drop=True).to_dict("records")
    query_titles = [_label(query_records[r], f"query {r}:") for r in rows]
    return show_retrieval(query["path"].to_numpy()[rows], columns["path"].tolist(), ranked, correct,
                          query_boxes=None if query_boxes is None else np.asarray(query_boxes)[rows],
                          gallery_boxes=boxes, via_enriched=via, query_titles=query_titles,
                          gallery_titles=gallery_titles, suptitle=suptitle)


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


def _legend_below(ax, ncol: int = 2) -> None:
    """The legend under the axes, so that it never covers a curve."""
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, frameon=False)


def plot_cmc(cmcs: Mapping[str, np.ndarray], *, max_rank: int = 20, title: str = "CMC") -> Figure:
    """CMC curves (rank 1..max_rank), one line per configuration; the legend sits below."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, cmc in cmcs.items():
        cmc = np.asarray(cmc)[:max_rank]
        ax.plot(np.arange(1, len(cmc) + 1), 100 * cmc, marker=".", label=name)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_title(title)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    _legend_below(ax)
    fig.tight_layout()
    return fig


def _sweep_axes(ax, *, xlabel: str, ylabel: str, title: str, chosen: float | None, name: str,
                ylabel_color: str | None = None) -> None:
    """Shared set-up of the sweep plots: labels, grid, and the chosen value marked by a
    dotted vertical line labelled with its value."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel, **({"color": ylabel_color} if ylabel_color else {}))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if chosen is not None:
        ax.axvline(chosen, color="0.25", ls=":", lw=1.5, label=f"chosen {name}")
        right_half = chosen > np.mean(ax.get_xlim())  # label on the side with room
        ax.annotate(f"{name} = {chosen:g}", xy=(chosen, 1), xycoords=("data", "axes fraction"),
                    xytext=(-3 if right_half else 3, -3), textcoords="offset points",
                    ha="right" if right_half else "left", va="top", fontsize=8, color="0.25")


def plot_alpha_sweep(sweep: pd.DataFrame, *, title: str = "ReID/face fusion weight",
                     chosen: float | None = None) -> Figure:
    """top-1 and mAP against alpha (columns: alpha, top1, mAP, optional config);
    ``chosen``: the alpha in use, marked by a vertical line."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    groups = sweep.groupby("config") if "config" in sweep else [("", sweep)]
    for name, part in groups:
        part = part.sort_values("alpha")
        suffix = f" ({name})" if name else ""
        ax.plot(part["alpha"], 100 * part["top1"], marker="o", label=f"top-1{suffix}")
        ax.plot(part["alpha"], 100 * part["mAP"], marker="s", ls="--", label=f"mAP{suffix}")
    _sweep_axes(ax, xlabel="alpha (1 = ReID only, 0 = face only)", ylabel="%", title=title,
                chosen=chosen, name="alpha")
    _legend_below(ax)
    fig.tight_layout()
    return fig


def plot_threshold_sweep(sweep: pd.DataFrame, *, title: str = "Enrichment threshold",
                         chosen: float | None = None) -> Figure:
    """Enriched count and precision against the face similarity threshold;
    ``chosen``: the threshold in use, marked by a vertical line."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(sweep["threshold"], sweep["enriched"], marker="o", color=ENRICHED, label="enriched samples")
    _sweep_axes(ax, xlabel="face similarity threshold", ylabel="enriched samples", title=title,
                chosen=chosen, name="threshold", ylabel_color=ENRICHED)
    if "precision" in sweep:
        twin = ax.twinx()
        twin.plot(sweep["threshold"], 100 * sweep["precision"], marker="s", color=CORRECT,
                  label="precision")
        twin.set_ylabel("precision (%)", color=CORRECT)
        twin.set_ylim(0, 105)
    fig.tight_layout()
    return fig


ScoreFn = Callable[[int, float, bool], tuple[np.ndarray, np.ndarray]]


class RetrievalBrowser:
    """An ipywidgets browser: query list, alpha slider, enrichment on/off, top-k.

    ``score(query_index, alpha, enriched) -> (fused (G,), via_enriched (G,) bool[, reid
    (G,), face (G,)])`` defines the ranking; when the ReID and face distances come too,
    each result's title shows all three. ``is_correct(query_index, gallery_indices) ->
    bool array`` colours it. ``query_labels`` name the entries of the query list (e.g.
    "pid 3 / cam 1 / clothes 7 / face / enriched"); ``query_notes(q)`` is a line under
    the controls (e.g. the query's own enriched matches). Sliders act when released.
    Widgets are created on construction; :meth:`update` redraws (the widgets' observers
    call it), so the browser can be driven without a browser. Core ipywidgets only, with
    what ipywidgets 7.7 (Colab's, rendered by Colab's own widget manager) and 8 share:
    tests/notebooks/test_browser_classic.py and tests/notebooks/test_browser.py drive it in each.
    """

    def __init__(self, score: ScoreFn, is_correct: Callable[[int, np.ndarray], np.ndarray],
                 query_paths: Sequence[str], gallery_paths: Sequence[str], *,
                 query_boxes: np.ndarray | None = None, gallery_boxes: np.ndarray | None = None,
                 query_titles: Sequence[str] | None = None, query_labels: Sequence[str] | None = None,
                 query_notes: Callable[[int], str] | None = None, alpha: float = 0.75,
                 enriched: bool = True, k: int = 8, per_row: int = 10):
        import ipywidgets as widgets

        self._score, self._is_correct, self._notes = score, is_correct, query_notes
        self.query_paths, self.gallery_paths = list(query_paths), list(gallery_paths)
        self.query_boxes, self.gallery_boxes = query_boxes, gallery_boxes
        self.query_titles, self.per_row = query_titles, per_row
        labels = list(query_labels) if query_labels is not None else [f"query {i}" for i in range(len(query_paths))]
        if len(labels) != len(self.query_paths):
            raise ValueError(f"{len(labels)} query labels for {len(self.query_paths)} queries")
        self.query = widgets.Dropdown(options=[(f"{i}: {label}", i) for i, label in enumerate(labels)], value=0,
                                      description="query", layout=widgets.Layout(width="36em"))
        self.alpha = widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="alpha",
                                         continuous_update=False)
        self.enriched = widgets.Checkbox(value=enriched, description="enriched gallery")
        self.k = widgets.IntSlider(value=k, min=1, max=min(30, len(self.gallery_paths)), description="top-k",
                                   continuous_update=False)
        self.notes = widgets.HTML()
        # The picture is an Image widget (PNG bytes): updating it is a plain state change,
        # whereas capturing plots into an Output widget was seen to hang headless runs.
        self.image = widgets.Image(format="png")
        self.widget = widgets.VBox([widgets.HBox([self.query, self.alpha]),
                                    widgets.HBox([self.enriched, self.k]), self.notes, self.image])
        self.figure: Figure | None = None
        self.ranked: np.ndarray = np.empty(0, dtype=int)
        for control in (self.query, self.alpha, self.enriched, self.k):
            control.observe(lambda change: self.update(), names="value")
        self.update()

    def update(self) -> Figure:
        import html

        q = int(self.query.value)
        scores = self._score(q, float(self.alpha.value), bool(self.enriched.value))
        fused, via = scores[0], np.asarray(scores[1])
        self.ranked = top_k(fused, int(self.k.value))
        correct = np.asarray(self._is_correct(q, self.ranked))
        titles = [f"#{i + 1} d={fused[g]:.3f}" for i, g in enumerate(self.ranked)]
        if len(scores) >= 4:  # ReID and face distances too
            titles = [f"#{i + 1} {fused[g]:.2f}\nR {scores[2][g]:.2f} F {scores[3][g]:.2f}"
                      for i, g in enumerate(self.ranked)]
        # Long top-k lists wrap into rows of per_row images (the query repeats on each row).
        rows = [slice(i, i + self.per_row) for i in range(0, len(self.ranked), self.per_row)] or [slice(0, 0)]
        width = min(self.per_row, len(self.ranked))
        ranked = np.full((len(rows), width), -1)
        ok, via_rows = np.zeros(ranked.shape, bool), np.zeros(ranked.shape, bool)
        title_rows = [[""] * width for _ in rows]
        for r, part in enumerate(rows):
            n = len(self.ranked[part])
            ranked[r, :n], ok[r, :n], via_rows[r, :n] = self.ranked[part], correct[part], via[self.ranked[part]]
            title_rows[r][:n] = titles[part]
        query_title = self.query_titles[q] if self.query_titles is not None else self.query.label
        self.figure = show_retrieval(
            [self.query_paths[q]] * len(rows), self.gallery_paths, ranked, ok,
            query_boxes=None if self.query_boxes is None else self.query_boxes[[q] * len(rows)],
            gallery_boxes=self.gallery_boxes, via_enriched=via_rows, query_titles=[query_title] * len(rows),
            gallery_titles=title_rows,
            suptitle=f"alpha={self.alpha.value:.2f}, enrichment {'on' if self.enriched.value else 'off'}"
                     + ("  (R: ReID, F: face distance)" if len(scores) >= 4 else ""))
        self.notes.value = html.escape(self._notes(q)) if self._notes is not None else ""
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
