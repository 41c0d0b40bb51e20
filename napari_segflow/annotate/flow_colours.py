"""The session's flow as a lazy colour video for an Image layer."""

from __future__ import annotations

import numpy as np

from napari_segflow.data.flowviz import flow_to_rgb
from napari_segflow.data.io import VideoFrames


class FlowColours(VideoFrames):
    """(T, H, W, 3) uint8: each frame's flow from the session folder in Middlebury colours (black where
    there is none yet), read when the viewer asks for the frame, so a long video costs no memory."""

    def __init__(self, session) -> None:
        self.session = session
        count, height, width = session.frames.shape[:3]
        super().__init__("segflow flow", count, height, width)

    def _read(self, index: int) -> np.ndarray:
        flow = self.session.flow(index)
        if flow is None:
            return np.zeros(self.shape[1:], np.uint8)
        return flow_to_rgb(flow)
