import copy

import torch

from napari_segflow.device import place_model
from napari_segflow.model.segflow import SegFlowNet


def test_placing_a_network_changes_its_memory_layout_not_its_output(tiny_config):
    torch.manual_seed(0)
    net = SegFlowNet(tiny_config).eval()
    placed = place_model(copy.deepcopy(net), torch.device("cpu"))
    convolution = next(m for m in placed.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert convolution.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.rand(2, 3, 128, 192)
    with torch.no_grad():
        expected = net.step(images[:1], images[1:])
        got = placed.step(images[:1], images[1:])
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=1e-4)
    # the flow is in pixels (tens of them) and passes through soft-argmaxes over cost volumes, whose sums the two
    # layouts order differently: a thousandth of a pixel is rounding (1.1e-4 seen on one machine), a layout bug is not
    torch.testing.assert_close(got.flow.flow, expected.flow.flow, atol=1e-3, rtol=1e-4)
