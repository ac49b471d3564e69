"""Failover measurements on a hand-built run; every expected number is worked out in the comments."""

from __future__ import annotations

import math

import pytest

from aiswarm_loadtest.chaos.analysis import (
    FaultWindow,
    downtime_s,
    evaluate_gates,
    infer_primary,
    measure,
    per_second,
    percentile,
)
from aiswarm_loadtest.chaos.scenario import Expect
from aiswarm_loadtest.records import RequestRecord

WINDOW = FaultWindow(start=100.0, end=110.0)


def rec(t: float, end: float, ok: bool, backend: str, first: float | None = None, failure: str | None = None):
    return RequestRecord(
        kind="chat_stream", t_intended=t, t_start=t, t_end=end, ok=ok, status=200 if ok else 0,
        t_first_token=first, failure_class=failure, backend=backend,
    )  # fmt: skip


# Primary vllm, fallback llamacpp; fault from 100 to 110.
RUN = [
    rec(90.0, 91.0, True, "vllm", 90.1),  # 1 baseline
    rec(95.0, 96.0, True, "vllm", 95.2),  # 2 baseline
    rec(98.0, 101.0, False, "vllm", 98.1, "cut_without_done"),  # 3 broken in flight (98 < 100 < 101)
    rec(100.5, 101.8, False, "", None, "error_before_first_token"),  # 4 held 1.3 s, failed, no backend
    rec(102.0, 107.0, False, "vllm", 102.5, "stall"),  # 5 hung on the primary (sent after the fault)
    rec(103.0, 104.0, True, "llamacpp", 103.4),  # 6 failover: 103.4 - 100 = 3.4 s
    rec(106.0, 107.0, True, "llamacpp", 106.3),  # 7
    rec(111.0, 111.5, False, "", None, "error_before_first_token"),  # 8 failure after the restore
    rec(112.0, 113.0, True, "llamacpp", 112.2),  # 9 recovery: ends 113, 113 - 110 = 3.0 s
    rec(115.0, 118.0, True, "vllm", 117.0),  # 10 failback (cold start): 117 - 110 = 7.0 s
    rec(120.0, 121.0, True, "vllm", 120.1),  # 11
]


def test_measurements_match_the_hand_computed_values() -> None:
    m = measure(RUN, WINDOW)
    assert m.primary_backend == "vllm"  # the only backend that served before the fault
    assert m.requests_total == 11
    assert m.failed_total == 4  # 3, 4, 5, 8
    assert m.failed_during_fault == 3  # 3, 4, 5 overlap [100, 110]; 8 starts at 111
    assert m.failed_after_restore == 1  # 8
    assert m.failed_since_fault == 4  # every failure ends at or after 100
    assert m.error_rate_during_fault == pytest.approx(3 / 5)  # 3, 4, 5, 6, 7 overlap the window
    assert m.failover_s == pytest.approx(3.4)
    assert m.failback_s == pytest.approx(7.0)
    assert m.recovery_s == pytest.approx(3.0)  # first success sent after 111 (the last failure) ends at 113
    assert m.broken_streams == 1  # 3; 5 stalled but was sent after the fault started
    # Held: 4 and 5 (failed on the primary); pre-fault waits 0.1 and 0.2 s give the 1 s floor, so 6
    # (0.4 s to its first token on the fallback) is the first request the gateway no longer held.
    assert (m.hung_requests, m.hung_routing_s) == (2, pytest.approx(3.0))


def test_a_frozen_primary_holds_requests_until_the_gateway_cools_it_down() -> None:
    window = FaultWindow(start=100.0, end=145.0)
    run = [
        rec(90.0, 90.5, True, "vllm", 90.3),  # baseline wait 0.3 s: threshold max(1, 1.5) = 1.5 s
        rec(100.2, 110.6, True, "llamacpp", 110.3),  # held 10.1 s, then served by the fallback
        rec(100.5, 110.7, True, "llamacpp", 110.4),  # held
        rec(110.4, 110.9, True, "llamacpp", 110.5),  # served at once: routing stopped at 110.4
        rec(140.0, 150.2, True, "llamacpp", 150.1),  # cooldown over, held again (counted)
        rec(150.5, 151.0, True, "vllm", 150.7),  # after the restore
    ]
    m = measure(run, window)
    assert (m.hung_requests, m.hung_routing_s) == (3, pytest.approx(10.4))
    assert m.failed_total == 0
    # Without a cooldown nothing is ever served at once: the whole fault is hung routing.
    never_released = [r for r in run if r.t_start != 110.4]
    assert measure(never_released, window).hung_routing_s == pytest.approx(45.0)


def test_availability_and_error_budget() -> None:
    # Down while the most recent request failed:
    # 98->100.5 (2.5) + 100.5->102 (1.5) + 102->103 (1.0) + 111->112 (1.0).
    a = measure(RUN, WINDOW).availability
    assert a.downtime_s == pytest.approx(6.0)
    assert a.failed_fraction == pytest.approx(4 / 11)
    assert a.error_budget_s == pytest.approx(2592.0)  # 0.1% of 30 days
    assert a.error_budget_burned == pytest.approx(6.0 / 2592.0)


def test_a_trailing_failure_counts_until_it_ends() -> None:
    assert downtime_s([rec(0, 1, True, "a", 0.5), rec(2, 5, False, "")]) == pytest.approx((3.0, 0.0))
    assert downtime_s([]) == (0.0, 0.0)


# A frozen primary under closed-loop users: every request sent in the first 10.4 s of the fault
# is held until the stream timeout, then served by the fallback. Nothing fails.
FROZEN = [
    rec(99.0, 99.3, True, "vllm", 99.05),
    rec(99.5, 99.8, True, "vllm", 99.55),
    rec(100.1, 110.9, True, "llamacpp", 110.5),  # held 10.4 s
    rec(100.2, 110.9, True, "llamacpp", 110.6),  # held 10.4 s
    rec(110.9, 111.2, True, "llamacpp", 110.95),  # the gateway routes to the fallback at once
    rec(111.2, 111.5, True, "llamacpp", 111.25),
]


def test_a_held_answer_is_downtime_though_nothing_failed() -> None:
    # State after 100.1 is "slow" (its answer began 10.4 s after it was sent) until the next send
    # at 100.2 (0.1 s), which is slow too until 110.9 (10.7 s): 10.8 s slow, none failed.
    m = measure(FROZEN, FaultWindow(start=100.0, end=145.0))
    assert m.failed_total == 0
    assert m.availability.downtime_failed_s == 0.0
    assert m.availability.downtime_slow_s == pytest.approx(10.8)
    assert m.availability.downtime_s == pytest.approx(10.8)
    assert m.availability.error_budget_burned == pytest.approx(10.8 / 2592.0)
    # Nothing began from 100.0 (the fault) to 110.5: the longest gap counts from the fault start.
    assert m.longest_gap_s == pytest.approx(10.5)
    # A limit above the hold makes it no downtime at all.
    assert measure(FROZEN, FaultWindow(100.0, 145.0), slow_s=11.0).availability.downtime_s == 0.0


def test_service_gap_and_empty_answer_gates() -> None:
    m = measure(FROZEN, FaultWindow(start=100.0, end=145.0))
    gates = {g.name: g for g in evaluate_gates(Expect(max_service_gap_s=3.0, max_empty_responses=0), m)}
    gap = gates["max_service_gap_s"]
    assert not gap.passed and gap.measured == pytest.approx(10.5)
    assert gates["max_empty_responses"].passed
    assert per_second(FROZEN, t0=100.0).answers[:3] == [0, 0, 0]
    assert per_second(FROZEN, t0=100.0).answers[10:12] == [3, 1]


def test_an_explicit_primary_overrides_the_inference() -> None:
    m = measure(RUN, WINDOW, primary="llamacpp")
    assert m.primary_backend == "llamacpp"
    assert m.failover_s == pytest.approx(17.0)  # first vllm success at or after 100: 117
    assert m.failback_s == pytest.approx(3.0 - 0.8)  # record 9: first token 112.2 - 110
    assert m.hung_requests == 1  # only record 4 (no backend); 5 failed on vllm


def test_nothing_observed_gives_none_not_zero() -> None:
    baseline_only = RUN[:2]
    m = measure(baseline_only, WINDOW)
    assert (m.failover_s, m.failback_s, m.recovery_s, m.hung_routing_s) == (None, None, None, None)
    assert m.error_rate_during_fault is None
    empty = measure([], WINDOW)
    assert empty.primary_backend is None and empty.requests_total == 0


def test_infer_primary_breaks_ties_alphabetically_and_ignores_failures() -> None:
    records = [
        rec(1, 2, True, "b", 1.5),
        rec(2, 3, True, "a", 2.5),
        rec(3, 4, False, "c"),
        rec(4, 5, False, "c"),
    ]
    assert infer_primary(records, before=10) == "a"
    assert infer_primary(records, before=0) is None


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 95, None), ([5.0], 95, 5.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
     (list(map(float, range(1, 21))), 95, 19.0),
     ([3.0, 1.0, 2.0], 100, 3.0), ([3.0, 1.0, 2.0], 0, 1.0)],
)  # fmt: skip
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


def test_per_second_series() -> None:
    series = per_second(RUN, t0=90.0)
    assert series.seconds == list(range(31))  # last request sent at 120 -> second 30
    assert sum(series.requests) == 11 and sum(series.errors) == 4
    assert series.ttft_p50_ms[0] == pytest.approx(100.0)  # record 1: 90.1 - 90.0
    assert series.ttft_p95_ms[13] == pytest.approx(400.0)  # record 6 sent at 103
    assert series.ttft_p50_ms[1] is None  # nothing sent at 91
    # errors count when seen: records 3 and 4 end in second 11, 5 in second 17, 8 in second 21
    assert {i: n for i, n in enumerate(series.errors) if n} == {11: 2, 17: 1, 21: 1}
    assert series.share["vllm"][0] == 1.0 and series.share["llamacpp"][0] == 0.0
    assert series.share["llamacpp"][13] == 1.0
    assert series.share["vllm"][10] == 0.0  # only a failure in that second
    assert math.isclose(
        sum(series.share["vllm"]) + sum(series.share["llamacpp"]), 7.0
    )  # 7 seconds with successes
    assert per_second([]).seconds == []


def test_gates_compare_with_expect() -> None:
    m = measure(RUN, WINDOW)
    expect = Expect(
        failover_within_s=3.0, failback_within_s=10, recover_within_s=5, max_failed_requests=4,
        max_broken_streams=0, max_hung_routing_s=5, max_error_rate_during_fault=0.5, data_loss=False,
    )  # fmt: skip
    gates = {g.name: g for g in evaluate_gates(expect, m, data_lost=False)}
    assert {name: g.passed for name, g in gates.items()} == {
        "failover_within_s": False,  # 3.4 > 3
        "failback_within_s": True,
        "recover_within_s": True,
        "max_failed_requests": True,  # 4 <= 4
        "max_broken_streams": False,  # 1 > 0
        "max_hung_routing_s": True,
        "max_error_rate_during_fault": False,  # 0.6 > 0.5
        "data_loss": True,
    }
    assert gates["failover_within_s"].measured == pytest.approx(3.4)


def test_gates_on_missing_observations() -> None:
    m = measure(RUN[:2], WINDOW)
    gates = {
        g.name: g
        for g in evaluate_gates(Expect(failover_within_s=10, max_hung_routing_s=1, data_loss=False), m)
    }
    assert not gates["failover_within_s"].passed and gates["failover_within_s"].detail == "not observed"
    assert gates["max_hung_routing_s"].passed  # no hung request at all
    assert not gates["data_loss"].passed and gates["data_loss"].detail == "data check did not run"
    assert evaluate_gates(Expect(data_loss=False), m, data_lost=True)[0].passed is False
    assert evaluate_gates(Expect(data_loss=True), m, data_lost=True)[0].passed is True
    assert evaluate_gates(Expect(), m) == []


def test_refused_connections_fail_at_once_and_are_not_held() -> None:
    window = FaultWindow(start=100.0, end=105.0)
    run = [
        rec(90.0, 90.5, True, "vllm", 90.2),
        *[
            rec(100.0 + i / 10, 100.0 + i / 10 + 0.001, False, "", None, "error_before_first_token")
            for i in range(40)
        ],
        rec(106.0, 106.5, True, "vllm", 106.2),
    ]
    m = measure(run, window)
    assert m.failed_during_fault == 40
    assert (m.hung_requests, m.hung_routing_s) == (0, None)


def test_first_token_during_the_fault_and_the_noisy_client_gates() -> None:
    # Sent within [100, 110] and successful: 6 (0.4 s) and 7 (0.3 s); nearest-rank p95 is 0.4 s.
    noisy = [{"t": 100.0, "ok": True}, {"t": 101.0, "ok": False}, {"t": 102.0, "ok": True}]
    m = measure(RUN, WINDOW, noisy=noisy)
    assert m.ttft_p95_during_fault_ms == pytest.approx(400.0)
    assert (m.noisy_requests, m.noisy_unexpected) == (3, 1)
    gates = {
        g.name: g for g in evaluate_gates(Expect(max_ttft_p95_during_fault_ms=350, max_noisy_unexpected=0), m)
    }
    assert not gates["max_ttft_p95_during_fault_ms"].passed
    assert not gates["max_noisy_unexpected"].passed
    quiet = measure(RUN, WINDOW)
    assert quiet.noisy_requests is None
    assert not evaluate_gates(Expect(max_noisy_unexpected=0), quiet)[0].passed  # not observed fails
