"""Alert gates of a chaos run: did the fault's alert reach the receiver, and how soon.

The lab's Alertmanager notifies `aiswarm_loadtest.alertsink` (a test instrument on the lab host);
`AlertSink` reads what it recorded. Time to detect runs from the fault's start to the first firing
notification of the expected alert (with the scenario's labels) received after it; time to resolve
from the rollback to the first resolved notification received after that firing one. Both clocks
are this machine's: the sink stamps each notification with `time.time()` when it arrives.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiswarm_loadtest.chaos.analysis import Gate
from aiswarm_loadtest.chaos.scenario import AlertExpect


class AlertSinkError(RuntimeError):
    """The receiver could not be read."""


class AlertSink:
    """Reads the notifications the lab's alert sink recorded (`GET /alerts`)."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def notifications(self, since: float, alertname: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"since": f"{since:.3f}", "alertname": alertname})
        try:
            with urllib.request.urlopen(f"{self.url}/alerts?{query}", timeout=self.timeout_s) as response:
                return list(json.loads(response.read())["alerts"])
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            raise AlertSinkError(f"cannot read the alert sink at {self.url}/alerts: {exc}") from exc

    def check(self) -> str | None:
        """None when the sink answers, else what is wrong (for the plan, before any fault)."""
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=self.timeout_s) as response:
                return None if response.status == 200 else f"alert sink {self.url}: HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            return f"alert sink {self.url} does not answer ({exc}); is the lab up (lab/lab.py up)?"


@dataclass
class AlertTimes:
    fired_at: float | None = None
    resolved_at: float | None = None
    detect_s: float | None = None
    resolve_s: float | None = None
    notifications: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "fired_at": self.fired_at,
            "resolved_at": self.resolved_at,
            "detect_s": self.detect_s,
            "resolve_s": self.resolve_s,
            "notifications": self.notifications,
        }


def _matches(record: dict[str, Any], expect: AlertExpect) -> bool:
    labels = record.get("labels") or {}
    return record.get("alertname") == expect.fires and all(labels.get(k) == v for k, v in expect.labels)


def alert_times(
    records: Iterable[dict[str, Any]], expect: AlertExpect, fault_start: float, fault_end: float
) -> AlertTimes:
    """When the expected alert fired and resolved at the receiver, relative to the fault."""
    relevant = sorted(
        (r for r in records if _matches(r, expect) and float(r.get("received", 0)) >= fault_start),
        key=lambda r: float(r["received"]),
    )
    times = AlertTimes(notifications=len(relevant))
    firing = [r for r in relevant if r.get("status") == "firing"]
    if not firing:
        return times
    times.fired_at = float(firing[0]["received"])
    times.detect_s = round(times.fired_at - fault_start, 2)
    resolved = [
        r for r in relevant if r.get("status") == "resolved" and float(r["received"]) >= times.fired_at
    ]
    if resolved:
        times.resolved_at = float(resolved[0]["received"])
        times.resolve_s = round(max(0.0, times.resolved_at - fault_end), 2)
    return times


def wait_for_alert(
    sink: AlertSink,
    expect: AlertExpect,
    fault_start: float,
    fault_end: float,
    deadline: float,
    now: Callable[[], float],
    sleep: Callable[[float], None],
) -> AlertTimes:
    """Poll the sink until the alert fired and resolved, or the deadline passed."""
    while True:
        times = alert_times(sink.notifications(fault_start, expect.fires), expect, fault_start, fault_end)
        if times.resolved_at is not None or now() >= deadline:
            return times
        sleep(min(2.0, max(0.0, deadline - now())))


def alert_gates(expect: AlertExpect, times: AlertTimes | None, reason: str | None = None) -> list[Gate]:
    """The alert gates: it must fire (within `detect_within_s`) and resolve (within `resolve_within_s`)."""
    labels = ", ".join(f"{k}={v}" for k, v in expect.labels)
    name = expect.fires + (f"{{{labels}}}" if labels else "")
    if times is None:
        return [Gate("alert_fires", True, None, False, f"{name} not measured: {reason}")]
    gates = []
    if times.detect_s is None:
        gates.append(Gate("alert_fires", True, False, False, f"{name} never reached the receiver"))
    else:
        bound = expect.detect_within_s
        ok = bound is None or times.detect_s <= bound
        gates.append(
            Gate(
                "alert_detect_within_s",
                bound if bound is not None else True,
                times.detect_s,
                ok,
                f"{name} fired {times.detect_s:.1f} s after the fault started"
                + ("" if bound is None else f" (bound {bound:g} s)"),
            )
        )
    if expect.resolve_within_s is not None:
        if times.resolve_s is None:
            gates.append(
                Gate(
                    "alert_resolve_within_s",
                    expect.resolve_within_s,
                    None,
                    False,
                    f"{name} was not resolved at the receiver within {expect.resolve_within_s:g} s "
                    "of the rollback",
                )
            )
        else:
            gates.append(
                Gate(
                    "alert_resolve_within_s",
                    expect.resolve_within_s,
                    times.resolve_s,
                    times.resolve_s <= expect.resolve_within_s,
                    f"{name} resolved {times.resolve_s:.1f} s after the rollback "
                    f"(bound {expect.resolve_within_s:g} s)",
                )
            )
    return gates
