from __future__ import annotations

import pytest

from flowsentinel.detector.errors import ConfigError
from flowsentinel.detector.schema import builtin_schema
from flowsentinel.producers.publisher import Pacer, batch_to_records
from flowsentinel.producers.synthetic import ATTACKS, SyntheticTraffic, normal_training_records, to_batch


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_fixed_rate_spaces_records_evenly():
    fc = FakeClock()
    pacer = Pacer(rate=100.0, clock=fc.clock, sleep=fc.sleep)
    for _ in range(101):
        pacer.wait(None)
    assert fc.now == pytest.approx(101.0)  # 100 intervals of 10 ms


def test_speedup_follows_the_records_own_clock():
    fc = FakeClock()
    pacer = Pacer(speedup=10.0, clock=fc.clock, sleep=fc.sleep)
    for ts in (1000.0, 1000.0, 1005.0, 1020.0):
        pacer.wait(ts)
    assert fc.now == pytest.approx(102.0)  # 20 s of record time at 10x


def test_as_fast_as_possible_never_sleeps_and_realtime_needs_timestamps():
    fc = FakeClock()
    pacer = Pacer(clock=fc.clock, sleep=fc.sleep)
    for _ in range(50):
        pacer.wait(None)
    assert fc.slept == []
    with pytest.raises(ConfigError, match="need records with timestamps"):
        Pacer(speedup=1.0, clock=fc.clock, sleep=fc.sleep).wait(None)
    with pytest.raises(ConfigError, match="not both"):
        Pacer(rate=1.0, speedup=1.0)
    with pytest.raises(ConfigError, match="rate = -1"):
        Pacer(rate=-1)


def test_records_published_are_valid_input_for_the_detector():
    batch = to_batch(normal_training_records(50, seed=3))
    records = batch_to_records(batch)
    assert records[0]["schema"] == "kdd" and records[0]["schema_version"] == 1
    assert isinstance(records[0]["src_bytes"], int) and isinstance(records[0]["serror_rate"], float)
    again = to_batch(records)
    assert len(again) == 50 and not again.rejected
    assert (again.numeric == batch.numeric).all()


def test_synthetic_traffic_is_deterministic_labelled_and_injects_every_attack_kind():
    a = SyntheticTraffic(seed=5, attack_every_s=2.0, attack_duration_s=(1.0, 1.5)).records(
        6000, start=0.0, rate=200.0
    )
    b = SyntheticTraffic(seed=5, attack_every_s=2.0, attack_duration_s=(1.0, 1.5)).records(
        6000, start=0.0, rate=200.0
    )
    assert a == b
    labels = {r["label"] for r in a}
    assert labels == {"normal", *ATTACKS}
    batch = to_batch(a)
    assert len(batch) == 6000 and not batch.rejected
    attackers = {r["src_host"] for r in a if r["label"] != "normal"}
    assert all(h.startswith("203.0.113.") for h in attackers)
    assert all(r["ts"] == pytest.approx(i / 200.0) for i, r in enumerate(a[:10]))
    assert builtin_schema("kdd").is_normal(batch.labels).mean() > 0.5


def test_bad_generator_arguments_are_named():
    with pytest.raises(ValueError, match="unknown attack 'xss'"):
        SyntheticTraffic(attacks=("xss",))
    with pytest.raises(ValueError, match="hosts = 0"):
        SyntheticTraffic(hosts=0)


def test_stream_continues_one_timeline_in_chunks_up_to_a_limit():
    chunks = list(
        SyntheticTraffic(seed=2, attack_every_s=0).stream(rate=100.0, chunk=40, start=0.0, limit=100)
    )
    assert [len(c) for c in chunks] == [40, 40, 20]
    ts = [r["ts"] for c in chunks for r in c]
    assert ts == pytest.approx([i / 100.0 for i in range(100)])
