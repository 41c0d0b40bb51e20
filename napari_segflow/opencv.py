"""OpenCV, an optional dependency (the ``bench`` extra): the classical peers (DIS, Farneback, GrabCut), the
refinement and polish of ``segflow flow``, the DIS teacher of offline training and the session's carry of the
user's masks (inference/mask_carry.py) read it. The napari plugin, the session and ``segflow propagate`` run
without it, the session then without that carry."""

from __future__ import annotations

from napari_segflow.errors import SegFlowError

INSTALL = ("pip install opencv-python-headless (or the package with its bench extra: "
           "pip install 'napari-segflow[bench]')")


def opencv(purpose: str):
    """The ``cv2`` module, or a SegFlowError saying that ``purpose`` needs it and how to install it."""
    try:
        import cv2
    except ImportError as error:
        raise SegFlowError(f"{purpose} needs OpenCV: {INSTALL}") from error
    return cv2


def has_opencv() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True
