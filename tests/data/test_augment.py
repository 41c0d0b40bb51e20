import math

import pytest
import torch
from scipy import ndimage

from napari_segflow.data.augment import AffineParams, apply_affine, deformed_next_frame, random_affine
from napari_segflow.errors import SegFlowError
from napari_segflow.model.warp import backward_warp
from tests.conftest import to_chw


def _sequence(clip):
    frames = to_chw(clip.frames).contiguous()
    labels = torch.from_numpy(clip.instances).long()
    flows = to_chw(clip.flows).contiguous()
    return frames, labels, flows


def test_affine_keeps_frames_masks_and_flow_consistent(synthetic_clip):
    frames, labels, flows = _sequence(synthetic_clip)
    occlusions = torch.from_numpy(synthetic_clip.occlusions).long()
    params = AffineParams(angle=math.radians(12), scale=1.08, shift=(5.0, -3.0), flip=True)
    moved_frames, moved_labels, moved_flows = apply_affine(params, frames, labels, flows)
    _, moved_occlusions, _ = apply_affine(params, frames[:-1], occlusions)
    for t in range(len(moved_flows)):
        warped, inside = backward_warp(moved_frames[t + 1 : t + 2], moved_flows[t : t + 1])
        edges = ndimage.morphological_gradient(moved_labels[t].numpy(), size=5) > 0
        content = ndimage.binary_erosion(moved_frames[t].abs().sum(0).numpy() > 0, iterations=3)
        visible = (moved_occlusions[t].numpy() == 0) & ~edges & inside[0, 0].numpy() & content
        error = (warped[0] - moved_frames[t]).abs().mean(0).numpy()
        assert visible.mean() > 0.4
        assert error[visible].mean() < 0.01


def test_affine_moves_a_pixel_where_the_matrix_says():
    frames = torch.zeros(1, 1, 41, 61)
    frames[0, 0, 9:12, 19:22] = 1.0
    labels = (frames[:, 0] > 0).long()
    params = AffineParams(angle=0.3, scale=1.0, shift=(2.0, 1.0), flip=False)
    _, moved, _ = apply_affine(params, frames, labels)
    x, y, _ = (params.matrix(41, 61) @ torch.tensor([20.0, 10.0, 1.0], dtype=torch.float64)).tolist()
    ys, xs = torch.nonzero(moved[0], as_tuple=True)
    assert abs(xs.float().mean() - x) <= 1 and abs(ys.float().mean() - y) <= 1


def test_flip_mirrors_horizontal_flow():
    frames = torch.rand(2, 3, 16, 16)
    flows = torch.zeros(1, 2, 16, 16)
    flows[:, 0] = 2.0
    _, _, moved = apply_affine(AffineParams(flip=True), frames, None, flows)
    torch.testing.assert_close(moved[0, 0, 4:12, 4:12], torch.full((8, 8), -2.0))


def test_random_affine_is_seeded():
    a = random_affine(torch.Generator().manual_seed(3), 100, 100)
    b = random_affine(torch.Generator().manual_seed(3), 100, 100)
    assert a == b and a != random_affine(torch.Generator().manual_seed(4), 100, 100)


def test_deformed_next_frame_agrees_with_its_flow(synthetic_clip):
    image = to_chw(synthetic_clip.frames[0]).contiguous()
    labels = torch.from_numpy(synthetic_clip.instances[0]).long()
    pair = deformed_next_frame(image, labels, torch.Generator().manual_seed(0))
    warped, inside = backward_warp(pair.next_image[None], pair.flow[None])
    edges = ndimage.morphological_gradient(labels.numpy(), size=5) > 0
    visible = ~pair.occluded.numpy() & ~edges & inside[0, 0].numpy()
    on_objects = visible & (labels.numpy() > 0)
    error = (warped[0] - image).abs().mean(0).numpy()
    unwarped = (pair.next_image - image).abs().mean(0).numpy()
    assert on_objects.sum() > 100
    assert error[on_objects].mean() < 0.01
    assert unwarped[on_objects].mean() > 5 * error[on_objects].mean()
    # the flow is zero off the objects, and the objects really move
    assert pair.flow[:, labels == 0].abs().max() == 0
    assert pair.flow[:, labels > 0].norm(dim=0).mean() > 0.5


def test_deformed_next_frame_leaves_uncovered_area_black():
    image = torch.ones(3, 64, 64) * 0.5
    labels = torch.zeros(64, 64, dtype=torch.long)
    labels[20:40, 20:40] = 1
    pair = deformed_next_frame(image, labels, torch.Generator().manual_seed(1))
    uncovered = (labels > 0) & (pair.next_labels == 0)
    assert uncovered.any()
    assert pair.next_image[:, uncovered].abs().max() == 0
    assert (pair.next_image[:, pair.next_labels > 0] > 0.4).all()
    background = (labels == 0) & (pair.next_labels == 0)
    torch.testing.assert_close(pair.next_image[:, background], image[:, background])


def test_deformed_next_frame_needs_an_object():
    with pytest.raises(SegFlowError, match="no object"):
        deformed_next_frame(torch.rand(3, 8, 8), torch.zeros(8, 8, dtype=torch.long), torch.Generator())
    with pytest.raises(SegFlowError, match="does not match"):
        deformed_next_frame(torch.rand(3, 8, 8), torch.ones(9, 8, dtype=torch.long), torch.Generator())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_deformed_next_frame_on_the_gpu_matches_the_cpu(synthetic_clip):
    image = to_chw(synthetic_clip.frames[0]).contiguous()
    labels = torch.from_numpy(synthetic_clip.instances[0]).long()
    on_cpu = deformed_next_frame(image, labels, torch.Generator().manual_seed(0))
    on_gpu = deformed_next_frame(image.cuda(), labels.cuda(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(on_gpu.flow.cpu(), on_cpu.flow, atol=1e-3, rtol=0)
    assert (on_gpu.next_labels.cpu() != on_cpu.next_labels).float().mean() < 0.001
