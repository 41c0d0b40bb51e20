import numpy as np

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
