import numpy as np

from napari_segflow.evaluation.first_masks import benchmark_first_masks, first_mask_table, simulated_stroke
from napari_segflow.inference.session import SessionSettings
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.training.davis import find_sequences
from napari_segflow.training.online import FinetuneConfig


def test_the_simulated_stroke_runs_along_the_largest_wrong_region_with_the_right_kind():
    truth = np.zeros((40, 40), bool)
    truth[5:35, 5:20] = True
    prediction = truth.copy()
    prediction[5:35, 5:12] = False  # a large miss
    prediction[30:33, 30:33] = True  # a small spill
    on_object, on_background = simulated_stroke(prediction, truth)
    assert on_object.any() and not on_background.any()
    assert on_object[:, 5:12].sum() == on_object.sum() and on_object.sum() >= 20  # a scribble, not a dot
    nothing = simulated_stroke(truth, truth)
    assert not nothing[0].any() and not nothing[1].any()


def test_first_masks_are_scored_per_stroke_and_runs_start_from_them(davis_folder, tiny_config):
    sequences = find_sequences(davis_folder, names=["alpha", "beta"])
    net = SegFlowNet(tiny_config)
    settings = SessionSettings(long_side=128, finetune=FinetuneConfig(steps=2, time_budget=None), device="cpu")
    results = benchmark_first_masks(sequences, net, net, settings, strokes=2)
    assert [r.case for r in results] == ["alpha", "beta"]
    for result in results:
        assert len(result.iou) == 3 and all(0 <= v <= 1 for v in result.iou)
        assert len(result.grabcut_iou) == 3 and all(0 <= v <= 1 for v in result.grabcut_iou)
        assert 0 < result.filled_box_iou <= 1 and result.seconds > 0
        assert 0 <= result.run_j <= 1 and 0 <= result.run_f <= 1
        # strokes on the wrong regions never leave the mask worse than the box alone by much
        assert result.iou[-1] >= result.iou[0] - 0.05
    table = first_mask_table(results)
    assert "| alpha |" in table and "| mean |" in table and "box + 2 strokes" in table
    assert "GrabCut (OpenCV): box" in table and "SegFlow box tool / GrabCut: IoU" in table
