"""The formulas behind every number the harness reports, computed from raw `RequestRecord`s.

Every latency is measured from `t_intended`, the moment the schedule wanted the request
sent, not from when the generator got round to sending it: a generator that falls behind
makes latency worse, not invisible (coordinated omission). Percentiles come from the raw
samples, never from Locust's histogram (which rounds response times to 10 ms between 100 ms
and 1 s). loadtests/README.md lists the same formulas.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aiswarm_loadtest.records import RequestRecord

SLO_AVAILABILITY = 0.999
SLO_WINDOW_DAYS = 30


def percentile(samples: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks.

    Sort the n samples x[0..n-1]; h = (n - 1) * q / 100; the result is
    x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]). This is method 7 of
    Hyndman and Fan, the default of numpy.percentile and of spreadsheets' PERCENTILE.
    Returns None for no samples.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile: q must be within 0..100, got {q}")
    ordered = sorted(samples)
    if not ordered:
        return None
    h = (len(ordered) - 1) * q / 100
    low = math.floor(h)
    if low + 1 >= len(ordered):
        return ordered[-1]
    return ordered[low] + (h - low) * (ordered[low + 1] - ordered[low])


def ttft(record: RequestRecord) -> float | None:
    """TTFT = t_first_token - t_intended (seconds); None when no token arrived."""
    return record.ttft


def e2e(record: RequestRecord) -> float:
    """E2E = t_end - t_intended (seconds)."""
    return record.e2e


def itl(record: RequestRecord) -> float | None:
    """ITL = mean gap between successive content chunks (seconds); None under two chunks."""
    if not record.chunk_gaps:
        return None
    return sum(record.chunk_gaps) / len(record.chunk_gaps)


def tpot(record: RequestRecord) -> float | None:
    """TPOT = (t_end - t_first_token) / (output_tokens - 1) (seconds per output token)."""
    if record.t_first_token is None or record.output_tokens < 2:
        return None
    return (record.t_end - record.t_first_token) / (record.output_tokens - 1)


def tokens_per_second(record: RequestRecord) -> float | None:
    """Per-request output rate = output_tokens / (t_end - t_first_token)."""
    if record.t_first_token is None or record.output_tokens < 1:
        return None
    span = record.t_end - record.t_first_token
    return record.output_tokens / span if span > 0 else None


def start_lag(record: RequestRecord) -> float:
    """Generator lag = t_start - t_intended: how late the generator sent the request."""
    return record.t_start - record.t_intended


def run_window(records: Sequence[RequestRecord]) -> float:
    """Run window = max(t_end) - min(t_intended) over all records (seconds)."""
    if not records:
        return 0.0
    return max(r.t_end for r in records) - min(r.t_intended for r in records)


def downtime_seconds(records: Iterable[RequestRecord]) -> int:
    """Seconds of downtime: 1 s buckets of t_intended in which every request failed."""
    buckets: dict[int, bool] = {}
    for record in records:
        second = math.floor(record.t_intended)
        buckets[second] = buckets.get(second, False) or record.ok
    return sum(1 for any_ok in buckets.values() if not any_ok)


@dataclass(frozen=True, slots=True)
class Availability:
    """Failed fraction and the share of a 99.9 %/30-day error budget this run burned.

    budget_requests = failed_fraction / (1 - 0.999): 1.0 means the run failed requests at
    exactly the rate the SLO allows. budget_downtime = downtime_s / (30 days * (1 - 0.999)),
    i.e. downtime over the 2592 s the month allows.
    """

    failed_fraction: float
    downtime_s: int
    budget_requests: float
    budget_downtime: float


def availability(records: Sequence[RequestRecord]) -> Availability:
    """Availability numbers of a run; see `Availability`."""
    failed = sum(1 for r in records if not r.ok)
    fraction = failed / len(records) if records else 0.0
    down = downtime_seconds(records)
    allowed = 1 - SLO_AVAILABILITY
    return Availability(
        failed_fraction=fraction,
        downtime_s=down,
        budget_requests=fraction / allowed,
        budget_downtime=down / (SLO_WINDOW_DAYS * 86400 * allowed),
    )


@dataclass(frozen=True, slots=True)
class Distribution:
    """p50/p95/p99 and count of one metric, in seconds (or tokens/s)."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None

    @classmethod
    def of(cls, samples: Iterable[float | None]) -> Distribution:
        values = [s for s in samples if s is not None]
        return cls(len(values), percentile(values, 50), percentile(values, 95), percentile(values, 99))


@dataclass(frozen=True, slots=True)
class RunSummary:
    """Everything the gates and reports need from one run's records.

    Latency distributions (ttft, itl, tpot, e2e, tokens/s) use successful requests only;
    `lag` uses every request. `rps` = requests / run window; `tokens_per_s` = all output
    tokens of successful requests / run window (the aggregate rate).
    """

    requests: int
    failures: dict[str, int]
    error_rate: float
    rps: float
    tokens_per_s: float
    ttft: Distribution
    itl: Distribution
    tpot: Distribution
    e2e: Distribution
    request_tokens_per_s: Distribution
    lag: Distribution
    availability: Availability
    backends: dict[str, int] = field(default_factory=dict)


def summarize(records: Sequence[RequestRecord]) -> RunSummary:
    """Compute a `RunSummary` from raw records."""
    ok = [r for r in records if r.ok]
    window = run_window(records)
    failures = Counter(r.failure_class or "unclassified" for r in records if not r.ok)
    return RunSummary(
        requests=len(records),
        failures=dict(sorted(failures.items())),
        error_rate=(len(records) - len(ok)) / len(records) if records else 0.0,
        rps=len(records) / window if window > 0 else 0.0,
        tokens_per_s=sum(r.output_tokens for r in ok) / window if window > 0 else 0.0,
        ttft=Distribution.of(ttft(r) for r in ok),
        itl=Distribution.of(itl(r) for r in ok),
        tpot=Distribution.of(tpot(r) for r in ok),
        e2e=Distribution.of(e2e(r) for r in ok),
        request_tokens_per_s=Distribution.of(tokens_per_second(r) for r in ok),
        lag=Distribution.of(start_lag(r) for r in records),
        availability=availability(records),
        backends=dict(Counter(r.backend or "unknown" for r in records).most_common()),
    )
