import numpy as np
import torch

from napari_segflow.training.davis import find_sequences
from napari_segflow.training.windows import WindowSampler, collate, stop_and_go_indices


def test_stop_and_go_holds_first_or_last_frames():
    rng = np.random.default_rng(0)
    for _ in range(20):
        indices = stop_and_go_indices(6, rng)
        assert len(indices) == 6 and indices == sorted(indices)
        assert len(set(indices)) < 6
        assert indices[0] == indices[1] or indices[-1] == indices[-2]


def test_windows_have_training_size_and_consistent_flow(davis_folder):
    sampler = WindowSampler(find_sequences(davis_folder), (64, 128), 3, seed=0, stop_and_go=0.0)
    real = sampler.real()
    assert real.frames.shape == (3, 3, 64, 128) and real.masks.shape == (3, 64, 128) and real.flows is None
    assert set(np.unique(real.masks.numpy())) <= {0, 1}
    synthetic = sampler.synthetic_window()
    assert synthetic.flows.shape == (2, 2, 64, 128) and synthetic.masks.any()
    batch = collate([synthetic, sampler.synthetic_window()])
    assert batch.frames.shape == (2, 3, 3, 64, 128) and batch.flows.shape == (2, 2, 2, 64, 128)
    assert collate([real, synthetic]).flows is None


def test_a_distractor_drifts_in_front_of_the_target_and_is_background(davis_folder):
    sequences = find_sequences(davis_folder)
    sampler = WindowSampler(sequences, (64, 128), 3, seed=1, distractors=1.0)
    target, donor = sequences[0], sequences[1]
    frames = np.stack([target.frame(i) for i in range(3)])
    masks = np.stack([(target.mask(i) > 0).astype(np.uint8) for i in range(3)])
    pasted_somewhere = False
    for _ in range(5):
        new_frames, new_masks = sampler._with_distractor(frames, masks, donor)
        changed = (new_frames != frames).any(-1)
        assert not new_masks[changed].any()  # what the distractor covers is background
        assert (new_masks <= masks).all() and (new_masks[~changed] == masks[~changed]).all()
        pasted_somewhere |= bool(changed.any())
        # it moves: the covered pixels are not the same in every frame
        if changed[0].any() and changed[-1].any():
            assert (changed[0] != changed[-1]).any()
    assert pasted_somewhere
    assert (frames == np.stack([target.frame(i) for i in range(3)])).all()  # the input is left alone


def test_synthetic_windows_with_distractors_segment_one_object(davis_folder):
    sequences = find_sequences(davis_folder)
    fewer = 0
    for seed in range(6):
        # the same seed draws the same clip and augmentation; only the labels differ
        every_object = WindowSampler(sequences, (64, 128), 3, seed=seed, stop_and_go=0.0).synthetic_window()
        one_object = WindowSampler(sequences, (64, 128), 3, seed=seed, stop_and_go=0.0,
                                   distractors=1.0).synthetic_window()
        assert torch.equal(every_object.frames, one_object.frames)
        assert (one_object.masks <= every_object.masks).all() and one_object.masks.any()
        fewer += int(one_object.masks.sum() < every_object.masks.sum())
    assert fewer > 0
