"""The attention timeline: one bar per frame, as tall as the frame's attention score (relative to the highest);
a click picks a frame."""

from __future__ import annotations

from qtpy.QtCore import QRectF, Qt, Signal
from qtpy.QtGui import QColor, QPainter
from qtpy.QtWidgets import QSizePolicy, QWidget

BAR_COLOUR = QColor(230, 140, 40)
CURRENT_COLOUR = QColor(90, 170, 255)
EMPTY_COLOUR = QColor(70, 70, 70)


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
        for frame in range(self.count):
            score = self.scores.get(frame)
            left = frame * step
            if score is None:
                painter.fillRect(QRectF(left, height - 1, max(step - 1, 1), 1), EMPTY_COLOUR)
            else:
                top = height * (1 - min(max(score / scale, 0.0), 1.0))
                painter.fillRect(QRectF(left, top, max(step - 1, 1), max(height - top, 1)), BAR_COLOUR)
        painter.fillRect(QRectF(self.current * step, 0, max(step, 2), 3), CURRENT_COLOUR)
        painter.end()
