"""Progress where stderr is not a terminal: plain lines at an interval, never a carriage return."""

from __future__ import annotations

from flowsentinel.progress import LineProgress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_line_per_interval_and_one_at_the_end():
    clock, lines = Clock(), []
    p = LineProgress(total=1000, desc="training", unit="batch", every_s=30, emit=lines.append, clock=clock)
    for _ in range(100):  # 100 updates of 10 batches, one a second
        clock.now += 1
        p.update(10)
    p.set_postfix(member=2, epoch=7)
    p.close()
    assert lines[0] == "training: 300/1,000 batch (30%), 10 batch/s, 70s left"
    assert len(lines) == 4  # at 30, 60 and 90 s, then the end
    assert lines[-1] == "training: 1,000/1,000 batch (100%), 10 batch/s, member=2, epoch=7"
    assert not any("\r" in line for line in lines)


def test_close_adds_nothing_when_the_last_line_was_current_and_total_may_be_unknown():
    clock, lines = Clock(), []
    p = LineProgress(total=None, desc="→ t", unit="rec", every_s=5, emit=lines.append, clock=clock)
    clock.now = 5
    p.update(50)
    p.close()
    assert lines == ["→ t: 50 rec, 10 rec/s"]
