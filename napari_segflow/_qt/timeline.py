"""The attention timeline: one bar per frame, as tall as the frame's attention score (relative to the highest);
a click picks a frame."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QRectF, Qt, Signal
from qtpy.QtGui import QColor, QPainter
from qtpy.QtWidgets import QSizePolicy, QWidget

BAR_COLOUR = QColor(230, 140, 40)
CURRENT_COLOUR = QColor(90, 170, 255)
EMPTY_COLOUR = QColor(70, 70, 70)


def bars(count: int, scores: dict[int, float], columns: int) -> list[tuple[int, int, float | None]]:
    """(first frame, frame after the last, score) of each bar: one a frame, or, where the frames outnumber the
    ``columns`` (pixels), one a column, as tall as the highest score among its frames (None: no frame scored),
    so that drawing a long video costs its width, not its length."""
    values = np.full(count, np.nan)
    if scores:
        values[np.fromiter(scores, int, len(scores))] = np.fromiter(scores.values(), float, len(scores))
    edges = np.arange(count + 1) if count <= columns else np.unique(np.linspace(0, count, columns + 1).astype(int))
    highest = np.fmax.reduceat(values, edges[:-1]) if count else values
    return [(int(a), int(b), None if np.isnan(h) else float(h)) for a, b, h in zip(edges[:-1], edges[1:], highest)]


class AttentionTimeline(QWidget):
    """Scores (0 or more) per frame over a video of ``count`` frames; frames without a score draw as a thin grey
    line. ``frame_clicked`` carries the frame under a click."""

    frame_clicked = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.count = 0
        self.scores: dict[int, float] = {}
        self.current = 0
        self.setMinimumHeight(48)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setToolTip("How much each frame deserves a look (higher: the network is unsure of the object, "
                        "far from your frames). Click to go to a frame.")

    def set_scores(self, count: int, scores: dict[int, float]) -> None:
        self.count, self.scores = count, dict(scores)
        self.update()

    def set_current(self, frame: int) -> None:
        self.current = frame
        self.update()

    def frame_at(self, x: float) -> int:
        """The frame under horizontal position ``x`` (widget pixels)."""
        if self.count == 0:
            return 0
        return min(self.count - 1, max(0, int(x / max(self.width(), 1) * self.count)))

    def x_of(self, frame: int) -> float:
        """The horizontal centre of ``frame``'s bar."""
        return (frame + 0.5) * self.width() / max(self.count, 1)

    def mousePressEvent(self, event) -> None:
        if self.count and event.button() == Qt.LeftButton:
            self.frame_clicked.emit(self.frame_at(event.pos().x()))

    def paintEvent(self, event) -> None:
        if self.count == 0:
            return
        painter = QPainter(self)
        width, height = self.width(), self.height()
        step = width / self.count
        # bars relative to the highest score (at least 0.05, so that a calm video stays calm): what matters is
        # which frames stand out
        scale = max([0.05, *self.scores.values()])
        gap = 1 if step >= 2 else 0
        for first, after, score in bars(self.count, self.scores, max(width, 1)):
            left, span = first * step, max((after - first) * step - gap, 1)
            if score is None:
                painter.fillRect(QRectF(left, height - 1, span, 1), EMPTY_COLOUR)
            else:
                top = height * (1 - min(max(score / scale, 0.0), 1.0))
                painter.fillRect(QRectF(left, top, span, max(height - top, 1)), BAR_COLOUR)
        painter.fillRect(QRectF(self.current * step, 0, max(step, 2), 3), CURRENT_COLOUR)
        painter.end()
