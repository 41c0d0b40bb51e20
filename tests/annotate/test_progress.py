import numpy as np

from napari_segflow.annotate.progress import FINETUNE, PROPAGATE, Meter, clock_text
from napari_segflow.inference.frame_result import FrameResult
from napari_segflow.training.online import FinetuneStep


def test_fine_tune_steps_give_rate_and_an_eta_capped_by_the_time_budget():
    meter = Meter(frames=0, time_budget=30.0)
    update = meter.update(FinetuneStep(step=10, total=150, loss=0.5, elapsed=5.0, metrics={}))
    assert update.phase == FINETUNE and update.rate == 2.0
    assert update.eta == 25.0  # 140 steps at 2/s would be 70 s, but the budget ends in 25
    assert update.text == "fine-tune 10/150 steps · 2.0 steps/s · ETA 0:25 · loss 0.500"


def test_frames_give_frames_per_second_from_the_second_frame_on():
    now = [100.0]
    meter = Meter(frames=5, time_budget=None, clock=lambda: now[0])
    result = FrameResult(0, np.zeros((2, 2), np.uint8), np.zeros((2, 2, 2), np.float16), np.zeros((2, 2, 2)))
    first = meter.update(result)
    assert first.phase == PROPAGATE and first.rate == 0.0 and first.eta is None
    now[0] += 0.5
    second = meter.update(result)
    assert second.done == 2 and second.rate == 2.0 and second.eta == 1.5
    assert second.text == "propagate 2/5 frames · 2.0 frames/s · ETA 0:02"
    for _ in range(4):
        last = meter.update(result)
    assert last.done == last.total == 6  # more frames than planned: the total follows


def test_clock_text():
    assert clock_text(5) == "0:05" and clock_text(75.4) == "1:15" and clock_text(3725) == "1:02:05"
