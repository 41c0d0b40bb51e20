import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from napari_segflow.checkpoint import SHIPPED_WEIGHTS, load_checkpoint
from napari_segflow.errors import SegFlowError
from napari_segflow.evaluation.first_masks import bounding_box
from napari_segflow.evaluation.metrics import region_similarity
from napari_segflow.inference.first_mask import Box, _motion_log_odds, first_mask, neighbour_index
from napari_segflow.model.segflow import SegFlowNet


@pytest.fixture()
def scene():
    """A textured background with a red disc: (frame (80, 120, 3) uint8, the disc's mask)."""
    random = np.random.default_rng(0)
    frame = (random.uniform(0.3, 0.7, (80, 120, 3)) * 255).astype(np.uint8)
    ys, xs = np.mgrid[:80, :120]
    disc = (ys - 40) ** 2 + (xs - 55) ** 2 <= 18**2
    frame[disc] = (200, 40, 30) + random.integers(-20, 20, (disc.sum(), 3))
    return frame, disc


def test_a_box_around_an_object_gives_its_mask_not_the_box(scene):
    frame, disc = scene
    box = Box(35, 20, 76, 61)
    filled = np.zeros_like(disc)
    filled[20:61, 35:76] = True
    mask = first_mask(frame, box)
    assert region_similarity(mask, disc) > 0.9
    assert region_similarity(mask, disc) > region_similarity(filled, disc) + 0.1
    assert not mask[:, :30].any() and not mask[:, 80:].any()  # never outside the box


def test_the_network_view_runs_and_keeps_inside_the_box(scene, tiny_config):
    frame, disc = scene
    mask = first_mask(frame, Box(35, 20, 76, 61), net=SegFlowNet(tiny_config), long_side=128)
    assert mask.shape == disc.shape and not mask[:, :30].any()
    assert region_similarity(mask, disc) > 0.5  # an untrained network: colour and edges carry it


def test_motion_models_tell_a_moving_object_from_its_background_and_a_camera_pan_says_nothing():
    ys, xs = np.mgrid[:60, :80]
    thing = (ys - 30) ** 2 + (xs - 40) ** 2 <= 12**2
    rough = np.zeros(thing.shape)  # a first guess: the box around the thing, half sure
    rough[15:46, 25:56] = 0.5
    flow = np.zeros((60, 80, 2))
    flow[thing] = (3.0, -1.0)
    log_odds = _motion_log_odds(flow, rough, 1 - rough)
    assert (log_odds[thing] > 1).all()
    assert (log_odds[15:46, 25:56][~thing[15:46, 25:56]] < -1).all()  # the box's corners: still, like outside
    # the whole view moving alike (a zooming, panning camera): both models explain every pixel, no evidence
    pan = np.stack([0.05 * xs + 2.0, 0.05 * ys - 1.0], -1)
    assert np.abs(_motion_log_odds(pan, rough, 1 - rough)).max() < 1e-6


def test_the_next_frames_motion_finds_an_object_that_colour_cannot():
    """A cross cut from the background's own texture elsewhere, moving 5 px against a still background: colour and
    edges barely tell it apart, its motion does."""
    random = np.random.default_rng(0)
    texture = gaussian_filter(random.uniform(0, 1, (140, 200, 3)), (1.5, 1.5, 0))
    texture = (40 + 170 * (texture - texture.min()) / (texture.max() - texture.min())).astype(np.uint8)
    ys, xs = np.mgrid[:120, :160]

    def frame_and_cross(shift):
        cross = (((abs(ys - 60) <= 6) & (abs(xs - 70 - shift) <= 30))
                 | ((abs(xs - 70 - shift) <= 6) & (abs(ys - 60) <= 30)))
        frame = texture[:120, :160].copy()
        frame[cross] = texture[10:130, 30 - shift:190 - shift][cross]
        return frame, cross

    (frame, cross), (next_frame, _) = frame_and_cross(0), frame_and_cross(5)
    net, _ = load_checkpoint(SHIPPED_WEIGHTS)
    box = Box(40, 30, 101, 91)
    still = region_similarity(first_mask(frame, box, net=net), cross)
    moving = region_similarity(first_mask(frame, box, net=net, neighbour=next_frame), cross)
    assert moving > still + 0.08  # measured: 0.0 (nothing found) -> 0.667 (the filled box: 0.381)


def test_the_neighbour_is_the_next_frame_or_the_previous_at_the_end():
    assert [neighbour_index(t, 3) for t in range(3)] == [1, 2, 1]
    assert neighbour_index(0, 1) is None


def test_a_neighbour_of_another_size_is_a_clear_error(scene, tiny_config):
    frame, _ = scene
    with pytest.raises(SegFlowError, match="neighbouring frame is 60x80"):
        first_mask(frame, Box(35, 20, 76, 61), net=SegFlowNet(tiny_config), neighbour=frame[:80, :60])


def test_strokes_alone_find_the_object_and_a_background_stroke_cuts_a_spill(scene):
    frame, disc = scene
    foreground = np.zeros_like(disc)
    foreground[35:45, 50:60] = True
    background = np.zeros_like(disc)
    background[5, 5:115] = True
    background[75, 5:115] = True
    mask = first_mask(frame, foreground=foreground, background=background)
    assert region_similarity(mask, disc) > 0.8
    # a box that also holds a grey patch of the background: a background stroke there removes what spilled
    box = Box(35, 20, 110, 61)
    with_stroke = background.copy()
    with_stroke[40, 85:105] = True
    assert region_similarity(first_mask(frame, box, background=with_stroke), disc) >= \
        region_similarity(first_mask(frame, box), disc)


@pytest.mark.parametrize(
    "box, message",
    [(Box(10, 10, 10, 40), "no area"), (Box(130, 10, 150, 40), "outside"), (Box(-30, -30, -5, -5), "outside"),
     (Box(10, 10, 11, 40), "too small"), (Box(0, float("nan"), 5, 5), "numbers")],
)
def test_a_bad_box_is_a_clear_error(scene, box, message):
    with pytest.raises(SegFlowError, match=message):
        first_mask(scene[0], box)


def test_strokes_of_one_kind_without_a_box_are_refused(scene):
    frame, disc = scene
    with pytest.raises(SegFlowError, match="no background strokes"):
        first_mask(frame, foreground=disc)
    with pytest.raises(SegFlowError, match="no object strokes"):
        first_mask(frame, background=~disc)
    with pytest.raises(SegFlowError, match="cross"):
        first_mask(frame, Box(35, 20, 76, 61), foreground=disc, background=disc)
    with pytest.raises(SegFlowError, match="object strokes are"):
        first_mask(frame, foreground=disc[:10], background=~disc)
