"""The window plan and the cross-fade weights: coverage, the moved-back last window, sums of 1."""

import numpy as np
import pytest

from inference import windows

# (frames, window, overlap): multiples of the stride and not, overlaps from 0 to window-1,
# windows as long as or longer than the shot, and plans where three windows share a frame.
CASES = [
    (frames, window, overlap)
    for frames in (1, 4, 7, 10, 11, 24, 25, 37)
    for window in (1, 2, 4, 5, 16)
    for overlap in range(window)
]


@pytest.mark.parametrize(("frames", "window", "overlap"), CASES)
def test_plan_covers_every_frame_with_full_windows_and_ends_on_the_last(frames, window, overlap):
    plan = windows.plan(frames, window, overlap)
    assert [w.index for w in plan] == list(range(len(plan)))
    assert plan[0].start == 0 and plan[-1].stop == frames, "the last window ends on the last frame"
    assert all(w.stop - w.start == min(window, frames) for w in plan), "every window has full temporal context"
    assert all(a.start < b.start for a, b in zip(plan, plan[1:]))
    for a, b in zip(plan, plan[1:]):
        assert a.stop - b.start >= overlap, "neighbours share at least `overlap` frames (no gap)"
    covered = np.zeros(frames, int)
    for w in plan:
        covered[w.start : w.stop] += 1
    assert covered.min() >= 1


@pytest.mark.parametrize(("frames", "window", "overlap"), CASES)
def test_weights_are_positive_at_most_one_and_sum_to_one_at_every_frame(frames, window, overlap):
    plan = windows.plan(frames, window, overlap)
    total = np.zeros(frames)
    for w in plan:
        weight = windows.weights(w, plan)
        assert weight.shape == (w.stop - w.start,)
        assert (weight > 0).all() and (weight <= 1 + 1e-12).all()
        total[w.start : w.stop] += weight
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)


def test_three_windows_meet_where_the_last_one_moves_back():
    # 7 frames, windows of 4 sharing 2: starts 0, 2 and the moved-back 3, so frame 3 is in all three.
    plan = windows.plan(7, 4, 2)
    assert [(w.start, w.stop) for w in plan] == [(0, 4), (2, 6), (3, 7)]
    at_frame_3 = [windows.weights(w, plan)[3 - w.start] for w in plan]
    assert sum(at_frame_3) == pytest.approx(1.0)


def test_two_windows_cross_fade_linearly_over_their_overlap():
    plan = windows.plan(6, 4, 2)  # (0, 4) and (2, 6)
    np.testing.assert_allclose(windows.weights(plan[0], plan), [1, 1, 2 / 3, 1 / 3])
    np.testing.assert_allclose(windows.weights(plan[1], plan), [1 / 3, 2 / 3, 1, 1])
