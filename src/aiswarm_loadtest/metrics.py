"""The formulas behind every number the harness reports, computed from raw `RequestRecord`s.

Every latency is measured from `t_intended`, the moment the schedule wanted the request
sent, not from when the generator got round to sending it: a generator that falls behind
makes latency worse, not invisible (coordinated omission). Percentiles come from the raw
samples, never from Locust's histogram (which rounds response times to 10 ms between 100 ms
and 1 s). loadtests/README.md lists the same formulas.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aiswarm_loadtest.records import RequestRecord

SLO_AVAILABILITY = 0.999
SLO_WINDOW_DAYS = 30
# A first answer later than this counts as down, like a failure: the design's response-time alert.
SLOW_ANSWER_S = 5.0


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


def answer_time(record: RequestRecord) -> float:
    """When the client saw the answer begin: the first content token, else the end."""
    return record.t_end if record.t_first_token is None else record.t_first_token


def answered_in_time(record: RequestRecord, slow_s: float = SLOW_ANSWER_S) -> bool:
    """A success whose answer began within `slow_s` of the intended send time."""
    return record.ok and answer_time(record) - record.t_intended <= slow_s


def downtime_seconds(records: Iterable[RequestRecord], slow_s: float = SLOW_ANSWER_S) -> tuple[int, int]:
    """Seconds of downtime, `(failed, slow)`, over 1 s buckets of t_intended.

    A bucket is down when no request sent in it was answered in time (`answered_in_time`):
    *failed* when every request in it failed, *slow* when some succeeded but none began its
    answer within `slow_s` (a person waiting that long for a first word sees an outage).
    """
    buckets: dict[int, tuple[bool, bool]] = {}
    for record in records:
        second = math.floor(record.t_intended)
        any_ok, any_in_time = buckets.get(second, (False, False))
        buckets[second] = (any_ok or record.ok, any_in_time or answered_in_time(record, slow_s))
    failed = sum(1 for any_ok, _in_time in buckets.values() if not any_ok)
    slow = sum(1 for any_ok, in_time in buckets.values() if any_ok and not in_time)
    return failed, slow


def longest_gap(records: Iterable[RequestRecord]) -> float | None:
    """Longest time between two successive successful answers (seconds); None under two.

    An answer counts when it begins (`answer_time`): the longest stretch in which a user of
    the service saw nothing start, whatever was sent or held meanwhile.
    """
    times = sorted(answer_time(r) for r in records if r.ok)
    if len(times) < 2:
        return None
    return max(b - a for a, b in itertools.pairwise(times))


@dataclass(frozen=True, slots=True)
class Availability:
    """Failed fraction, downtime and the share of a 99.9 %/30-day error budget this run burned.

    downtime_s = downtime_failed_s + downtime_slow_s (see `downtime_seconds`).
    budget_requests = failed_fraction / (1 - 0.999): 1.0 means the run failed requests at
    exactly the rate the SLO allows. budget_downtime = downtime_s / (30 days * (1 - 0.999)),
    i.e. downtime over the 2592 s the month allows.
    """

    failed_fraction: float
    downtime_s: int
    budget_requests: float
    budget_downtime: float
    downtime_failed_s: int = 0
    downtime_slow_s: int = 0
    slow_s: float = SLOW_ANSWER_S


def availability(records: Sequence[RequestRecord], slow_s: float = SLOW_ANSWER_S) -> Availability:
    """Availability numbers of a run; see `Availability`."""
    failed = sum(1 for r in records if not r.ok)
    fraction = failed / len(records) if records else 0.0
    down_failed, down_slow = downtime_seconds(records, slow_s)
    down = down_failed + down_slow
    allowed = 1 - SLO_AVAILABILITY
    return Availability(
        failed_fraction=fraction,
        downtime_s=down,
        budget_requests=fraction / allowed,
        budget_downtime=down / (SLO_WINDOW_DAYS * 86400 * allowed),
        downtime_failed_s=down_failed,
        downtime_slow_s=down_slow,
        slow_s=slow_s,
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
    tokens of successful requests / run window (the aggregate rate). `empty` counts successes
    that carried no text (they have no ttft, so they would silently shrink its sample);
    `empty_share` = empty / successes. `longest_gap_s`: see `longest_gap`.
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
    empty: int = 0
    longest_gap_s: float | None = None

    @property
    def successes(self) -> int:
        return self.requests - sum(self.failures.values())

    @property
    def empty_share(self) -> float | None:
        """Empty successes over all successes; None without a success."""
        return self.empty / self.successes if self.successes else None


def summarize(records: Sequence[RequestRecord], slow_s: float = SLOW_ANSWER_S) -> RunSummary:
    """Compute a `RunSummary` from raw records; `slow_s`: see `downtime_seconds`."""
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
        availability=availability(records, slow_s),
        backends=dict(Counter(r.backend or "unknown" for r in records).most_common()),
        empty=sum(1 for r in ok if r.empty),
        longest_gap_s=longest_gap(records),
    )
