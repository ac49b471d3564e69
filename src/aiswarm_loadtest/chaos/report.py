"""Per-run reports: `result.json` (every number), `summary.md` (tables and gates), `timeline.png`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiswarm_loadtest.chaos.analysis import FaultWindow, Gate, Measurements, Series


@dataclass
class RunResult:
    """Everything a run produced; `outcome` is passed, failed, refused or aborted."""

    scenario: str
    description: str
    source: str
    outcome: str
    started_at: float
    faults: list[dict] = field(default_factory=list)  # plan + t_start/t_end for each injected fault
    windows: list[FaultWindow] = field(default_factory=list)
    steady_state: dict[str, Any] = field(default_factory=dict)
    measurements: Measurements | None = None
    gates: list[Gate] = field(default_factory=list)
    series: Series | None = None
    ledger: list[dict] = field(default_factory=list)
    open_faults: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    alert: dict[str, Any] = field(default_factory=dict)  # the expected alert and when it fired/resolved

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["passed"] = self.passed
        return data


def write_result_json(result: RunResult, out_dir: Path) -> Path:
    path = out_dir / "result.json"
    path.write_text(json.dumps(result.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}{unit}"
    return f"{value}{unit}"


def render_summary(result: RunResult) -> str:
    lines = [
        f"# Chaos run: {result.scenario}",
        "",
        result.description.strip(),
        "",
        f"**Outcome: {result.outcome.upper()}** (scenario file `{result.source}`)",
        "",
    ]
    if result.faults:
        lines += ["## Faults", "", "| fault | node | injected (s) | rolled back (s) |", "|---|---|---|---|"]
        for fault in result.faults:
            start = fault.get("t_start")
            end = fault.get("t_end")
            rel_start = None if start is None else start - result.started_at
            rel_end = None if end is None else end - result.started_at
            lines.append(f"| {fault['fault_id']} | {fault['node']} | {_fmt(rel_start)} | {_fmt(rel_end)} |")
        lines.append("")
    if result.steady_state:
        lines += ["## Steady state before the fault", "", "| check | value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value)} |" for key, value in result.steady_state.items()]
        lines.append("")
    if result.measurements is not None:
        m = result.measurements
        rows = [
            ("primary backend", m.primary_backend),
            ("requests", m.requests_total),
            ("failed (whole run)", m.failed_total),
            ("failed since the fault", m.failed_since_fault),
            ("failed during the fault", m.failed_during_fault),
            ("failed after restore", m.failed_after_restore),
            ("error rate during the fault", m.error_rate_during_fault),
            ("failover to a fallback (s)", m.failover_s),
            ("failback to the primary (s)", m.failback_s),
            ("recovery after restore (s)", m.recovery_s),
            ("streams broken in flight", m.broken_streams),
            ("requests held by the hung primary", m.hung_requests),
            ("routing to the hung primary (s)", m.hung_routing_s),
            ("longest gap between answers since the fault (s)", m.longest_gap_s),
            ("answers without text", m.empty_responses),
            ("first-token p95 of requests sent during the fault (ms)", m.ttft_p95_during_fault_ms),
            *(
                [
                    ("noisy clients' requests", m.noisy_requests),
                    ("... not refused as they should be", m.noisy_unexpected),
                ]
                if m.noisy_requests is not None
                else []
            ),
            ("downtime (s): failed + slow", m.availability.downtime_s),
            ("downtime: requests failed (s)", m.availability.downtime_failed_s),
            (f"downtime: answer began after {m.availability.slow_s:g} s (s)", m.availability.downtime_slow_s),
            ("failed fraction", m.availability.failed_fraction),
            ("error budget burned (99.9%/30d)", m.availability.error_budget_burned),
        ]
        lines += ["## Measurements", "", "| measurement | value |", "|---|---|"]
        lines += [f"| {name} | {_fmt(value)} |" for name, value in rows]
        lines.append("")
    if result.alert:
        alert = result.alert
        lines += ["## Alert at the receiver", "", "| measurement | value |", "|---|---|"]
        lines += [
            f"| alert | {alert.get('fires')} {alert.get('labels') or ''} |",
            f"| notifications received | {_fmt(alert.get('notifications'))} |",
            f"| time to detect (fault start to firing) (s) | {_fmt(alert.get('detect_s'))} |",
            f"| time to resolve (rollback to resolved) (s) | {_fmt(alert.get('resolve_s'))} |",
            "",
        ]
    if result.gates:
        lines += ["## Gates", "", "| gate | bound | measured | result |", "|---|---|---|---|"]
        for gate in result.gates:
            verdict = "PASS" if gate.passed else "FAIL"
            lines.append(
                f"| {gate.name} | {_fmt(gate.bound)} | {_fmt(gate.measured)} | {verdict}: {gate.detail} |"
            )
        lines.append("")
    if result.open_faults:
        lines += (
            ["## STILL OPEN: roll these back by hand", ""] + [f"- {f}" for f in result.open_faults] + [""]
        )
    if result.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in result.notes] + [""]
    if result.series is not None:
        lines += ["![timeline](timeline.png)", ""]
    return "\n".join(lines)


def write_timeline_png(series: Series, windows: list[FaultWindow], path: Path) -> Path:
    """TTFT p50/p95, errors per second and backend share over time, fault windows shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ttft, ax_err, ax_share) = plt.subplots(
        3, 1, sharex=True, figsize=(11, 8), constrained_layout=True
    )
    x = series.seconds

    def nan(values: list[float | None]) -> list[float]:
        return [float("nan") if v is None else v for v in values]

    ax_ttft.plot(x, nan(series.ttft_p50_ms), label="TTFT p50")
    ax_ttft.plot(x, nan(series.ttft_p95_ms), label="TTFT p95")
    ax_ttft.set_ylabel("ms")
    ax_ttft.legend(loc="upper left")
    ax_err.bar(x, series.errors, color="tab:red", label="errors/s")
    ax_err.plot(x, series.requests, color="tab:gray", label="requests sent/s")
    if series.answers:
        ax_err.plot(x, series.answers, color="tab:green", label="answers begun/s")
    ax_err.set_ylabel("per second")
    ax_err.legend(loc="upper left")
    if series.share:
        ax_share.stackplot(x, *series.share.values(), labels=list(series.share))
        ax_share.legend(loc="upper left")
    ax_share.set_ylabel("share of successes")
    ax_share.set_ylim(0, 1)
    ax_share.set_xlabel(f"seconds since {series.t0:.0f}")
    for ax in (ax_ttft, ax_err, ax_share):
        for window in windows:
            ax.axvspan(window.start - series.t0, window.end - series.t0, color="tab:orange", alpha=0.2)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(result: RunResult, out_dir: Path) -> list[Path]:
    """Write result.json, summary.md and (when there is a series) timeline.png into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_result_json(result, out_dir)]
    summary = out_dir / "summary.md"
    summary.write_text(render_summary(result), encoding="utf-8")
    written.append(summary)
    if result.series is not None:
        written.append(write_timeline_png(result.series, result.windows, out_dir / "timeline.png"))
    return written
