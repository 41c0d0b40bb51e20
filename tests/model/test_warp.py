import torch
from scipy import ndimage

from napari_segflow.model.warp import backward_warp, forward_backward_occlusion
from tests.conftest import to_chw


def test_warping_next_frame_by_true_flow_reproduces_frame(synthetic_clip):
    for t in range(len(synthetic_clip.flows)):
        frame = to_chw(synthetic_clip.frames[t])[None]
        following = to_chw(synthetic_clip.frames[t + 1])[None]
        flow = to_chw(synthetic_clip.flows[t])[None]
        warped, inside = backward_warp(following, flow)
        # object edges are aliased (binary coverage), so leave 2 px around them out
        edges = ndimage.morphological_gradient(synthetic_clip.instances[t], size=5) > 0
        visible = ~synthetic_clip.occlusions[t] & ~edges & inside[0, 0].numpy()
        error = (warped - frame).abs().mean(1)[0].numpy()
        unwarped = (following - frame).abs().mean(1)[0].numpy()
        assert visible.mean() > 0.5
        assert error[visible].mean() < 0.01
        assert unwarped[visible].mean() > 5 * error[visible].mean()


def test_integer_shift_is_exact():
    image = torch.rand(1, 3, 10, 12)
    flow = torch.zeros(1, 2, 10, 12)
    flow[:, 0] = 2  # each pixel's match is 2 px to the right: frame t+1 holds image[x] at x + 2
    following = torch.zeros_like(image)
    following[..., 2:] = image[..., :-2]
    warped, inside = backward_warp(following, flow)
    torch.testing.assert_close(warped[..., :-2], image[..., :-2])
    assert inside[..., :-2].all() and not inside[..., -2:].any()


def test_forward_backward_check():
    forward = torch.zeros(1, 2, 16, 16)
    forward[:, 0] = 3.0
    backward = -forward.clone()
    occluded = forward_backward_occlusion(forward, backward)
    assert not occluded[..., :, :12].any()  # consistent and inside
    assert occluded[..., :, 13:].all()  # destination leaves the image
    assert forward_backward_occlusion(forward, forward).all()  # 3 px there and 3 more: nothing returns
    backward[..., 4:8, 4:8] = 5.0  # the backward flow disagrees here
    occluded = forward_backward_occlusion(forward, backward)
    assert occluded[0, 0, 5, 2] and not occluded[0, 0, 12, 2]
