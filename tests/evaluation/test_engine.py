import numpy as np

from napari_segflow.evaluation.engine import benchmark_long_video
from napari_segflow.inference.session import SessionSettings
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.training.online import FinetuneConfig


def test_a_long_video_shorter_than_the_peers_frames_is_timed_whole(tiny_config):
    random = np.random.default_rng(0)
    base = (random.uniform(0, 255, (4, 24, 32, 3))).astype(np.uint8)
    mask = np.zeros((24, 32), np.uint8)
    mask[8:16, 10:20] = 1
    settings = SessionSettings(long_side=64, finetune=FinetuneConfig(steps=1, time_budget=None), device="cpu")
    report = benchmark_long_video(base, mask, SegFlowNet(tiny_config), settings, count=6, size=(48, 64),
                                  peer_frames=200)
    assert report.frames == 6 and report.size == (48, 64)
    assert report.frames_per_second > 0 and report.dis_frames_per_second > 0
    assert report.dis_working_frames_per_second > 0 and report.flow_bytes_per_frame > 0


def test_a_two_way_long_video_counts_each_frame_once(tiny_config, monkeypatch):
    import napari_segflow.evaluation.engine as engine

    class Clock:  # each reading one second after the last, so the propagation takes one second
        now = 0.0

        def perf_counter(self):
            self.now += 1.0
            return self.now

    monkeypatch.setattr(engine, "time", Clock())
    random = np.random.default_rng(1)
    base = (random.uniform(0, 255, (4, 24, 32, 3))).astype(np.uint8)
    mask = np.zeros((24, 32), np.uint8)
    mask[8:16, 10:20] = 1
    settings = SessionSettings(long_side=64, finetune=FinetuneConfig(steps=1, time_budget=None), device="cpu",
                               bidirectional=True)
    counted = []
    report = benchmark_long_video(base, mask, SegFlowNet(tiny_config), settings, count=5, size=(48, 64),
                                  peer_frames=5, progress=lambda done, total: counted.append((done, total)))
    # the progress follows both sweeps' results; the frame rate counts each frame once, when it is final
    assert counted == [(done, 10) for done in range(1, 11)]
    assert report.frames == 5 and report.frames_per_second == 5.0
