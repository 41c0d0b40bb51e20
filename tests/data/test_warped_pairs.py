import torch

from napari_segflow.data.warped_pairs import WarpRanges, make_warped_pair
from napari_segflow.model.warp import backward_warp


def _image(seed=0):
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, 24, 32, generator=generator)
    return torch.nn.functional.interpolate(noise, size=(96, 128), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def test_background_flow_is_exact():
    """The second frame sampled along the flow gives back the first frame wherever the flow is valid."""
    pair = make_warped_pair(_image(), [], torch.Generator().manual_seed(2),
                            WarpRanges(max_motion=12, max_shapes=0, photometric=0))
    assert pair.first.shape == (1, 3, 96, 128) and pair.flow.shape == (1, 2, 96, 128)
    assert pair.flow.norm(dim=1).max() > 1  # it moved
    warped, _ = backward_warp(pair.second, pair.flow)
    difference = (warped - pair.first).abs().mean(1, keepdim=True)[pair.valid]
    assert difference.mean() < 0.005


def test_pasted_shapes_move_on_their_own_and_their_flow_is_exact():
    ranges = WarpRanges(max_motion=10, max_shapes=3, photometric=0)
    generator = torch.Generator().manual_seed(5)
    pair = make_warped_pair(_image(1), [_image(3)], generator, ranges)
    warped, _ = backward_warp(pair.second, pair.flow)
    difference = (warped - pair.first).abs().mean(1)
    # exact where nothing covers the destination; shapes occlude some background, so look at the median
    assert difference[pair.valid[:, 0]].median() < 0.005
    # the flow field is not one smooth field any more: the shapes' own motion makes jumps
    jumps = (pair.flow[..., 1:] - pair.flow[..., :-1]).norm(dim=1)
    assert jumps.max() > 1.0


def test_same_generator_state_gives_the_same_pair():
    a = make_warped_pair(_image(), [_image(2)], torch.Generator().manual_seed(9), WarpRanges())
    b = make_warped_pair(_image(), [_image(2)], torch.Generator().manual_seed(9), WarpRanges())
    assert torch.equal(a.first, b.first) and torch.equal(a.flow, b.flow)
