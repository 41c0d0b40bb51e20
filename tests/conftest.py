import numpy as np
import pytest
import torch

from napari_segflow.config import preset_config
from napari_segflow.data.synthetic import SyntheticConfig, SyntheticVideoGenerator


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_config():
    """A SegFlow small enough to train in a test, same design as the presets."""
    return preset_config("small", **TINY_OVERRIDES)


@pytest.fixture(scope="session")
def synthetic_generator():
    return SyntheticVideoGenerator(SyntheticConfig(height=96, width=128, num_frames=5))


@pytest.fixture(scope="session")
def synthetic_clip(synthetic_generator):
    return synthetic_generator(7)


def to_chw(array: np.ndarray) -> torch.Tensor:
    """(..., H, W, C) numpy -> (..., C, H, W) tensor."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.movedim(-1, -3)


TINY_OVERRIDES = dict(
    seg_stem_channels=8,
    seg_stage_channels=(8, 16, 16, 24),
    seg_stage_blocks=(1, 1, 1, 1),
    seg_head_channels=16,
    flow_encoder_channels=(8, 16, 24, 24, 32, 32),
    flow_decoder_channels=(24, 16, 16, 8),
    pwc_pyramid_channels=(8, 8, 12, 16, 16),
    pwc_estimator_channels=(16, 12, 8),
    bridge_channels=8,
    memory_channels=8,
)


@pytest.fixture(scope="session")
def davis_folder(tmp_path_factory, synthetic_generator):
    """A DAVIS-style folder of three short synthetic sequences (<seq>/frames/*.jpg, <seq>/masks/*.png)."""
    from napari_segflow.data.synthetic import write_sequence_folder

    root = tmp_path_factory.mktemp("davis")
    for seed, name in ((1, "alpha"), (2, "beta"), (3, "val")):
        write_sequence_folder(synthetic_generator(seed), root / name)
    return root
