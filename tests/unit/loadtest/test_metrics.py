"""Metric formulas and the percentile method, against hand-computed values."""

from __future__ import annotations

import pytest

from aiswarm_loadtest.metrics import (
    availability,
    downtime_seconds,
    e2e,
    itl,
    longest_gap,
    percentile,
    run_window,
    start_lag,
    summarize,
    tokens_per_second,
    tpot,
    ttft,
)
from aiswarm_loadtest.records import RequestRecord
from aiswarm_loadtest.schedule import FixedSchedule


def _rec(**kw: object) -> RequestRecord:
    base: dict = {"kind": "chat_stream", "t_intended": 10.0, "t_start": 10.0, "t_end": 11.0, "ok": True}
    base.update(kw)
    return RequestRecord(**base)


@pytest.mark.parametrize(
    ("samples", "q", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),  # h = 1.5: 2 + 0.5 * (3 - 2)
        ([1.0, 2.0, 3.0, 4.0], 95, 3.85),  # h = 2.85: 3 + 0.85 * 1
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),  # unsorted input
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        ([7.0], 99, 7.0),
        (list(range(1, 101)), 99, 99.01),  # h = 98.01: 99 + 0.01 * 1
        ([0.010, 0.020], 90, 0.019),
    ],
)
def test_percentile_linear_interpolation(samples: list[float], q: float, expected: float) -> None:
    assert percentile(samples, q) == pytest.approx(expected)


def test_percentile_edges() -> None:
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1.0], 101)


def test_request_formulas() -> None:
    record = _rec(
        t_intended=10.0,
        t_start=10.2,
        t_first_token=10.5,
        t_end=12.5,
        output_tokens=5,
        chunk_gaps=[0.4, 0.5, 0.6, 0.5],
    )
    assert ttft(record) == pytest.approx(0.5)  # from t_intended
    assert e2e(record) == pytest.approx(2.5)
    assert itl(record) == pytest.approx(0.5)
    assert tpot(record) == pytest.approx(2.0 / 4)
    assert tokens_per_second(record) == pytest.approx(5 / 2.0)
    assert start_lag(record) == pytest.approx(0.2)


def test_formulas_without_tokens() -> None:
    record = _rec(output_tokens=1, t_first_token=None)
    assert ttft(record) is None and itl(record) is None and tpot(record) is None
    assert tokens_per_second(record) is None


def test_downtime_counts_only_seconds_where_everything_failed() -> None:
    records = [
        _rec(t_intended=100.1, ok=False, failure_class="error_before_first_token"),
        _rec(t_intended=100.9, ok=True),  # second 100 had a success
        _rec(t_intended=101.2, ok=False, failure_class="stall"),
        _rec(t_intended=101.8, ok=False, failure_class="stall"),  # second 101 all failed
        _rec(t_intended=103.0, ok=False, failure_class="cut_without_done"),  # second 103 all failed
    ]
    assert downtime_seconds(records) == (2, 0)
    avail = availability(records)
    assert avail.failed_fraction == pytest.approx(4 / 5)
    assert avail.budget_requests == pytest.approx(0.8 / 0.001)
    assert avail.budget_downtime == pytest.approx(2 / 2592)


def test_a_second_whose_answers_all_began_late_is_down_too() -> None:
    records = [
        _rec(t_intended=200.0, t_start=200.0, t_first_token=200.2, t_end=201.0),  # in time
        _rec(t_intended=201.1, t_start=201.1, t_first_token=211.5, t_end=212.0),  # held 10.4 s
        _rec(t_intended=201.5, t_start=201.5, t_first_token=206.6, t_end=207.0),  # 5.1 s: late
        _rec(t_intended=202.0, t_start=202.0, t_first_token=206.9, t_end=207.0),  # 4.9 s: in time
        _rec(t_intended=203.0, ok=False, failure_class="stall"),
    ]
    assert downtime_seconds(records) == (1, 1)
    assert downtime_seconds(records, slow_s=11.0) == (1, 0)
    avail = availability(records)
    assert (avail.downtime_s, avail.downtime_failed_s, avail.downtime_slow_s) == (2, 1, 1)
    assert avail.budget_downtime == pytest.approx(2 / 2592)


def test_longest_gap_between_answers() -> None:
    records = [
        _rec(t_intended=0.0, t_start=0.0, t_first_token=0.1, t_end=0.5),
        _rec(t_intended=0.2, t_start=0.2, t_first_token=0.3, t_end=0.9),
        _rec(t_intended=0.4, t_start=0.4, t_first_token=10.8, t_end=11.0),  # held: nothing began for 10.5 s
        _rec(t_intended=1.0, t_end=20.0, ok=False, failure_class="stall"),  # a failure doesn't count
        _rec(t_intended=11.0, t_start=11.0, t_end=11.5, empty=True),  # empty: its end counts
    ]
    assert longest_gap(records) == pytest.approx(10.5)
    assert longest_gap(records[:1]) is None
    summary = summarize(records)
    assert summary.longest_gap_s == pytest.approx(10.5)
    assert summary.empty == 1 and summary.empty_share == pytest.approx(1 / 4)


def test_summary_uses_successes_for_latency_and_all_for_rate() -> None:
    records = [
        _rec(t_intended=0.0, t_start=0.0, t_first_token=0.1, t_end=1.0, output_tokens=10, backend="a"),
        _rec(t_intended=1.0, t_start=1.5, t_first_token=1.3, t_end=2.0, output_tokens=10, backend="b"),
        _rec(t_intended=2.0, t_start=2.0, t_end=4.0, ok=False, failure_class="stall", backend="a"),
    ]
    summary = summarize(records)
    assert run_window(records) == pytest.approx(4.0)
    assert summary.rps == pytest.approx(3 / 4)
    assert summary.tokens_per_s == pytest.approx(20 / 4)
    assert summary.error_rate == pytest.approx(1 / 3)
    assert summary.ttft.count == 2 and summary.ttft.p50 == pytest.approx(0.2)
    assert summary.lag.p95 == pytest.approx(0.45)  # lags 0, 0.5, 0 -> sorted 0, 0, 0.5
    assert summary.failures == {"stall": 1}
    assert summary.backends == {"a": 2, "b": 1}


def test_empty_run() -> None:
    summary = summarize([])
    assert summary.requests == 0 and summary.rps == 0.0 and summary.ttft.p95 is None


def test_fixed_schedule_never_drifts_or_skips() -> None:
    schedule = FixedSchedule(rate=3.0, start=1000.0)
    slots = [schedule.next_slot() for _slot in range(3001)]
    assert slots[0] == 1000.0 and slots[-1] == pytest.approx(2000.0, abs=1e-9)
    with pytest.raises(ValueError, match="rate"):
        FixedSchedule(rate=0, start=0)
