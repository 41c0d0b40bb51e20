import numpy as np
import pytest

pytest.importorskip("cv2")

from napari_segflow.data.resolution import WorkingResolution  # noqa: E402
from napari_segflow.evaluation.metrics import region_similarity  # noqa: E402
from napari_segflow.inference.frame_result import FrameResult  # noqa: E402
from napari_segflow.inference.mask_carry import DECAY, REACH, UserMaskCarrier  # noqa: E402
from napari_segflow.objects import ObjectChannels  # noqa: E402

HEIGHT, WIDTH, SIDE, SPEED = 96, 128, 24, 2


def _sliding_square(count: int, seed: int = 0):
    """A textured square sliding SPEED px a frame to the right over a still textured background, with its masks
    (object id 2)."""
    rng = np.random.default_rng(seed)
    background = (rng.random((HEIGHT // 4, WIDTH // 4, 3)) * 255).astype(np.uint8).repeat(4, 0).repeat(4, 1)
    texture = (rng.random((SIDE // 2, SIDE // 2, 3)) * 255).astype(np.uint8).repeat(2, 0).repeat(2, 1)
    frames = np.repeat(background[None], count, 0)
    masks = np.zeros((count, HEIGHT, WIDTH), np.uint8)
    for t in range(count):
        x = 20 + SPEED * t
        frames[t, 36:36 + SIDE, x:x + SIDE] = texture
        masks[t, 36:36 + SIDE, x:x + SIDE] = 2
    return frames, masks


def _result(index: int, object_share: float) -> FrameResult:
    """The network's answer for a frame: the object's share ``object_share`` everywhere."""
    share = np.full((HEIGHT, WIDTH), object_share, np.float32)
    labels = np.where(share > 0.5, 2, 0).astype(np.uint8)
    return FrameResult(index, labels, np.stack([1 - share, share]).astype(np.float16), np.zeros((2, 2, 2), np.float32))


def _carrier(frames, annotations):
    return UserMaskCarrier(frames, annotations, ObjectChannels.from_annotations(annotations),
                           WorkingResolution(HEIGHT, WIDTH, 128))


def test_a_user_mask_is_carried_onto_the_frames_near_it_and_fades_with_distance():
    frames, masks = _sliding_square(REACH + 3)
    carrier = _carrier(frames, {0: masks[0]})
    # the network says "no object" everywhere: near the user frame the carried mask outweighs it
    for index in (1, 2):
        assert region_similarity(carrier.blend(_result(index, 0.0)).labels == 2, masks[index] == 2) > 0.85
    blended = carrier.blend(_result(3, 0.0))
    assert set(np.unique(blended.labels)) == {0, 2}
    assert np.allclose(blended.probabilities.astype(np.float32).sum(0), 1, atol=1e-2)
    # where the carry holds, its weight is DECAY per frame: 0.8^3 of the object's share inside the square
    inside = blended.probabilities[1][masks[3] == 2].astype(np.float32)
    assert np.median(inside) == pytest.approx(DECAY**3, abs=0.05)
    # four frames on, the carry's weight (0.8^4 = 0.41) no longer outvotes a sure network
    assert (carrier.blend(_result(4, 0.0)).labels == 0).all()
    # beyond the reach, and on the user frame itself, the network's answer stands
    far = _result(REACH + 1, 0.3)
    assert carrier.blend(far) is far
    own = _result(0, 0.3)
    assert carrier.blend(own) is own


def test_the_nearest_user_frame_carries_and_backwards_too():
    frames, masks = _sliding_square(12)
    carrier = _carrier(frames, {0: masks[0], 10: masks[10]})
    assert carrier.nearest_user_frame(3) == 0
    assert carrier.nearest_user_frame(8) == 10
    assert carrier.nearest_user_frame(5) == 0  # alike: the earlier
    blended = carrier.blend(_result(9, 0.0))  # carried one frame back from frame 10
    assert region_similarity(blended.labels == 2, masks[9] == 2) > 0.85


def test_where_the_flow_fails_its_check_the_network_s_answer_stands():
    frames, masks = _sliding_square(4)
    rng = np.random.default_rng(5)
    # frame 1 is new noise: no flow from it returns, so nothing of frame 0's mask is trusted there
    frames[1] = (rng.random((HEIGHT, WIDTH, 3)) * 255).astype(np.uint8)
    carrier = _carrier(frames, {0: masks[0]})
    objects, passed = carrier.carried(0, 1)
    assert passed.mean() < 0.2
    blended = carrier.blend(_result(1, 0.3))
    changed = np.abs(blended.probabilities.astype(np.float32) - _result(1, 0.3).probabilities.astype(np.float32))
    assert changed.max(0).mean() < 0.1
