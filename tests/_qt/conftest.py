import numpy as np
import pytest

from napari_segflow.annotate.annotator import Annotator
from napari_segflow.inference.session import SessionSettings
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.training.online import FinetuneConfig


@pytest.fixture()
def clip(synthetic_clip):
    """(frames (5, 96, 128, 3) uint8, instance ids (5, 96, 128) uint8)."""
    return (synthetic_clip.frames * 255).astype(np.uint8), synthetic_clip.instances.astype(np.uint8)


@pytest.fixture()
def tiny_settings():
    return SessionSettings(
        long_side=128, finetune=FinetuneConfig(steps=8, time_budget=600.0, learning_rate=2e-3),
        correction_steps=8, correction_time_budget=None, device="cpu",
    )


@pytest.fixture()
def widget(make_napari_viewer, clip, tiny_config, tiny_settings):
    """The dock widget on a viewer holding the clip, driving a tiny network."""
    from napari_segflow._qt.widget import SegFlowWidget

    from napari.utils._proxies import PublicOnlyProxy

    viewer = make_napari_viewer()
    viewer.add_image(clip[0], name="clip", rgb=True)
    # as napari makes a plugin's widget: handed a proxy of the viewer, whose add_* and [] give proxies of layers
    proxy = PublicOnlyProxy(viewer)
    annotator = Annotator(proxy, weights=SegFlowNet(tiny_config), settings=tiny_settings)
    widget = SegFlowWidget(proxy, annotator)
    viewer.window.add_dock_widget(widget)
    yield widget
    if widget.worker is not None:
        widget.cancel()
    widget.annotator.close_session()
