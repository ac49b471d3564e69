"""The agent's decisions, as pure functions of what it read and the time: no I/O, no clock.

What a service's state means (`classify`), from systemd's view of its unit and its health check:

============================================  ============  ==========================================
unit state (``systemctl show``)               condition     what the agent does
============================================  ============  ==========================================
LoadState not ``loaded`` (not-found, masked)  MISSING       nothing; reported down
``active``, health check passes (or none)     HEALTHY       resets its failure count and back-off
``active``, check fails, within the start     STARTING      nothing yet (a model still loading)
grace and not yet healthy since this start
``active``, check fails otherwise             UNHEALTHY     counts a failure
``activating``, ``deactivating``, ...         TRANSITION    nothing: systemd is at work (start,
                                                            stop, or its own Restart= pending)
``failed``, or ``inactive`` with a Result     CRASHED       counts a failure
other than ``success`` (signal, exit-code,
core-dump, watchdog, timeout, ...)
``inactive`` with Result ``success``          STOPPED       nothing: stopped on purpose
``systemctl show`` itself failed              UNKNOWN       nothing: no verdict without a reading
============================================  ============  ==========================================

The deliberate-stop rule: ``systemctl stop`` leaves a unit inactive with Result=success, and
so does a main process that exits cleanly by itself (systemd counts exit 0 and SIGTERM, SIGINT,
SIGHUP, SIGPIPE as clean); the agent leaves both alone, exactly as systemd's own
``Restart=on-failure`` would. A unit whose process was killed (SIGKILL: Result=signal, state
failed) or exited with an error is brought back, and so is one that runs but fails its health
check. The agent never starts a unit that was never started.

The restart budget (`RestartTrack.decide`), per service: after `failure_threshold` failed checks
in a row, restart; the k-th restart since the service last passed a check waits
``backoff_s * 2**(k-1)`` after the one before (the first does not wait); at most
`max_per_hour` restarts in any sliding hour. Past that the service is left as it is and marked
budget-exhausted (one ``budget_exhausted`` action, then silence) until the hour slides or it
passes a check. Since the back-off keeps doubling until a check passes, a service that never
comes back is restarted ever more rarely: it never flaps forever.

Thermal draining (`GpuThermal.step`), per GPU: above `limit_c` the engines on that GPU are
drained; they come back only after the GPU stayed below `resume_c` for `hold_s` without a break
(hysteresis: between the two temperatures nothing changes, so no flapping).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

# The actions the agent takes, as counted in aiswarm_agent_actions_total{action}.
RESTART, DRAIN, UNDRAIN, BUDGET_EXHAUSTED = "restart", "drain", "undrain", "budget_exhausted"
HOUR_S = 3600.0


class Condition(Enum):
    HEALTHY = "healthy"
    STARTING = "starting"
    UNHEALTHY = "unhealthy"
    TRANSITION = "transition"
    CRASHED = "crashed"
    STOPPED = "stopped"
    MISSING = "missing"
    UNKNOWN = "unknown"

    @property
    def failing(self) -> bool:
        return self in (Condition.UNHEALTHY, Condition.CRASHED)


@dataclass(frozen=True)
class UnitState:
    """What ``systemctl show`` says of a unit. `active_enter_s`: CLOCK_MONOTONIC seconds of its
    last start (Python's time.monotonic() on Linux), None when never started or not known."""

    load_state: str
    active_state: str
    sub_state: str = ""
    result: str = "success"
    active_enter_s: float | None = None


@dataclass(frozen=True)
class Action:
    """One thing the agent did. `reason` is a short code (a metric label); `detail` says why in words."""

    service: str
    action: str
    reason: str
    detail: str


def classify(
    unit: UnitState, healthy: bool | None, now: float, grace_s: float, healthy_start: float | None
) -> Condition:
    """The condition of a service (see the module docstring).

    `healthy`: its health check's verdict, None when it has no health URL (then ``active`` is
    healthy). `healthy_start`: the `active_enter_s` of the start in which it last passed a check.
    """
    if unit.load_state != "loaded":
        return Condition.MISSING
    if unit.active_state == "active":
        if healthy is None or healthy:
            return Condition.HEALTHY
        started = unit.active_enter_s
        if started is not None and started != healthy_start and now - started < grace_s:
            return Condition.STARTING
        return Condition.UNHEALTHY
    if unit.active_state == "failed":
        return Condition.CRASHED
    if unit.active_state == "inactive":
        return Condition.STOPPED if unit.result == "success" else Condition.CRASHED
    return Condition.TRANSITION


@dataclass(frozen=True)
class RestartPolicy:
    failure_threshold: int
    max_per_hour: int
    backoff_s: float
    window_s: float = HOUR_S


@dataclass
class RestartTrack:
    """The restart budget of one service, and its failure count."""

    policy: RestartPolicy
    failures: int = 0
    restarts: list[float] = field(default_factory=list)  # times of the restarts in the window
    streak: int = 0  # restarts since the service last passed a check
    last_restart: float | None = None
    exhausted: bool = False
    healthy_start: float | None = None  # active_enter_s of the start in which it last passed a check

    def delay_s(self) -> float:
        """How long after the last restart the next one may come."""
        return 0.0 if self.streak == 0 else self.policy.backoff_s * 2 ** (self.streak - 1)

    def decide(
        self, service: str, condition: Condition, now: float, may_restart: bool, unit: UnitState
    ) -> Action | None:
        """Record one check's condition; return the action to take now, if any."""
        if condition is Condition.HEALTHY:
            self.failures, self.streak, self.exhausted = 0, 0, False
            self.healthy_start = unit.active_enter_s
            return None
        if condition is Condition.STOPPED:
            self.failures, self.exhausted = 0, False
            return None
        if not condition.failing:
            return None
        self.failures += 1
        if not may_restart or self.failures < self.policy.failure_threshold:
            return None
        self.restarts = [t for t in self.restarts if now - t < self.policy.window_s]
        what = _failure_words(condition, unit, self.failures)
        if len(self.restarts) >= self.policy.max_per_hour:
            if self.exhausted:
                return None
            self.exhausted = True
            next_at = self.restarts[0] + self.policy.window_s - now
            return Action(
                service, BUDGET_EXHAUSTED, condition.value,
                f"{what}; {len(self.restarts)} restarts in the last hour (the most allowed): left as it is, "
                f"no restart before {next_at:.0f} s from now",
            )  # fmt: skip
        self.exhausted = False
        if self.last_restart is not None and now - self.last_restart < self.delay_s():
            return None
        self.restarts.append(now)
        self.last_restart = now
        self.streak += 1
        self.failures = 0
        return Action(
            service, RESTART, condition.value,
            f"{what}; restart {len(self.restarts)} of at most {self.policy.max_per_hour} an hour",
        )  # fmt: skip


def _failure_words(condition: Condition, unit: UnitState, failures: int) -> str:
    if condition is Condition.CRASHED:
        return f"unit {unit.active_state} (result {unit.result}) for {failures} checks in a row"
    return f"health check failed {failures} times in a row"


@dataclass(frozen=True)
class ThermalPolicy:
    limit_c: float
    resume_c: float
    hold_s: float


@dataclass
class GpuThermal:
    """Hysteresis of one GPU: `hot` from above the limit until below resume for the hold time."""

    policy: ThermalPolicy
    hot: bool = False
    cool_since: float | None = None

    def step(self, temperature_c: float | None, now: float) -> bool | None:
        """Record a reading; True when the GPU just turned hot, False when it just cooled down,
        None otherwise (including a reading NVML could not give: no evidence, no change)."""
        if temperature_c is None:
            return None
        if not self.hot:
            if temperature_c > self.policy.limit_c:
                self.hot, self.cool_since = True, None
                return True
            return None
        if temperature_c >= self.policy.resume_c:
            self.cool_since = None
            return None
        if self.cool_since is None:
            self.cool_since = now
        if now - self.cool_since >= self.policy.hold_s:
            self.hot, self.cool_since = False, None
            return False
        return None


@dataclass(frozen=True)
class DrainSource:
    """Why a service drains: ``manual`` (an operator) or ``gpu<N>`` (that GPU is too hot)."""

    reason: str
    since: float  # epoch seconds


@dataclass
class DrainState:
    """The reasons one engine drains; it drains while it has any."""

    sources: dict[str, DrainSource] = field(default_factory=dict)

    @property
    def draining(self) -> bool:
        return bool(self.sources)

    def add(self, key: str, source: DrainSource) -> bool:
        """Add or replace a reason; True when the engine starts draining."""
        started = not self.sources
        self.sources[key] = source
        return started

    def remove(self, key: str) -> bool:
        """Drop a reason; True when the engine stops draining."""
        if self.sources.pop(key, None) is None:
            return False
        return not self.sources
