"""The agent's loop: read, decide (`aiswarm.agent.decide`), act, and keep what /metrics, /health
and /v1/drain show. Every reader and the clocks are injected, so tests drive it tick by tick.

Every action is one JSON line on stderr (the journal) with its reason, e.g.::

    {"event": "action", "service": "vllm", "action": "drain", "reason": "gpu_temperature",
     "detail": "GPU 0 (NVIDIA GeForce RTX 4090) at 86 °C, above the limit 83 °C"}

Other events (no GPU, a unit systemd does not know, a reading that failed) are logged once when
they start, not at every check.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiswarm.agent import probes
from aiswarm.agent.config import Config, ServiceSpec
from aiswarm.agent.decide import (
    DRAIN,
    RESTART,
    UNDRAIN,
    Action,
    Condition,
    DrainSource,
    DrainState,
    GpuThermal,
    RestartPolicy,
    RestartTrack,
    ThermalPolicy,
    UnitState,
    classify,
)

log = logging.getLogger("aiswarm.agent")
MANUAL = "manual"
DRAINS_FILE = "drains.json"
MAX_REASON_CHARS = 200


def emit(event: str, **fields: Any) -> None:
    """Log one JSON line (the journal keeps it; ``journalctl -u swarm-agent -o cat | jq`` reads it)."""
    log.info(json.dumps({"event": event, **fields}, ensure_ascii=False, default=str))


class UnknownService(KeyError):
    """No configured service has that name."""


class NotDrainable(ValueError):
    """The service is not an engine (no engine_api_base), so there is nothing to drain."""


@dataclass(frozen=True)
class ServiceView:
    """One service as the last check left it (for /metrics and /health)."""

    condition: Condition
    failures: int = 0
    exhausted: bool = False

    @property
    def up(self) -> bool:
        return self.condition is Condition.HEALTHY


@dataclass(frozen=True)
class Snapshot:
    """What the last check read and decided."""

    at: float  # monotonic
    gpu_report: dict[str, Any]
    host_temperatures: dict[str, float]
    services: dict[str, ServiceView] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One service's readings of one round: its unit (None: systemctl failed) and health check."""

    unit: UnitState | None
    healthy: bool | None = None
    detail: str = ""


class Agent:
    """See the module docstring; `tick` is one round, `run` the loop, the rest serves the API."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        systemctl: probes.Runner = probes.systemctl,
        read_gpus: Callable[[], dict[str, Any]] = probes.read_gpu_report,
        check_http: Callable[[str, float], tuple[bool, str]] = probes.check_http,
        host_temperatures: Callable[[], dict[str, float]] = probes.host_temperatures,
    ) -> None:
        self.config = config
        self.clock, self.wall = clock, wall
        self.systemctl, self.read_gpus, self.check_http = systemctl, read_gpus, check_http
        self.host_temperatures = host_temperatures
        self._lock = threading.RLock()
        policy = RestartPolicy(
            config.failure_threshold, config.restart_max_per_hour, config.restart_backoff_s
        )
        self.tracks = {s.name: RestartTrack(policy) for s in config.services}
        self.thermal_policy = ThermalPolicy(
            config.gpu_temperature_limit_c, config.gpu_resume_temperature_c, config.gpu_resume_hold_s
        )
        self.thermal: dict[int, GpuThermal] = {}
        self.drains = {s.name: DrainState() for s in config.services if s.drainable}
        self.actions: Counter[tuple[str, str, str]] = Counter()
        self.snapshot: Snapshot | None = None
        self._noted: dict[str, str] = {}  # condition key -> what was logged, so each is logged once
        self._load_manual_drains()

    # The loop ----------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Check every `check_interval_s` until `stop` is set."""
        while not stop.is_set():
            started = self.clock()
            try:
                self.tick()
            except Exception:  # pylint: disable=broad-exception-caught  # the watch must outlive any surprise
                log.exception("swarm agent: a check round failed")
            stop.wait(max(0.0, self.config.check_interval_s - (self.clock() - started)))

    def tick(self) -> list[Action]:
        """One round: read everything, decide, act. Returns the actions taken."""
        report = self._gpu_report()
        temperatures = self._host_temperatures()
        checks = self._checks()
        now = self.clock()
        actions: list[Action] = []
        with self._lock:
            views = {}
            for spec in self.config.services:
                action, views[spec.name] = self._decide_service(spec, checks[spec.name], now)
                if action is not None:
                    actions.append(action)
            actions += self._decide_thermal(report, now)
            self.snapshot = Snapshot(now, report, temperatures, views)
            for action in actions:
                self._record(action)
        for action in actions:
            if action.action == RESTART:
                self._restart(self._spec(action.service), checks[action.service].unit)
        return actions

    def _checks(self) -> dict[str, Check]:
        services = self.config.services
        if not services:
            return {}
        with ThreadPoolExecutor(max_workers=min(8, len(services)), thread_name_prefix="agent-check") as pool:
            return dict(zip((s.name for s in services), pool.map(self._check, services), strict=True))

    def _check(self, spec: ServiceSpec) -> Check:
        try:
            unit = probes.unit_state(self.systemctl, spec.unit)
        except probes.ProbeError as exc:
            self._note(f"unit:{spec.name}", "systemctl_error", service=spec.name, error=str(exc))
            return Check(None)
        if spec.health_url is None or unit.active_state != "active":
            return Check(unit)
        healthy, detail = self.check_http(spec.health_url, self.config.health_timeout_s)
        return Check(unit, healthy, detail)

    def _decide_service(
        self, spec: ServiceSpec, check: Check, now: float
    ) -> tuple[Action | None, ServiceView]:
        track = self.tracks[spec.name]
        if check.unit is None:
            return None, ServiceView(Condition.UNKNOWN, track.failures, track.exhausted)
        self._forget(f"unit:{spec.name}")
        condition = classify(check.unit, check.healthy, now, spec.start_grace_s, track.healthy_start)
        if condition is Condition.MISSING:
            self._note(f"missing:{spec.name}", "unit_missing", service=spec.name, unit=spec.unit,
                       load_state=check.unit.load_state)  # fmt: skip
        else:
            self._forget(f"missing:{spec.name}")
        action = track.decide(spec.name, condition, now, spec.restart, check.unit)
        if action is not None and condition is Condition.UNHEALTHY and check.detail:
            action = Action(
                action.service, action.action, action.reason, f"{action.detail} (last: {check.detail})"
            )
        return action, ServiceView(condition, track.failures, track.exhausted)

    def _decide_thermal(self, report: dict[str, Any], now: float) -> list[Action]:
        actions = []
        policy = self.thermal_policy
        for gpu in report.get("gpus") or []:
            index = int(gpu["index"])
            change = self.thermal.setdefault(index, GpuThermal(policy)).step(gpu.get("temperature_c"), now)
            if change is None:
                continue
            where = f"GPU {index} ({gpu.get('name') or 'unnamed'})"
            if change:
                detail = f"{where} at {gpu['temperature_c']} °C, above the limit {policy.limit_c:g} °C"
            else:
                detail = (
                    f"{where} below {policy.resume_c:g} °C for {policy.hold_s:g} s"
                    f" (now {gpu['temperature_c']} °C)"
                )
            emit("gpu_hot" if change else "gpu_cooled", gpu=index, detail=detail)
            for spec in self._engines_on(index):
                state = self.drains[spec.name]
                if change and state.add(f"gpu{index}", DrainSource(detail, self.wall())):
                    actions.append(Action(spec.name, DRAIN, "gpu_temperature", detail))
                elif not change and state.remove(f"gpu{index}"):
                    actions.append(Action(spec.name, UNDRAIN, "gpu_cooled", detail))
        return actions

    def _engines_on(self, index: int) -> Iterable[ServiceSpec]:
        return (s for s in self.config.services if s.drainable and (s.gpus is None or index in s.gpus))

    def _restart(self, spec: ServiceSpec, unit: UnitState | None) -> None:
        """``systemctl restart --no-block`` (after ``reset-failed`` for a failed unit, whose start
        rate limit would refuse it): the loop does not wait for a slow start; the next checks see it."""
        steps = (
            [["reset-failed", "--", spec.unit]] if unit is not None and unit.active_state == "failed" else []
        )
        for argv in [*steps, ["restart", "--no-block", "--", spec.unit]]:
            rc, out = self.systemctl(argv)
            if rc != 0:
                command = f"systemctl {' '.join(argv)}"
                emit(
                    "restart_failed",
                    service=spec.name,
                    unit=spec.unit,
                    command=command,
                    status=rc,
                    error=out[:500],
                )
                return

    def _record(self, action: Action) -> None:
        self.actions[(action.service, action.action, action.reason)] += 1
        emit(
            "action", service=action.service, action=action.action, reason=action.reason, detail=action.detail
        )

    def _note(self, key: str, event: str, **fields: Any) -> None:
        text = json.dumps(fields, sort_keys=True, default=str)
        if self._noted.get(key) != text:
            self._noted[key] = text
            emit(event, **fields)

    def _forget(self, key: str) -> None:
        self._noted.pop(key, None)

    def _gpu_report(self) -> dict[str, Any]:
        try:
            report = self.read_gpus()
        except Exception as exc:  # pylint: disable=broad-exception-caught  # a broken driver must not stop the watch
            report = {
                "gpus": [],
                "count": 0,
                "reason": f"reading the GPUs failed: {type(exc).__name__}: {exc}",
            }
        if report.get("reason"):
            self._note("gpus", "gpu_unavailable" if not report.get("gpus") else "gpu_partial",
                       reason=report["reason"], gpus=len(report.get("gpus") or []))  # fmt: skip
        else:
            self._forget("gpus")
        return report

    def _host_temperatures(self) -> dict[str, float]:
        try:
            return self.host_temperatures()
        except OSError as exc:
            self._note("hwmon", "host_sensors_unreadable", error=str(exc))
            return {}

    # What the API serves -------------------------------------------------------------------------

    def _spec(self, name: str) -> ServiceSpec:
        spec = self.config.service(name)
        if spec is None:
            raise UnknownService(name)
        return spec

    def _drain_state(self, name: str) -> tuple[ServiceSpec, DrainState]:
        spec = self._spec(name)
        if not spec.drainable:
            raise NotDrainable(name)
        return spec, self.drains[name]

    def drain(self, name: str, reason: str) -> dict[str, Any]:
        """An operator drains `name` (`reason` in words); the entry as /v1/drain lists it."""
        reason = "".join(c for c in reason if c.isprintable())[:MAX_REASON_CHARS] or "drained by an operator"
        with self._lock:
            spec, state = self._drain_state(name)
            if state.add(MANUAL, DrainSource(f"manual: {reason}", self.wall())):
                self._record(Action(name, DRAIN, MANUAL, reason))
            self._save_manual_drains()
            return self._entry(spec, state)

    def undrain(self, name: str) -> dict[str, Any]:
        """An operator lifts their drain of `name`; a GPU that is still hot keeps it draining."""
        with self._lock:
            spec, state = self._drain_state(name)
            lifted = MANUAL in state.sources
            if state.remove(MANUAL):
                self._record(Action(name, UNDRAIN, MANUAL, "undrained by an operator"))
            self._save_manual_drains()
            if state.draining:
                if lifted:
                    emit(
                        "manual_drain_lifted", service=name, still_draining=self._entry(spec, state)["reason"]
                    )
                return {**self._entry(spec, state), "draining": True}
            return {"service": name, "api_base": spec.engine_api_base, "draining": False}

    def draining(self) -> list[dict[str, Any]]:
        """Every draining engine, as ``GET /v1/drain`` lists it."""
        with self._lock:
            return [
                self._entry(self._spec(name), state) for name, state in self.drains.items() if state.draining
            ]

    @staticmethod
    def _entry(spec: ServiceSpec, state: DrainState) -> dict[str, Any]:
        sources = sorted(state.sources.values(), key=lambda s: s.since)
        return {
            "service": spec.name,
            "api_base": spec.engine_api_base,
            "reason": "; ".join(s.reason for s in sources),
            "since": sources[0].since,
        }

    def health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of ``GET /health``: 503 before the first round or when the loop stalls."""
        with self._lock:
            snapshot = self.snapshot
        if snapshot is None:
            return 503, {"status": "starting"}
        age = self.clock() - snapshot.at
        stale = (
            age > 3 * self.config.check_interval_s + self.config.health_timeout_s + probes.SYSTEMCTL_TIMEOUT_S
        )
        return (503 if stale else 200), {
            "status": "stalled" if stale else "ok",
            "last_check_s": round(age, 3),
            "gpus": len(snapshot.gpu_report.get("gpus") or []),
            "gpu_reason": snapshot.gpu_report.get("reason"),
            "services": {name: view.condition.value for name, view in snapshot.services.items()},
        }

    def metrics_view(self) -> tuple[Snapshot | None, dict[tuple[str, str, str], int], dict[str, bool]]:
        """What /metrics shows: the last round, the action counts and who drains now."""
        with self._lock:
            return self.snapshot, dict(self.actions), {n: s.draining for n, s in self.drains.items()}

    # Operators' drains survive a restart of the agent ------------------------------------------------

    def _load_manual_drains(self) -> None:
        path = self.config.state_dir / DRAINS_FILE
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            emit("drains_unreadable", path=str(path), error=str(exc))
            return
        for name, entry in (saved if isinstance(saved, dict) else {}).items():
            if name in self.drains and isinstance(entry, dict):
                since = entry.get("since")
                self.drains[name].add(
                    MANUAL, DrainSource(str(entry.get("reason", "manual")), float(since or self.wall()))
                )
                emit("drain_restored", service=name, reason=entry.get("reason"))

    def _save_manual_drains(self) -> None:
        saved = {
            name: {"reason": s.sources[MANUAL].reason, "since": s.sources[MANUAL].since}
            for name, s in self.drains.items()
            if MANUAL in s.sources
        }
        path: Path = self.config.state_dir / DRAINS_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(saved, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(temporary, path)
        except OSError as exc:
            emit("drains_not_saved", path=str(path), error=str(exc))
