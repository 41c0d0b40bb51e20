import pytest
import torch

from napari_segflow.config import ModelConfig, preset_config
from napari_segflow.errors import SegFlowError
from napari_segflow.model.prior import carry_prior, empty_prior, prior_from_labels
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.training.mask_priors import PriorDeformation, deformed_priors


def _square_labels(top=16, left=24, size=24, height=64, width=128):
    labels = torch.zeros(1, height, width, dtype=torch.long)
    labels[:, top : top + size, left : left + size] = 1
    return labels


def test_prior_from_labels_is_a_pooled_one_hot():
    prior = prior_from_labels(_square_labels(), 2)
    assert prior.shape == (1, 2, 16, 32)
    torch.testing.assert_close(prior.sum(1), torch.ones(1, 16, 32))
    assert prior[0, 1, 4:10, 6:12].min() == 1 and prior[0, 1].sum() == 36


def test_carry_prior_moves_the_mask_with_the_flow():
    prior = prior_from_labels(_square_labels(), 2)
    flow = torch.zeros(1, 2, 64, 128)
    flow[:, 0], flow[:, 1] = 8.0, -4.0  # 2 and -1 cells of the stride-4 grid
    carried = carry_prior(prior, flow)
    expected = prior_from_labels(_square_labels(top=12, left=32), 2)
    torch.testing.assert_close(carried[..., :-1, 2:], expected[..., :-1, 2:])
    # the bottom row and the two left columns came from outside the image: unknown, not background
    assert carried[0, :, -1].abs().max() < 1e-5 and carried[0, :, :, :2].abs().max() < 1e-5


def test_a_fresh_prior_changes_nothing_and_is_class_agnostic(tiny_config):
    net = SegFlowNet(tiny_config).eval()
    image, partner = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    prior = prior_from_labels(_square_labels(), 2)
    with torch.no_grad():
        without = net.step(image, partner).logits
        with_prior = net.step(image, partner, prior=prior).logits
    torch.testing.assert_close(without, with_prior)  # zero-initialised outputs: a warm start keeps its function

    torch.nn.init.normal_(net.mask_prior.correction[-1].weight)
    net.set_num_objects(2)
    appearance = net.encode_appearance(image)
    fine = net.score_heads.fuse4(appearance.s4)
    three = torch.rand(1, 3, 16, 32).softmax(1)
    swapped = three[:, [0, 2, 1]]
    with torch.no_grad():
        correction = net.mask_prior.score_correction(three, fine)
        correction_swapped = net.mask_prior.score_correction(swapped, fine)
    torch.testing.assert_close(correction[:, [0, 2, 1]], correction_swapped)


def test_empty_prior_and_config_checks():
    assert empty_prior(2, 3, (64, 128), torch.zeros(1)).shape == (2, 3, 16, 32)
    with pytest.raises(SegFlowError, match="fine_scores"):
        preset_config("small", fine_scores=False)
    values = preset_config("small").to_dict()
    del values["mask_prior"]  # a checkpoint saved before the prior existed
    assert ModelConfig.from_dict(values).mask_prior is False


def test_deformed_priors_stay_probabilities_and_err_like_a_carried_mask():
    masks = _square_labels().repeat(8, 1, 1).reshape(2, 4, 64, 128)
    exact = deformed_priors(masks, 2, torch.Generator().manual_seed(0),
                            PriorDeformation(shift=0, scale=0, rotation=0, warp=0, edge=0, blur_share=0, drop_share=0))
    torch.testing.assert_close(exact[0, 0], prior_from_labels(masks[0, :1], 2)[0])

    priors = deformed_priors(masks.repeat(16, 1, 1, 1), 2, torch.Generator().manual_seed(1))
    sums = priors.flatten(0, 1).sum(1).flatten(1)
    kept = sums.max(1).values > 0
    torch.testing.assert_close(sums[kept], torch.ones_like(sums[kept]))
    assert 0 < (~kept).float().mean() < 0.25  # about a tenth dropped (all zeros)
    target = prior_from_labels(masks[0, :1], 2)[0, 1]
    errors = (priors[:, :, 1].flatten(0, 1)[kept] - target).abs().sum((1, 2))
    assert errors.min() > 0 and errors.median() < target.sum()  # wrong, but a usable guess


def test_box_priors_fill_each_objects_box_loosened_by_its_slack():
    from napari_segflow.training.mask_priors import box_prior

    masks = torch.zeros(2, 64, 128, dtype=torch.long)
    masks[0, 20:30, 40:44] = 1  # cells rows 5..7, columns 10
    masks[0, 24:26, 60:70] = 1  # columns 15..17: the box spans both parts
    masks[0, 48:56, 100:120] = 2  # rows 12..13, columns 25..29
    no_slack = torch.zeros(2, 2, 4, dtype=torch.long)
    prior = box_prior(masks, 3, no_slack)
    torch.testing.assert_close(prior.sum(1), torch.ones(2, 16, 32))
    first = torch.zeros(16, 32)
    first[5:8, 10:18] = 1
    torch.testing.assert_close(prior[0, 1], first)
    second = torch.zeros(16, 32)
    second[12:14, 25:30] = 1
    torch.testing.assert_close(prior[0, 2], second)
    assert prior[1, 1:].sum() == 0  # no object, no box

    slack = no_slack.clone()
    slack[0, 0] = torch.tensor([1, 2, 3, 0])  # left, top, right, bottom
    loose = box_prior(masks, 3, slack)[0, 1]
    rows, columns = loose.nonzero().T
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (3, 7, 9, 20)


def test_a_share_of_priors_become_boxes_and_without_boxes_the_draws_are_unchanged():
    masks = _square_labels().repeat(64, 1, 1).reshape(16, 4, 64, 128)
    default = deformed_priors(masks, 2, torch.Generator().manual_seed(3))
    no_boxes = deformed_priors(masks, 2, torch.Generator().manual_seed(3), PriorDeformation(box_share=0.0))
    torch.testing.assert_close(default, no_boxes)  # the shipped stages' priors, draw for draw

    with_boxes = deformed_priors(masks, 2, torch.Generator().manual_seed(3), PriorDeformation(box_share=0.3))
    square = prior_from_labels(masks[0, :1], 2)[0, 1]  # the square's own box: cells 4..9, 6..11
    foreground = with_boxes[:, :, 1].flatten(0, 1)
    is_box = [bool(((f == 1) | (f == 0)).all() and (f[4:10, 6:12] == 1).all() and f.sum() <= 10 * 10)
              for f in foreground]
    assert 0.15 < sum(is_box) / len(is_box) < 0.45
    changed = (with_boxes != default).flatten(0, 1).flatten(1).any(1)
    assert changed.tolist() == is_box  # the rest are the priors drawn without boxes
    assert square.sum() == 36


def test_own_priors_start_from_the_annotation_and_then_follow_the_networks_answers(tiny_config):
    from napari_segflow.training.mask_priors import own_priors
    from napari_segflow.training.objectives import SegmentationObjective

    torch.manual_seed(0)
    net = SegFlowNet(tiny_config)
    frames = torch.rand(1, 3, 3, 64, 128)
    masks = torch.zeros(1, 3, 64, 128, dtype=torch.long)
    masks[:, :, 16:48, 24:64] = 1
    first = prior_from_labels(masks[:, 0], 2)
    priors = own_priors(net, frames, first, [1, 2, 1])
    assert priors.shape == (1, 3, 2, 16, 32) and not priors.requires_grad
    assert torch.equal(priors[:, 0], first)
    assert priors.min() >= 0 and priors.sum(2).max() <= 1 + 1e-5
    with torch.no_grad():  # another network answers otherwise, and its priors follow
        net.readout_head.classifier.bias += torch.tensor([-3.0, 3.0])
    changed = own_priors(net, frames, first, [1, 2, 1])
    assert torch.equal(changed[:, 0], first)
    assert (changed[:, 1:, 1] - priors[:, 1:, 1]).mean() > 0.1

    with torch.no_grad():  # a fresh prior changes nothing: give it a say
        for parameter in net.mask_prior.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    losses = {}
    for share in (0.0, 1.0):
        objective = SegmentationObjective(net, torch.Generator().manual_seed(3), own_prior_share=share)
        loss, _ = objective(frames, masks, bidirectional=False)
        assert torch.isfinite(loss)
        losses[share] = float(loss.detach())
    assert losses[0.0] != losses[1.0]
