import torch

from napari_segflow.data.warped_pairs import WarpRanges, make_warped_pair
from napari_segflow.model.pwc import ConvexUpsampler
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.training.objectives import FlowObjective, train_only


def test_convex_upsampling_keeps_a_constant_flow():
    upsampler = ConvexUpsampler(6, 4)
    flow = torch.tensor([3.0, -2.0]).view(1, 2, 1, 1).expand(1, 2, 5, 7).contiguous()
    out = upsampler(flow, torch.randn(1, 6, 5, 7))
    assert out.shape == (1, 2, 20, 28)
    torch.testing.assert_close(out, torch.tensor([3.0, -2.0]).view(1, 2, 1, 1).expand_as(out))


def test_the_branch_overfits_one_pair_below_a_third_of_a_pixel(tiny_config):
    """Before any long run: the cost-volume branch can represent and learn a real pair's exact flow."""
    from skimage import data

    image = torch.from_numpy(data.astronaut()[::4, ::4][:128, :128].copy()).permute(2, 0, 1).float() / 255
    pair = make_warped_pair(image, [], torch.Generator().manual_seed(1),
                            WarpRanges(max_motion=6, max_shapes=0, photometric=0))
    net = SegFlowNet(tiny_config)
    objective = FlowObjective(net)
    optimiser = torch.optim.Adam(train_only(net, "flow"), lr=2e-3)
    for _ in range(250):
        loss, metrics = objective(pair.first, pair.second, pair.flow, pair.valid)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if metrics["epe"] < 0.25:
            break
    with torch.no_grad():
        flow = net.estimate_flow(pair.first, pair.second).flow
    error = (flow - pair.flow).norm(dim=1, keepdim=True)[pair.valid].mean()
    assert error < 0.3
