import numpy as np
import pytest

from napari_segflow.data.io import write_flo
from napari_segflow.errors import SegFlowError
from napari_segflow.evaluation.flow_bench import flow_report, read_flow_pairs, score_flow


@pytest.fixture()
def pairs_folder(tmp_path, synthetic_generator):
    from PIL import Image

    for index, seed in enumerate((21, 22)):
        clip = synthetic_generator(seed)
        frames = (clip.frames[:2] * 255).astype(np.uint8)
        Image.fromarray(frames[0]).save(tmp_path / f"{index:07d}-img0.png")
        Image.fromarray(frames[1]).save(tmp_path / f"{index:07d}-img1.png")
        write_flo(clip.flows[0], tmp_path / f"{index:07d}-gt.flo")
    return tmp_path


def test_ground_truth_through_the_evaluation_path_scores_zero(pairs_folder):
    cases = read_flow_pairs(pairs_folder)
    truths = {id(c.first): c.truth for c in cases}
    scores = score_flow(cases, {
        "truth": lambda a, b: truths[id(a)],
        "zero flow": lambda a, b: np.zeros(a.shape[:2] + (2,), np.float32),
        "half": lambda a, b: truths[id(a)] / 2,
    })
    by_name = {s.method: s for s in scores}
    assert by_name["truth"].epe == 0.0
    expected_zero = np.mean([np.linalg.norm(c.truth, axis=-1).mean() for c in cases])
    assert by_name["zero flow"].epe == pytest.approx(expected_zero, rel=1e-6)
    assert by_name["half"].epe == pytest.approx(expected_zero / 2, rel=1e-5)
    assert set(by_name["truth"].per_pair) == {"0000000", "0000001"}
    report = flow_report("test", scores)
    assert "| truth | 0.00 | 0.00 |" in report and "| half |" in report


def test_classical_peer_beats_zero_flow_at_a_working_size(pairs_folder):
    from napari_segflow.inference.pair_flow import peer_pair_flow

    cases = read_flow_pairs(pairs_folder)
    scores = {s.method: s.epe for s in score_flow(cases, {
        "dis": lambda a, b: peer_pair_flow(a, b, "dis", long_side=64),
        "zero": lambda a, b: peer_pair_flow(a, b, "zero"),
    })}
    assert scores["dis"] < scores["zero"]


def test_a_folder_without_pairs_or_with_a_missing_part_is_refused(pairs_folder, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(SegFlowError, match="no pairs"):
        read_flow_pairs(empty)
    (pairs_folder / "0000001-gt.flo").unlink()
    with pytest.raises(SegFlowError, match="pair '0000001' has no 0000001-gt.flo"):
        read_flow_pairs(pairs_folder)
