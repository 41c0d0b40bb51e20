import pytest
import torch
import torch.nn.functional as F

from napari_segflow.data.resolution import WorkingResolution
from napari_segflow.inference.refine import GuidedFilter, box_mean, edge_filter, edge_radius, refine_probabilities


def test_box_mean_matches_average_pooling_with_clipped_borders():
    x = torch.rand(3, 37, 51)
    expected = F.avg_pool2d(x[None], 9, stride=1, padding=4, count_include_pad=False)[0]
    torch.testing.assert_close(box_mean(x, 4), expected, atol=1e-5, rtol=1e-5)


# radius over subsample as in use: 11 / 2 on DAVIS-sized frames, 23 / 4 at 854x480
@pytest.mark.parametrize(("radius", "subsample"), [(11, 2), (23, 4)])
def test_refinement_snaps_a_blurred_boundary_to_the_frame_edge(radius, subsample):
    height, width, edge = 64, 96, 53
    frame = torch.zeros(height, width, 3, dtype=torch.uint8)
    frame[:, edge:] = torch.tensor([200, 180, 60], dtype=torch.uint8)
    truth = torch.zeros(height, width, dtype=torch.bool)
    truth[:, edge:] = True
    columns = torch.arange(width, dtype=torch.float32)
    # a coarse prediction: the right boundary, blurred over ~8 px and 3.5 px off
    foreground = torch.sigmoid((columns - edge + 3.5) / 3).expand(height, width)
    probabilities = torch.stack([1 - foreground, foreground])
    refined = refine_probabilities(probabilities, frame, GuidedFilter(radius, subsample=subsample))
    torch.testing.assert_close(refined.sum(0), torch.ones(height, width))
    before = ((probabilities[1] > 0.5) != truth).sum()
    after = ((refined[1] > 0.5) != truth).sum()
    assert before >= 3 * height and after < before / 3
    # the refined probabilities jump at the frame's edge, where the coarse ones hardly change
    assert refined[1][:, edge].mean() - refined[1][:, edge - 1].mean() > 0.5
    assert probabilities[1][:, edge].mean() - probabilities[1][:, edge - 1].mean() < 0.2


def test_the_radius_is_twelve_working_pixels_in_frame_pixels():
    assert edge_radius(WorkingResolution(480, 854, 448)) == 23
    assert edge_radius(WorkingResolution(240, 427, 448)) == 11


def test_a_right_mask_of_a_small_object_on_a_busy_frame_stays_right():
    generator = torch.Generator().manual_seed(0)
    frame = (torch.rand(240, 427, 3, generator=generator) * 160).to(torch.uint8)
    truth = torch.zeros(240, 427, dtype=torch.bool)
    truth[100:148, 190:234] = True  # 2% of the frame; its colours overlap the background's
    frame[truth] = (torch.rand(int(truth.sum()), 3, generator=generator) * 160 + 60).to(torch.uint8)
    probabilities = torch.stack([(~truth).float(), truth.float()])
    refined = refine_probabilities(probabilities, frame, edge_filter(WorkingResolution(240, 427, 448)))[1] > 0.5
    # in use: 0.90; a window twice as wide (the radius before) fits the object's colours with the background's
    # and eroded it to 0.79
    assert (refined & truth).sum() / (refined | truth).sum() > 0.85


def test_the_coefficients_are_fitted_at_half_the_working_resolution():
    assert edge_filter(WorkingResolution(480, 854, 448)).subsample == 4
    assert edge_filter(WorkingResolution(240, 427, 448)).subsample == 2
    assert edge_filter(WorkingResolution(120, 200, 448)).subsample == 1
