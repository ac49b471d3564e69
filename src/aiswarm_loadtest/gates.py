"""SLO gates: pass/fail of a run, decided from its raw records, and the summary table.

Defaults come from the seed's targets: first token under 100 ms, API errors under 1 %,
response time under 5 s; a minimum request rate (the seed's 100 req/s) is off unless set,
because it only makes sense for the open-loop rate scenario. The content gate fails a run in
which more than `max_empty_share` of the successful answers carried no text (default 0: an
engine that answers "200, nothing" is not serving, and such answers have no first token, so
they would otherwise vanish from every latency figure).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiswarm_loadtest.metrics import RunSummary


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The gate limits; `min_rps` 0 turns the rate gate off."""

    ttft_p95_ms: float = 100.0
    e2e_p95_ms: float = 5000.0
    max_error_rate: float = 0.01
    min_rps: float = 0.0
    max_empty_share: float = 0.0

    @classmethod
    def from_options(cls, options: Any) -> Thresholds:
        return cls(
            ttft_p95_ms=options.slo_ttft_p95_ms,
            e2e_p95_ms=options.slo_e2e_p95_ms,
            max_error_rate=options.slo_max_error_rate,
            min_rps=options.slo_min_rps,
            max_empty_share=options.slo_max_empty_share,
        )


@dataclass(frozen=True, slots=True)
class GateResult:
    """One gate: `measured` against `limit`; `at_most` says which side passes."""

    name: str
    measured: float | None
    limit: float
    at_most: bool
    unit: str

    @property
    def passed(self) -> bool:
        if self.measured is None:
            return False
        return self.measured <= self.limit if self.at_most else self.measured >= self.limit

    @property
    def margin(self) -> str:
        """How far from the limit, e.g. '+12.3 ms over' or '4.0 req/s under'."""
        if self.measured is None:
            return "no samples"
        diff = self.measured - self.limit
        if self.passed:
            return "ok"
        side = "over" if self.at_most else "under"
        return f"{abs(diff):.4g} {self.unit} {side}".strip()


def evaluate(summary: RunSummary, limits: Thresholds) -> list[GateResult]:
    """Apply the gates; a run with no requests fails the error-rate gate."""
    ttft = None if summary.ttft.p95 is None else summary.ttft.p95 * 1000
    e2e = None if summary.e2e.p95 is None else summary.e2e.p95 * 1000
    results = [
        GateResult(
            "error rate", summary.error_rate if summary.requests else None, limits.max_error_rate, True, ""
        ),
        GateResult("e2e p95", e2e, limits.e2e_p95_ms, True, "ms"),
    ]
    if summary.ttft.count:
        results.insert(1, GateResult("ttft p95", ttft, limits.ttft_p95_ms, True, "ms"))
    if summary.successes:
        results.append(GateResult("empty share", summary.empty_share, limits.max_empty_share, True, ""))
    if limits.min_rps > 0:
        results.append(GateResult("request rate", summary.rps, limits.min_rps, False, "req/s"))
    return results


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def format_report(summary: RunSummary, results: list[GateResult], warnings: list[str]) -> str:
    """The end-of-run text: metrics table, gates table, warnings."""
    lines = [
        f"aiswarm: {summary.requests} requests, {summary.rps:.2f} req/s, "
        f"{summary.tokens_per_s:.1f} output tokens/s, error rate {summary.error_rate:.4f}",
        f"{'metric':<20}{'count':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}",
    ]
    for label, dist in (
        ("ttft", summary.ttft),
        ("itl", summary.itl),
        ("tpot", summary.tpot),
        ("e2e", summary.e2e),
        ("send lag", summary.lag),
    ):
        lines.append(f"{label:<20}{dist.count:>8}{_ms(dist.p50):>10}{_ms(dist.p95):>10}{_ms(dist.p99):>10}")
    rate = summary.request_tokens_per_s
    if rate.p50 is not None:
        lines.append(f"{'tokens/s per req':<20}{rate.count:>8}{rate.p50:>10.1f}{rate.p95 or 0:>10.1f}")
    if summary.failures:
        lines.append("failures: " + ", ".join(f"{k}={v}" for k, v in summary.failures.items()))
    lines.append(f"empty answers: {summary.empty} of {summary.successes} successes carried no text")
    avail = summary.availability
    gap = "-" if summary.longest_gap_s is None else f"{summary.longest_gap_s:.2f} s"
    lines.append(
        f"availability: {avail.downtime_s} s down ({avail.downtime_failed_s} s failed, "
        f"{avail.downtime_slow_s} s with no answer within {avail.slow_s:g} s); longest gap between "
        f"answers {gap}; error budget (99.9 %/30 d) burned: "
        f"{avail.budget_requests:.1f}x by request rate, {avail.budget_downtime:.2%} by downtime"
    )
    lines.append("served by: " + ", ".join(f"{k}={v}" for k, v in summary.backends.items()))
    lines.append(f"{'gate':<16}{'measured':>12}{'limit':>12}  result")
    for gate in results:
        measured = "-" if gate.measured is None else f"{gate.measured:.4g}"
        verdict = "PASS" if gate.passed else f"FAIL ({gate.margin})"
        lines.append(f"{gate.name:<16}{measured:>12}{gate.limit:>12.4g}  {verdict}")
    lines.extend(f"WARNING: {warning}" for warning in warnings)
    return "\n".join(lines)
