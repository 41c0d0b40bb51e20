import errno

import numpy as np
import pytest

from napari_segflow.errors import SegFlowError
from napari_segflow.inference.carried_results import CarriedResults
from napari_segflow.inference.frame_result import FrameResult


def _result(index, final=True):
    rng = np.random.default_rng(index)
    return FrameResult(index, rng.integers(0, 3, (6, 8)).astype(np.uint8),
                       rng.random((3, 6, 8)).astype(np.float16), rng.normal(size=(3, 4, 2)).astype(np.float32),
                       final=final, attention=0.25 * index)


def test_results_come_back_exactly_and_their_files_go(tmp_path):
    with CarriedResults(tmp_path) as carried:
        for index in (3, 7):
            carried.put(_result(index, final=index == 3))
        assert len(carried) == 2 and len(list(tmp_path.rglob("*.npz"))) == 2
        back = carried.pop(7)
        expected = _result(7, final=False)
        for name in ("labels", "probabilities", "working_flow"):
            np.testing.assert_array_equal(getattr(back, name), getattr(expected, name))
            assert getattr(back, name).dtype == getattr(expected, name).dtype
        assert (back.index, back.final, back.attention) == (7, False, 1.75)
        assert len(carried) == 1 and len(list(tmp_path.rglob("*.npz"))) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_a_clear_error_that_leaves_no_half_written_file(tmp_path, monkeypatch):
    def full_disk(file, **arrays):
        file.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with CarriedResults(tmp_path) as carried:
        carried.put(_result(1))
        monkeypatch.setattr(np, "savez", full_disk)
        with pytest.raises(SegFlowError, match="frame 2 could not be kept.*the disk is full"):
            carried.put(_result(2))
        assert len(carried) == 1 and [p.name for p in tmp_path.rglob("*.npz")] == ["000001.npz"]
