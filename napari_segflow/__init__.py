"""napari-segflow: annotate objects in video with a SegFlow network.

Importing this package imports neither torch nor Qt; the heavy parts load when used.
"""

from napari_segflow.errors import SegFlowError

__version__ = "0.1.0"

__all__ = ["SegFlowError", "__version__"]
