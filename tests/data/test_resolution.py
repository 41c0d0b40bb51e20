import numpy as np
import pytest
import torch

from napari_segflow.data.resolution import WorkingResolution
from napari_segflow.errors import SegFlowError


def test_854x480_works_at_448x256():
    geometry = WorkingResolution(480, 854)
    assert geometry.scaled == (252, 448) and geometry.padded == (256, 448)
    frames = np.zeros((2, 480, 854, 3), np.uint8)
    frames[:, :, :, 0] = 255
    images = geometry.frames_to_network(frames)
    assert images.shape == (2, 3, 256, 448) and images[:, 0].min().item() == pytest.approx(1.0)
    labels = geometry.labels_to_network(np.ones((480, 854), np.uint8))
    assert labels.shape == (1, 256, 448) and labels[0, :252].all() and not labels[0, 252:].any()
    assert geometry.valid_region().sum() == 252 * 448


def test_outputs_return_to_frame_size_and_units():
    geometry = WorkingResolution(480, 854)
    flow = torch.ones(1, 2, 256, 448)  # one working pixel right and down
    back = geometry.flow_to_frame(flow)
    assert back.shape == (1, 2, 480, 854)
    assert back[0, 0].mean().item() == pytest.approx(854 / 448)
    assert back[0, 1].mean().item() == pytest.approx(480 / 252)
    assert geometry.logits_to_frame(torch.zeros(1, 3, 256, 448)).shape == (1, 3, 480, 854)


def test_wrong_frame_size_is_named():
    with pytest.raises(SegFlowError, match="expected"):
        WorkingResolution(480, 854).frames_to_network(np.zeros((10, 10, 3), np.uint8))
