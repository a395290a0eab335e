"""Tables for people: what the notebooks display.

A :class:`ShownTable` renders as a styled HTML table in Jupyter and Colab (metrics in %,
the rows that correspond to the paper's number highlighted, a caption) and as plain text
everywhere else; the plain text is also what the tests compare (``text/plain``), so a
displayed table is checked like a printed one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["ShownTable", "METRIC_COLUMNS", "HIGHLIGHT"]

#: Columns holding fractions, shown in %.
METRIC_COLUMNS = ("top1", "top5", "top10", "top20", "mAP", "image_accuracy")
#: Background of highlighted rows (readable in light and dark themes).
HIGHLIGHT = "background-color: rgba(255, 200, 0, 0.25); font-weight: bold"


@dataclass(eq=False)
class ShownTable:
    """``frame`` with metric columns as fractions; ``highlight``: rows to mark (bool per row)."""

    frame: pd.DataFrame
    caption: str = ""
    highlight: Sequence[bool] | None = None
    decimals: int = 1
    percent: Sequence[str] = field(default=METRIC_COLUMNS)

    def _percent(self) -> pd.DataFrame:
        out = self.frame.reset_index(drop=True)
        for col in self.percent:
            if col in out:
                out[col] = (100 * out[col].astype(float)).round(self.decimals)
        return out

    def __repr__(self) -> str:
        text = self._percent().to_string(index=False)
        if self.highlight is not None and np.any(self.highlight):
            marks = ["*" if h else " " for h in self.highlight]
            lines = text.split("\n")
            text = "\n".join([" " + lines[0]] + [m + line for m, line in zip(marks, lines[1:])])
        return f"{self.caption}\n{text}" if self.caption else text

    def _repr_html_(self) -> str:
        shown = self._percent()
        metrics = [c for c in self.percent if c in shown]
        styler = shown.style.hide(axis="index").format({c: f"{{:.{self.decimals}f}}%" for c in metrics},
                                                       na_rep="n/a")
        if self.highlight is not None:
            mask = np.asarray(self.highlight, bool)
            styler = styler.apply(lambda row: [HIGHLIGHT if mask[row.name] else "" for _ in row], axis=1)
        if self.caption:
            styler = styler.set_caption(self.caption)
        return styler.to_html()
