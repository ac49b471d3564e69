"""What a fault did to the traffic, computed from the per-request records.

Pure functions over a list of `RequestRecord`s (sorted by `t_start`) and the fault window
(`start` = injection, `end` = rollback). Definitions, so that numbers can be checked by hand:

- a record's *response time* is its first token (`t_first_token`) or, without one, `t_end`;
- *failover*: first successful response served by a backend other than the primary, at or after
  the fault start; *failback*: first success served by the primary among requests sent after the
  rollback (cold start included);
- *failed during the fault*: failures whose `[t_start, t_end]` overlaps the window; *broken
  streams*: stream failures (cut, in-band error, stall) sent before the fault and ending after it;
- *held* requests (a frozen backend): sent during the fault, waited at least 5x the pre-fault
  p95 of time to first byte (1 s at least), then failed on the primary (or with no backend
  reported) or were served by a fallback; *hung routing*: from the fault start to the
  first request after the first held one that a fallback served without waiting, else the whole
  fault;
- *recovery*: from the rollback to the end of the first success sent after both the rollback and
  the last failure;
- *downtime*: the service is taken to be in the state of the most recently sent request; the time
  spent in a bad state is downtime: *failed* (the request failed) or *slow* (it succeeded, but its
  answer began more than `slow_s`, default 5 s, after it was sent: a person waiting that long for a
  first word sees an outage). The error budget is 99.9% over 30 days (2592 s) of both together;
- *longest gap*: the longest time between two successive successful answers (by when each
  answer began) from the fault start to the end of the run: how long no user saw anything start;
- *empty*: successes that carried no text.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from aiswarm_loadtest.chaos.scenario import Expect
from aiswarm_loadtest.metrics import SLOW_ANSWER_S, answer_time, longest_gap
from aiswarm_loadtest.records import RequestRecord

STREAM_BREAKS = ("cut_without_done", "inband_error", "stall")
HELD_FACTOR, HELD_MIN_S = 5.0, 1.0
SLO_TARGET = 0.999
SLO_PERIOD_S = 30 * 86400.0


@dataclass(frozen=True)
class FaultWindow:
    start: float
    end: float


@dataclass(frozen=True)
class Availability:
    downtime_s: float  # failed + slow
    failed_fraction: float
    error_budget_s: float
    error_budget_burned: float  # fraction of the 30-day budget this run consumed
    downtime_failed_s: float = 0.0
    downtime_slow_s: float = 0.0
    slow_s: float = SLOW_ANSWER_S


@dataclass(frozen=True)
class Measurements:
    primary_backend: str | None
    requests_total: int
    failed_total: int
    failed_during_fault: int
    failed_after_restore: int
    failed_since_fault: int
    error_rate_during_fault: float | None
    failover_s: float | None
    failback_s: float | None
    recovery_s: float | None
    broken_streams: int
    hung_requests: int
    hung_routing_s: float | None
    availability: Availability
    longest_gap_s: float | None = None
    empty_responses: int = 0
    ttft_p95_during_fault_ms: float | None = None
    noisy_requests: int | None = None  # a noisy client's requests (None: no noisy client ran)
    noisy_unexpected: int | None = None  # ... of which the gateway did not refuse as it should

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Series:
    """Per-second series: requests, TTFT and share by the second a request was sent, errors by the
    second the failure was seen (`t_end`), answers by the second a successful answer began (a
    stall shows as a run of zeros there even while held requests keep the sent count flat)."""

    t0: float
    seconds: list[int] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    ttft_p50_ms: list[float | None] = field(default_factory=list)
    ttft_p95_ms: list[float | None] = field(default_factory=list)
    share: dict[str, list[float]] = field(default_factory=dict)  # backend -> fraction of successes

    def to_dict(self) -> dict:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


# A record's response time: its first token, else its end (one definition for runs and chaos).
response_time = answer_time


def error_rate(records: Sequence[RequestRecord]) -> float | None:
    return None if not records else sum(not r.ok for r in records) / len(records)


def ttft_p95_ms(records: Sequence[RequestRecord]) -> float | None:
    value = percentile([r.ttft for r in records if r.ok and r.ttft is not None], 95)
    return None if value is None else value * 1000.0


def infer_primary(records: Sequence[RequestRecord], before: float) -> str | None:
    """The backend that served most successes sent before `before` (ties: alphabetical)."""
    counts = Counter(r.backend for r in records if r.ok and r.backend and r.t_start < before)
    if not counts:
        return None
    return min(counts, key=lambda b: (-counts[b], b))


def failover_s(records: Sequence[RequestRecord], window: FaultWindow, primary: str | None) -> float | None:
    times = [
        response_time(r)
        for r in records
        if r.ok and r.backend and r.backend != primary and response_time(r) >= window.start
    ]
    return None if primary is None or not times else min(times) - window.start


def failback_s(records: Sequence[RequestRecord], window: FaultWindow, primary: str | None) -> float | None:
    times = [response_time(r) for r in records if r.ok and r.backend == primary and r.t_start >= window.end]
    return None if primary is None or not times else min(times) - window.end


def broken_streams(records: Sequence[RequestRecord], window: FaultWindow) -> list[RequestRecord]:
    return [
        r
        for r in records
        if not r.ok and r.failure_class in STREAM_BREAKS and r.t_start < window.start < r.t_end
    ]


def failed_during(records: Sequence[RequestRecord], window: FaultWindow) -> list[RequestRecord]:
    return [r for r in records if not r.ok and r.t_start <= window.end and r.t_end >= window.start]


def held_threshold_s(records: Sequence[RequestRecord], window: FaultWindow) -> float:
    """How long a request must wait for its first byte to count as held: 5x the pre-fault p95, >= 1 s."""
    waits = [response_time(r) - r.t_start for r in records if r.ok and r.t_end < window.start]
    baseline = percentile(waits, 95) or 0.0
    return max(HELD_MIN_S, HELD_FACTOR * baseline)


def hung_routing(
    records: Sequence[RequestRecord], window: FaultWindow, primary: str | None
) -> tuple[int, float | None]:
    """Requests held by a hung primary, and how long the gateway kept routing new requests to it.

    A request sent during the fault is *held* when it waited at least `held_threshold_s` and then
    either failed on the primary (or with no backend), or was served by a fallback (the gateway
    tried the primary first and gave up on it). A refused connection fails at once and is not
    held. The routing time runs from the fault start to the first request sent after the first
    held one that a fallback served without waiting (the gateway stopped sending to the
    primary); if none came, the whole fault.
    """
    threshold = held_threshold_s(records, window)
    in_window = [r for r in records if window.start <= r.t_start <= window.end]

    def waited(r: RequestRecord) -> float:
        return (response_time(r) if r.ok else r.t_end) - r.t_start

    def prompt_fallback(r: RequestRecord) -> bool:
        return r.ok and bool(r.backend) and r.backend != primary and waited(r) < threshold

    held = [
        r
        for r in in_window
        if waited(r) >= threshold
        and ((not r.ok and r.backend in ("", primary)) or (r.ok and bool(r.backend) and r.backend != primary))
    ]
    if not held:
        return 0, None
    first_held = min(r.t_start for r in held)
    released = [r.t_start for r in in_window if r.t_start > first_held and prompt_fallback(r)]
    end = min(released) if released else window.end
    return len(held), end - window.start


def recovery_s(records: Sequence[RequestRecord], window: FaultWindow) -> float | None:
    failures = [r.t_start for r in records if not r.ok and r.t_end >= window.start]
    last_failure = max(failures, default=None)
    ends = [
        r.t_end
        for r in records
        if r.ok and r.t_start >= window.end and (last_failure is None or r.t_start > last_failure)
    ]
    return None if not ends else min(ends) - window.end


def downtime_s(records: Sequence[RequestRecord], slow_s: float = SLOW_ANSWER_S) -> tuple[float, float]:
    """Time spent `(failed, slow)`, the state being that of the most recently sent request.

    A request is in the failed state when it failed, in the slow state when it succeeded but
    its answer began more than `slow_s` after it was sent."""
    ordered = sorted(records, key=lambda r: r.t_start)
    failed = slow = 0.0
    for i, record in enumerate(ordered):
        is_slow = record.ok and response_time(record) - record.t_start > slow_s
        if record.ok and not is_slow:
            continue
        until = ordered[i + 1].t_start if i + 1 < len(ordered) else record.t_end
        span = max(0.0, until - record.t_start)
        if record.ok:
            slow += span
        else:
            failed += span
    return failed, slow


def availability(records: Sequence[RequestRecord], slow_s: float = SLOW_ANSWER_S) -> Availability:
    down_failed, down_slow = downtime_s(records, slow_s)
    down = down_failed + down_slow
    budget = (1.0 - SLO_TARGET) * SLO_PERIOD_S
    failed = error_rate(records) or 0.0
    return Availability(
        downtime_s=down,
        failed_fraction=failed,
        error_budget_s=budget,
        error_budget_burned=down / budget,
        downtime_failed_s=down_failed,
        downtime_slow_s=down_slow,
        slow_s=slow_s,
    )


def measure(
    records: Sequence[RequestRecord],
    window: FaultWindow,
    primary: str | None = None,
    slow_s: float = SLOW_ANSWER_S,
    noisy: Sequence[dict] | None = None,
) -> Measurements:
    """Every failover measurement for one run; the primary is inferred when not given.

    `noisy` holds a noisy client's log lines (``aiswarm_loadtest.noisy``), None when none ran.
    """
    primary = primary or infer_primary(records, window.start)
    during = [r for r in records if r.t_start <= window.end and r.t_end >= window.start]
    hung_count, hung_span = hung_routing(records, window, primary)
    return Measurements(
        primary_backend=primary,
        requests_total=len(records),
        failed_total=sum(not r.ok for r in records),
        failed_during_fault=len(failed_during(records, window)),
        failed_after_restore=sum(not r.ok and r.t_start > window.end for r in records),
        failed_since_fault=sum(not r.ok and r.t_end >= window.start for r in records),
        error_rate_during_fault=error_rate(during),
        failover_s=failover_s(records, window, primary),
        failback_s=failback_s(records, window, primary),
        recovery_s=recovery_s(records, window),
        broken_streams=len(broken_streams(records, window)),
        hung_requests=hung_count,
        hung_routing_s=hung_span,
        availability=availability(records, slow_s),
        longest_gap_s=_gap_since(records, window.start),
        empty_responses=sum(1 for r in records if r.ok and r.empty),
        ttft_p95_during_fault_ms=ttft_p95_ms([r for r in records if window.start <= r.t_start <= window.end]),
        noisy_requests=None if noisy is None else len(noisy),
        noisy_unexpected=None if noisy is None else sum(1 for line in noisy if not line.get("ok")),
    )


def _gap_since(records: Sequence[RequestRecord], start: float) -> float | None:
    """`longest_gap` from `start` on, counting the wait from `start` to the first answer after it."""
    answered = [r for r in records if r.ok and response_time(r) >= start]
    if not answered:
        return None
    first = min(response_time(r) for r in answered)
    return max(first - start, longest_gap(answered) or 0.0)


def per_second(records: Sequence[RequestRecord], t0: float | None = None) -> Series:
    """TTFT p50/p95, requests, errors and backend share for each second since `t0`."""
    if not records:
        return Series(t0=t0 or 0.0)
    t0 = min(r.t_start for r in records) if t0 is None else t0
    last = max(math.floor((response_time(r) if r.ok else r.t_end) - t0) for r in records)
    buckets: list[list[RequestRecord]] = [[] for _bucket in range(last + 1)]
    errors = [0] * (last + 1)
    answers = [0] * (last + 1)
    for r in records:
        second = math.floor(r.t_start - t0)
        if second >= 0:
            buckets[second].append(r)
        if not r.ok and math.floor(r.t_end - t0) >= 0:
            errors[math.floor(r.t_end - t0)] += 1
        if r.ok and math.floor(response_time(r) - t0) >= 0:
            answers[math.floor(response_time(r) - t0)] += 1
    backends = sorted({r.backend for r in records if r.ok and r.backend})
    series = Series(t0=t0, share={b: [] for b in backends})
    for second, bucket in enumerate(buckets):
        ttfts = [r.ttft * 1000.0 for r in bucket if r.ok and r.ttft is not None]
        ok = [r for r in bucket if r.ok and r.backend]
        series.seconds.append(second)
        series.requests.append(len(bucket))
        series.errors.append(errors[second])
        series.answers.append(answers[second])
        series.ttft_p50_ms.append(percentile(ttfts, 50))
        series.ttft_p95_ms.append(percentile(ttfts, 95))
        for backend in backends:
            series.share[backend].append(sum(r.backend == backend for r in ok) / len(ok) if ok else 0.0)
    return series


@dataclass(frozen=True)
class Gate:
    name: str
    bound: float | bool
    measured: float | bool | None
    passed: bool
    detail: str


def _upper(
    name: str, bound: float | None, measured: float | None, *, none_passes: bool, unit: str
) -> Gate | None:
    if bound is None:
        return None
    if measured is None:
        detail = "not observed" + (" (counts as 0)" if none_passes else "")
        return Gate(name, bound, None, none_passes, detail)
    return Gate(name, bound, measured, measured <= bound, f"{measured:.3g}{unit} <= {bound:g}{unit}")


def evaluate_gates(expect: Expect, m: Measurements, data_lost: bool | None = None) -> list[Gate]:
    """Compare the measurements with the scenario's `expect` bounds; only bounds that are set count."""
    gates = [
        _upper("failover_within_s", expect.failover_within_s, m.failover_s, none_passes=False, unit="s"),
        _upper("failback_within_s", expect.failback_within_s, m.failback_s, none_passes=False, unit="s"),
        _upper("recover_within_s", expect.recover_within_s, m.recovery_s, none_passes=False, unit="s"),
        _upper(
            "max_failed_requests",
            expect.max_failed_requests,
            m.failed_since_fault,
            none_passes=False,
            unit="",
        ),
        _upper("max_broken_streams", expect.max_broken_streams, m.broken_streams, none_passes=False, unit=""),
        _upper("max_hung_routing_s", expect.max_hung_routing_s, m.hung_routing_s, none_passes=True, unit="s"),
        _upper("max_service_gap_s", expect.max_service_gap_s, m.longest_gap_s, none_passes=False, unit="s"),
        _upper(
            "max_empty_responses", expect.max_empty_responses, m.empty_responses, none_passes=False, unit=""
        ),
        _upper(
            "max_ttft_p95_during_fault_ms",
            expect.max_ttft_p95_during_fault_ms,
            m.ttft_p95_during_fault_ms,
            none_passes=False,
            unit="ms",
        ),
        _upper(
            "max_noisy_unexpected",
            expect.max_noisy_unexpected,
            m.noisy_unexpected,
            none_passes=False,
            unit="",
        ),
        _upper(
            "max_error_rate_during_fault",
            expect.max_error_rate_during_fault,
            m.error_rate_during_fault,
            none_passes=False,
            unit="",
        ),
    ]
    if expect.data_loss is not None:
        if data_lost is None:
            gates.append(Gate("data_loss", expect.data_loss, None, False, "data check did not run"))
        else:
            ok = expect.data_loss or not data_lost  # `data_loss: true` tolerates a loss
            gates.append(Gate("data_loss", expect.data_loss, data_lost, ok, f"data lost: {data_lost}"))
    return [g for g in gates if g is not None]
