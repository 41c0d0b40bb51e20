import torch

from napari_segflow.data.photometric import PhotometricRanges, jitter_photometric


def _frames(seed: int = 0) -> torch.Tensor:
    return torch.rand((3, 3, 16, 24), generator=torch.Generator().manual_seed(seed))


def test_strength_zero_leaves_the_frames_and_the_random_stream_alone():
    frames, generator = _frames(), torch.Generator().manual_seed(5)
    state = generator.get_state()
    assert jitter_photometric(frames, generator, 0.0) is frames
    assert torch.equal(generator.get_state(), state)


def test_every_frame_of_a_window_is_relit_alike_within_range():
    still = _frames()[:1].expand(4, -1, -1, -1).clone()  # a window where nothing moves
    quiet = PhotometricRanges(flicker=0.0, noise_share=0.0)
    generator, moved = torch.Generator().manual_seed(1), []
    for _ in range(10):
        out = jitter_photometric(still, generator, 1.0, quiet)
        assert out.shape == still.shape and out.min() >= 0 and out.max() <= 1
        assert torch.allclose(out, out[:1].expand_as(out))  # one draw for the window: nothing moves still
        moved.append(float((out - still).abs().mean()))
    assert min(moved) > 0.005 and max(moved) > 0.05  # it does relight, some windows a lot


def test_flicker_and_noise_differ_frame_to_frame():
    still = _frames()[:1].expand(4, -1, -1, -1).clone()
    out = jitter_photometric(still, torch.Generator().manual_seed(2), 1.0, PhotometricRanges(noise_share=1.0))
    assert not torch.allclose(out[0], out[1])


def test_grey_windows_lose_their_colour():
    ranges = PhotometricRanges(grey_share=1.0, channel_gain=0.0, noise_share=0.0)
    out = jitter_photometric(_frames(), torch.Generator().manual_seed(3), 1.0, ranges)
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])
