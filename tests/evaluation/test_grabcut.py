import numpy as np

from napari_segflow.evaluation.first_masks import grabcut_ious
from napari_segflow.evaluation.grabcut import grabcut_mask
from napari_segflow.evaluation.metrics import region_similarity
from napari_segflow.inference.first_mask import Box


def _disc_and_patch():
    """A red disc beside a grey patch unlike the background, both inside one box; the disc is the object."""
    random = np.random.default_rng(1)
    frame = (random.uniform(0.35, 0.55, (80, 120, 3)) * 255).astype(np.uint8)
    ys, xs = np.mgrid[:80, :120]
    disc = (ys - 40) ** 2 + (xs - 45) ** 2 <= 15**2
    frame[disc] = (200, 40, 30)
    frame[30:50, 75:95] = (240, 240, 240)
    return frame, disc


def test_grabcut_from_a_box_is_the_same_every_call_and_strokes_remove_what_spilled():
    frame, disc = _disc_and_patch()
    box = Box(28, 22, 100, 58)
    first = grabcut_mask(frame, box)
    assert (first == grabcut_mask(frame, box)).all()
    assert not first[:, :27].any() and not first[:, 101:].any()
    spilled = first[30:50, 75:95].mean()
    background = np.zeros_like(disc)
    background[40, 78:92] = True
    corrected = grabcut_mask(frame, box, np.zeros_like(disc), background, previous=first)
    assert spilled > 0.5 and corrected[30:50, 75:95].mean() < 0.1  # measured: the patch whole, then none of it
    assert region_similarity(corrected, disc) > 0.9


def test_the_peers_strokes_land_where_its_own_mask_is_wrong():
    frame, disc = _disc_and_patch()
    truth = disc.copy()
    truth[:, 45:] = False  # the object is the disc's left half: its colours are outside the box too
    ious = grabcut_ious(frame, truth, strokes=2)
    assert len(ious) == 3
    assert ious[0] < 0.5 and ious[1] > 0.9  # measured: 0.0 from the box, 1.0 after the stroke on what it missed
