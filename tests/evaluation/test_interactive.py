import numpy as np
import pytest

from napari_segflow.data.synthetic import SyntheticConfig, SyntheticVideoGenerator
from napari_segflow.evaluation.interactive import (
    area_under_rounds,
    choose_frame,
    interactive_table,
    plot_rounds,
    simulate_peer,
    simulate_session,
)
from napari_segflow.inference.session import SessionSettings
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.training.online import FinetuneConfig


@pytest.fixture(scope="module")
def clip():
    generated = SyntheticVideoGenerator(SyntheticConfig(height=64, width=96, num_frames=9))(11)
    frames = (generated.frames * 255 + 0.5).astype(np.uint8)
    return frames, (generated.instances == generated.target_id).astype(np.uint8)


def test_even_choice_halves_the_longest_stretch_without_a_user_frame():
    assert choose_frame("even", {0}, 10) == 5
    assert choose_frame("even", {0, 5}, 10) == 2
    assert choose_frame("even", {0, 2, 5}, 10) == 7


def test_attention_and_oracle_choose_among_frames_not_yet_annotated():
    attention = {0: 0.9, 1: 0.1, 2: 0.7, 3: 0.2}
    assert choose_frame("attention", {0}, 4, attention=attention) == 2
    # on a longer video the session's suggestion: the frame whose correction takes off the most doubt, not the
    # highest score (frame 1's doubt is 0.7 / 2 over one frame carried, frame 10's 0.5 / 11 over ten)
    assert choose_frame("attention", {0}, 20, attention={1: 0.7, 10: 0.5}) == 10
    truths = np.ones((4, 5, 5), np.uint8)
    labels = truths.copy()
    labels[3, :4] = 0  # J 0.2
    labels[1, :2] = 0  # J 0.6
    labels[0] = 0  # annotated: never chosen again
    assert choose_frame("oracle", {0}, 4, labels, truths) == 3
    with pytest.raises(ValueError, match="strategy"):
        choose_frame("random", {0}, 4)


def test_area_under_rounds_is_the_mean_level_of_the_curve():
    assert area_under_rounds([0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert area_under_rounds([0.0, 1.0]) == pytest.approx(0.5)


def test_corrections_stick_and_each_round_gains(tiny_config, clip, tmp_path):
    frames, truths = clip
    settings = SessionSettings(long_side=96, finetune=FinetuneConfig(steps=2, time_budget=None),
                               correction_steps=1, correction_time_budget=None, device="cpu")
    seen = []
    runs = simulate_session(frames, truths, SegFlowNet(tiny_config), settings, rounds=3,
                            strategies=("even", "oracle"), case="tiny",
                            progress=lambda *event: seen.append(event))
    assert [(run.strategy, len(run.rounds)) for run in runs] == [("even", 4), ("oracle", 4)]
    even, oracle = runs
    assert even.rounds[0] is oracle.rounds[0]  # one round 0 for every strategy
    assert [r.frame for r in even.rounds] == [None, 4, 6, 2]
    assert len({r.frame for r in oracle.rounds[1:]}) == 3
    for run in runs:
        # an untrained network: what it gains, it gains from the repainted frames, which must stay as painted
        assert run.rounds[-1].j > run.rounds[0].j
        assert all(r.seconds > 0 for r in run.rounds)
    assert len(seen) == 1 + 2 * 3

    peers = simulate_peer(frames, truths, rounds=3, case="tiny")
    assert [p.strategy for p in peers] == ["even", "oracle"]
    assert [r.frame for r in peers[0].rounds] == [None, 4, 6, 2]
    for peer in peers:
        assert peer.rounds[-1].j > peer.rounds[0].j

    table = interactive_table(runs + peers)
    assert (
        "| SegFlow session | even |" in table and "| DIS flow warping, restarted at each user frame | oracle |" in table
    )
    assert table.count("\n") == 1 + 4
    plot_rounds(runs + peers, tmp_path / "rounds.png")
    assert (tmp_path / "rounds.png").stat().st_size > 1000
