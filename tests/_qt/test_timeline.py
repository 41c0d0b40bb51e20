from napari_segflow._qt.timeline import bars


def test_one_bar_a_frame_while_the_frames_fit():
    assert bars(4, {0: 0.5, 2: 1.5}, columns=10) == [(0, 1, 0.5), (1, 2, None), (2, 3, 1.5), (3, 4, None)]
    assert bars(0, {}, columns=10) == []


def test_a_long_video_draws_one_bar_a_column_with_its_frames_highest_score():
    scores = {t: 0.1 for t in range(10_000)}
    scores[4_321] = 3.0
    drawn = bars(10_000, scores, columns=100)
    assert len(drawn) == 100
    assert [(a, b) for a, b, _ in drawn[:2]] == [(0, 100), (100, 200)] and drawn[-1][1] == 10_000
    assert [h for _, _, h in drawn].count(3.0) == 1 and drawn[43] == (4_300, 4_400, 3.0)
    assert bars(1_000, {5: 1.0}, columns=10)[1:] == [(a, a + 100, None) for a in range(100, 1_000, 100)]
