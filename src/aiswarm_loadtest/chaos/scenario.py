"""Chaos scenarios as data: the schema, its validation and the expansion of named faults.

A scenario is one YAML file. `load_scenario` reads it and returns a frozen `Scenario`, or raises
`ScenarioError` listing every problem at once, each as `<file>: <field path>: expected ..., got ...`.
Nothing here touches a service: validation runs before the runner plans or injects anything.

Service names are either literal systemd unit names or `${variable}` references resolved from a
services map (`DEFAULT_SERVICES`, overridable by the runner), so one scenario fits every inventory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SERVICE_KINDS = ("stop_service", "kill_service", "freeze_service", "restart_service")
NETWORK_KINDS = ("net_latency", "net_loss")
NODE_KINDS = ("partition_node", "stop_node")
# Posts a state to a stand-in provider's admin endpoint (aiswarm_loadtest.refbackend) from the node.
STANDIN_KINDS = ("standin_state",)
BASE_KINDS = SERVICE_KINDS + NETWORK_KINDS + NODE_KINDS + STANDIN_KINDS

# Named conveniences: kind -> (base kind, default service, default group).
CONVENIENCES: dict[str, tuple[str, str, str]] = {
    "stop_redis": ("stop_service", "${redis}", "gateway"),
    "stop_postgresql": ("stop_service", "${postgresql}", "gateway"),
    "restart_gateway": ("restart_service", "${gateway}", "gateway"),
}
FAULT_KINDS = BASE_KINDS + tuple(CONVENIENCES)

# What undoes each base kind ("auto" picks the first); "none" leaves healing to the service manager.
ROLLBACKS: dict[str, tuple[str, ...]] = {
    "stop_service": ("start_service",),
    "kill_service": ("start_service", "none"),
    "freeze_service": ("continue_service",),
    "restart_service": ("start_service", "none"),
    "net_latency": ("clear_netem",),
    "net_loss": ("clear_netem",),
    "partition_node": ("reconnect_node",),
    "stop_node": ("start_node",),
    "standin_state": ("restore_standin",),
}

DEFAULT_SERVICES: dict[str, str] = {
    "inference_engine": "vllm",
    "fallback_engine": "llamacpp",
    "gateway": "litellm",
    "redis": "redis-server",
    "postgresql": "postgresql",
    "litellm_db": "litellm",
}

KILL_SIGNALS = ("KILL", "TERM", "ABRT", "SEGV", "INT", "QUIT")
PICKS = ("first", "all")
DATA_COMPARES = ("equal", "not_less")
LOSS_METHODS = ("netem", "iptables")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_UNIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._-]*$")
_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_IFACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$")
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
_URL_RE = re.compile(r"^https?://[A-Za-z0-9.\[\]:-]+(/\S*)?$")


class ScenarioError(ValueError):
    """Every problem found in one or more scenario files."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Probe:
    path: str = "/v1/models"
    expect_status: int = 200


@dataclass(frozen=True)
class SteadyState:
    """The hypothesis that must hold before a fault is injected."""

    max_error_rate: float
    window_s: float
    max_ttft_p95_ms: float | None = None
    probe: Probe = field(default_factory=Probe)


@dataclass(frozen=True)
class Load:
    users: int
    spawn_rate: float
    user_class: str | None = None
    tags: tuple[str, ...] = ()
    noisy_clients: int = 0  # clients sending malformed and oversized requests beside the users
    model: str | None = None  # the model the users ask for; wins over the runner's --locust-arg


@dataclass(frozen=True)
class Target:
    """Where a fault lands: one named host, or the first (or every) host of an inventory group."""

    host: str | None = None
    group: str | None = None
    pick: str = "first"
    service: str | None = None


@dataclass(frozen=True)
class FaultParams:
    latency_ms: int | None = None
    jitter_ms: int = 0
    loss_pct: float | None = None
    signal: str = "KILL"
    # kill_service: "unit" keeps the unit's own Restart= policy; "none" turns it off for the fault
    # (a runtime drop-in), so only the swarm agent can bring the service back.
    restart_policy: str = "unit"
    interface: str = "eth0"
    method: str = "netem"  # net_loss: tc netem, or iptables' statistic match (kernels without netem)
    admin_url: str = ""  # standin_state: the stand-in's base URL, as the target node reaches it
    state: str = ""  # standin_state: the JSON posted to <admin_url>/_admin/state at injection
    restore: str = '{"reset": true}'  # standin_state: the JSON posted at rollback


@dataclass(frozen=True)
class Fault:
    kind: str  # a base kind (conveniences are expanded)
    target: Target
    duration_s: float
    params: FaultParams = field(default_factory=FaultParams)
    requested_kind: str = ""  # the kind as written, e.g. stop_redis


@dataclass(frozen=True)
class Expect:
    failover_within_s: float | None = None
    failback_within_s: float | None = None
    recover_within_s: float | None = None
    max_failed_requests: int | None = None
    max_broken_streams: int | None = None
    max_hung_routing_s: float | None = None
    max_error_rate_during_fault: float | None = None
    max_service_gap_s: float | None = None  # longest time without a successful answer, from the fault on
    max_empty_responses: int | None = None  # successes that carried no text
    max_ttft_p95_during_fault_ms: float | None = None  # the users' first-token p95 while the fault lasts
    max_noisy_unexpected: int | None = None  # noisy clients' requests not refused as they should be
    data_loss: bool | None = None
    # The killed service is active again, brought back by something on its node (the swarm agent),
    # within this many seconds of the fault's start, before any rollback touches it.
    self_heal_within_s: float | None = None


@dataclass(frozen=True)
class AlertExpect:
    """The alert the fault must raise at the lab's receiver, and how soon it must fire and resolve.

    `fires` is an alert name of the swarm's Prometheus rules; `labels` narrow it (for example
    `{job: vllm}`), so another alert of the same name does not count. Time to detect runs from the
    fault's start to the first firing notification received; time to resolve from the rollback to
    the first resolved notification after it.
    """

    fires: str
    labels: tuple[tuple[str, str], ...] = ()
    detect_within_s: float | None = None
    resolve_within_s: float | None = None


@dataclass(frozen=True)
class Timeline:
    warmup_s: float
    fault_at_s: float
    observe_after_restore_s: float

    def total_s(self, duration_s: float) -> float:
        """How long the load must run to cover warm-up, fault and observation."""
        return self.fault_at_s + duration_s + self.observe_after_restore_s


@dataclass(frozen=True)
class DataCheck:
    """A read-only command run on a node before the fault and after recovery; outputs are compared.

    `seed`, when set, runs once first (after the steady state was met) to write a canary that
    `argv` then reads, so the check does not depend on what the load happens to write.
    """

    target: Target
    argv: tuple[str, ...]
    compare: str = "equal"
    seed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    steady_state: SteadyState
    load: Load
    fault: Fault
    rollback: str  # a concrete action from ROLLBACKS, or "none"
    expect: Expect
    timeline: Timeline
    data_check: DataCheck | None = None
    primary_backend: str | None = None
    source: str = ""
    also: tuple[Fault, ...] = ()  # further faults, injected and rolled back (auto) with `fault`
    alert: AlertExpect | None = None


_MISSING = object()


class _Checker:
    """Reads untrusted mappings field by field, collecting errors instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []

    def error(self, path: str, expected: str, got: Any = _MISSING) -> None:
        where = f"{self.source}: {path}:" if path else f"{self.source}:"
        if got is _MISSING:
            self.errors.append(f"{where} required field missing (expected {expected})")
        else:
            self.errors.append(f"{where} expected {expected}, got {got!r}")

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.error(path, "a mapping", value)
            return {}
        for key in value:
            if key not in allowed:
                known = ", ".join(allowed) or "none here"
                self.errors.append(
                    f"{self.source}: {f'{path}.{key}'.lstrip('.')}: unknown field (known: {known})"
                )
        return value

    def number(
        self,
        data: dict[str, Any],
        key: str,
        path: str,
        *,
        low: float | None = None,
        high: float | None = None,
        above: float | None = None,
        integer: bool = False,
        default: Any = _MISSING,
    ) -> Any:
        where = f"{path}.{key}".lstrip(".")
        kind = "an integer" if integer else "a number"
        bounds = []
        if above is not None:
            bounds.append(f"> {above:g}")
        if low is not None:
            bounds.append(f">= {low:g}")
        if high is not None:
            bounds.append(f"<= {high:g}")
        expected = f"{kind} {' and '.join(bounds)}".strip()
        if key not in data:
            if default is _MISSING:
                self.error(where, expected)
                return None
            return default
        value = data[key]
        ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type:
            self.error(where, expected, value)
            return None
        too_low = (low is not None and value < low) or (above is not None and value <= above)
        if too_low or (high is not None and value > high):
            self.error(where, expected, value)
            return None
        return value

    def string(
        self,
        data: dict[str, Any],
        key: str,
        path: str,
        *,
        pattern: re.Pattern[str] | None = None,
        expected: str = "a non-empty string",
        default: Any = _MISSING,
    ) -> Any:
        where = f"{path}.{key}".lstrip(".")
        if key not in data:
            if default is _MISSING:
                self.error(where, expected)
            return None if default is _MISSING else default
        value = data[key]
        if not isinstance(value, str) or not value.strip() or (pattern and not pattern.match(value)):
            self.error(where, expected, value)
            return None
        return value

    def choice(
        self, data: dict[str, Any], key: str, path: str, options: tuple[str, ...], default: Any = _MISSING
    ):
        expected = f"one of {', '.join(options)}"
        where = f"{path}.{key}".lstrip(".")
        if key not in data:
            if default is _MISSING:
                self.error(where, expected)
                return None
            return default
        if data[key] not in options:
            self.error(where, expected, data[key])
            return None
        return data[key]

    def boolean(self, data: dict[str, Any], key: str, path: str) -> bool | None:
        if key not in data:
            return None
        if not isinstance(data[key], bool):
            self.error(f"{path}.{key}", "true or false", data[key])
            return None
        return data[key]

    def strings(
        self, data: dict[str, Any], key: str, path: str, *, required: bool = False
    ) -> tuple[str, ...]:
        where = f"{path}.{key}".lstrip(".")
        if key not in data:
            if required:
                self.error(where, "a non-empty list of strings")
            return ()
        value = data[key]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            self.error(where, "a non-empty list of strings", value)
            return ()
        return tuple(value)


def resolve_variables(text: str, services: Mapping[str, str]) -> str:
    """Replace `${name}` references with values from the services map (KeyError names a missing one)."""
    return _VAR_RE.sub(lambda m: services[m.group(1)], text)


def _resolve(check: _Checker, text: str, path: str, services: Mapping[str, str]) -> str | None:
    missing = [name for name in _VAR_RE.findall(text) if name not in services]
    if missing:
        check.error(
            path,
            f"a unit name, or ${{variable}} from the services map ({', '.join(sorted(services))})",
            text,
        )
        return None
    return resolve_variables(text, services)


def _target(check: _Checker, raw: Any, path: str, services: Mapping[str, str], defaults: dict[str, str]):
    data = check.mapping(raw if raw is not None else {}, path, ("host", "group", "pick", "service"))
    merged = {**defaults, **data}
    if "host" in data and "group" not in data:
        merged.pop("group", None)  # an explicit host replaces a convenience's default group
    host, group = merged.get("host"), merged.get("group")
    if (host is None) == (group is None):
        check.error(
            path, "exactly one of host or group", {k: v for k, v in data.items() if k in ("host", "group")}
        )
    if host is not None and not (isinstance(host, str) and _HOST_RE.match(host)):
        check.error(f"{path}.host", "an inventory host name (letters, digits, . _ -)", host)
        host = None
    if group is not None and not (isinstance(group, str) and _HOST_RE.match(group)):
        check.error(f"{path}.group", "an inventory group name (letters, digits, . _ -)", group)
        group = None
    pick = check.choice(merged, "pick", path, PICKS, default="first")
    service = merged.get("service")
    if service is not None:
        if not isinstance(service, str):
            check.error(f"{path}.service", "a systemd unit name or ${variable}", service)
            service = None
        else:
            resolved = _resolve(check, service, f"{path}.service", services)
            if resolved is not None and not _UNIT_RE.match(resolved):
                check.error(f"{path}.service", "a systemd unit name (letters, digits, @ . _ -)", resolved)
                resolved = None
            service = resolved
    return Target(host=host, group=group, pick=pick or "first", service=service)


def _fault(
    check: _Checker, raw: Any, services: Mapping[str, str], path: str = "fault", duration: Any = _MISSING
) -> tuple[Fault | None, str | None]:
    keys = (
        ("kind", "target", "duration_s", "params") if duration is _MISSING else ("kind", "target", "params")
    )
    data = check.mapping(raw, path, keys)
    requested = check.choice(data, "kind", path, FAULT_KINDS)
    kind, defaults = requested, {}
    if requested in CONVENIENCES:
        kind, service, group = CONVENIENCES[requested]
        defaults = {"service": service, "group": group}
    target = _target(check, data.get("target"), f"{path}.target", services, defaults)
    minimum = 0.0 if kind == "restart_service" else None
    if duration is _MISSING:
        duration = check.number(data, "duration_s", path, low=minimum, above=None if minimum == 0 else 0)
    params = _params(check, data.get("params", {}), kind, f"{path}.params")
    raw_target = data.get("target") if isinstance(data.get("target"), dict) else {}
    if kind in SERVICE_KINDS and "service" not in raw_target and "service" not in defaults:
        check.error(f"{path}.target.service", f"a service name for {kind}")
    if kind in NETWORK_KINDS + NODE_KINDS + STANDIN_KINDS and "service" in raw_target:
        check.error(
            f"{path}.target.service",
            f"no service for {kind} (it acts on the whole node)",
            raw_target["service"],
        )
    if kind is None or duration is None or params is None:
        return None, kind
    return Fault(
        kind=kind, target=target, duration_s=float(duration), params=params, requested_kind=requested
    ), kind


def _json_state(check: _Checker, data: dict[str, Any], key: str, path: str, default: Any = _MISSING) -> Any:
    """A stand-in state as the JSON text to post: a mapping in the scenario."""
    where = f"{path}.{key}"
    if key not in data:
        if default is _MISSING:
            check.error(where, "a mapping posted to the stand-in's /_admin/state")
            return None
        return default
    if not isinstance(data[key], dict) or not data[key]:
        check.error(where, "a non-empty mapping posted to the stand-in's /_admin/state", data[key])
        return None
    return json.dumps(data[key], sort_keys=True, separators=(",", ":"))


def _params(check: _Checker, raw: Any, kind: str | None, path: str = "fault.params") -> FaultParams | None:
    allowed_by_kind = {
        "net_latency": ("latency_ms", "jitter_ms", "interface"),
        "net_loss": ("loss_pct", "interface", "method"),
        "kill_service": ("signal", "restart_policy"),
        "standin_state": ("admin_url", "state", "restore"),
    }
    allowed = allowed_by_kind.get(kind or "", ())
    errors_before = len(check.errors)
    data = check.mapping(raw, path, allowed) if allowed or raw else {}
    values: dict[str, Any] = {}
    if kind == "standin_state":
        values["admin_url"] = check.string(
            data, "admin_url", path, pattern=_URL_RE, expected="the stand-in's http(s) base URL"
        )
        values["state"] = _json_state(check, data, "state", path)
        values["restore"] = _json_state(check, data, "restore", path, default=FaultParams.restore)
    if kind == "net_latency":
        values["latency_ms"] = check.number(data, "latency_ms", path, above=0, high=60000, integer=True)
        values["jitter_ms"] = check.number(data, "jitter_ms", path, low=0, integer=True, default=0)
    if kind == "net_loss":
        values["loss_pct"] = check.number(data, "loss_pct", path, above=0, high=100)
        values["method"] = check.choice(data, "method", path, LOSS_METHODS, default="netem")
    if kind in NETWORK_KINDS:
        values["interface"] = check.string(
            data,
            "interface",
            path,
            pattern=_IFACE_RE,
            expected="a network interface name",
            default="eth0",
        )
    if kind == "kill_service":
        values["signal"] = check.choice(data, "signal", path, KILL_SIGNALS, default="KILL")
        values["restart_policy"] = check.choice(
            data, "restart_policy", path, ("unit", "none"), default="unit"
        )
    if len(check.errors) > errors_before:
        return None
    return FaultParams(**values)


def _steady_state(check: _Checker, raw: Any) -> SteadyState | None:
    data = check.mapping(raw, "steady_state", ("max_error_rate", "max_ttft_p95_ms", "window_s", "probe"))
    rate = check.number(data, "max_error_rate", "steady_state", low=0, high=1)
    window = check.number(data, "window_s", "steady_state", above=0)
    ttft = check.number(data, "max_ttft_p95_ms", "steady_state", above=0, default=None)
    probe_raw = check.mapping(data.get("probe", {}), "steady_state.probe", ("path", "expect_status"))
    path = check.string(
        probe_raw,
        "path",
        "steady_state.probe",
        pattern=re.compile(r"^/\S*$"),
        expected="a path starting with /",
        default="/v1/models",
    )
    status = check.number(
        probe_raw, "expect_status", "steady_state.probe", low=100, high=599, integer=True, default=200
    )
    if None in (rate, window, path, status):
        return None
    return SteadyState(max_error_rate=rate, window_s=window, max_ttft_p95_ms=ttft, probe=Probe(path, status))


def _load(check: _Checker, raw: Any) -> Load | None:
    data = check.mapping(raw, "load", ("users", "spawn_rate", "user_class", "tags", "noisy_clients", "model"))
    users = check.number(data, "users", "load", low=1, integer=True)
    rate = check.number(data, "spawn_rate", "load", above=0)
    user_class = check.string(
        data,
        "user_class",
        "load",
        pattern=re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$"),
        expected="a Python class name",
        default=None,
    )
    tags = check.strings(data, "tags", "load")
    noisy = check.number(data, "noisy_clients", "load", low=0, high=8, integer=True, default=0)
    model = check.string(
        data, "model", "load", pattern=_MODEL_RE, expected="a model group name", default=None
    )
    if users is None or rate is None or noisy is None:
        return None
    return Load(users=users, spawn_rate=rate, user_class=user_class, tags=tags, noisy_clients=int(noisy),
                model=model)  # fmt: skip


def _expect(check: _Checker, raw: Any) -> Expect:
    names = tuple(Expect.__dataclass_fields__)
    data = check.mapping(raw if raw is not None else {}, "expect", names)
    values: dict[str, Any] = {}
    for name in names:
        if name == "data_loss":
            values[name] = check.boolean(data, name, "expect")
        elif name.startswith("max_") and name.endswith(("requests", "streams", "responses", "unexpected")):
            values[name] = check.number(data, name, "expect", low=0, integer=True, default=None)
        elif name == "max_error_rate_during_fault":
            values[name] = check.number(data, name, "expect", low=0, high=1, default=None)
        else:
            values[name] = check.number(data, name, "expect", low=0, default=None)
    return Expect(**values)


def _timeline(check: _Checker, raw: Any) -> Timeline | None:
    data = check.mapping(raw, "timeline", ("warmup_s", "fault_at_s", "observe_after_restore_s"))
    warmup = check.number(data, "warmup_s", "timeline", low=0)
    fault_at = check.number(data, "fault_at_s", "timeline", above=0)
    observe = check.number(data, "observe_after_restore_s", "timeline", low=0)
    if warmup is not None and fault_at is not None and warmup > fault_at:
        check.error("timeline.warmup_s", f"a value <= timeline.fault_at_s ({fault_at:g})", warmup)
        return None
    if None in (warmup, fault_at, observe):
        return None
    return Timeline(warmup_s=warmup, fault_at_s=fault_at, observe_after_restore_s=observe)


def _data_check(check: _Checker, raw: Any, services: Mapping[str, str]) -> DataCheck | None:
    if raw is None:
        return None
    data = check.mapping(raw, "data_check", ("target", "seed", "argv", "compare"))
    target = _target(check, data.get("target"), "data_check.target", services, {})
    if target.service is not None:
        check.error(
            "data_check.target.service", "no service (data_check runs argv on the node)", target.service
        )
    argv = check.strings(data, "argv", "data_check", required=True)
    resolved = [_resolve(check, arg, f"data_check.argv[{i}]", services) for i, arg in enumerate(argv)]
    compare = check.choice(data, "compare", "data_check", DATA_COMPARES, default="equal")
    seed = check.strings(data, "seed", "data_check", required=False)
    seeded = [_resolve(check, arg, f"data_check.seed[{i}]", services) for i, arg in enumerate(seed)]
    if not argv or None in resolved or None in seeded or compare is None:
        return None
    return DataCheck(
        target=target,
        argv=tuple(r for r in resolved if r is not None),
        compare=compare,
        seed=tuple(r for r in seeded if r is not None),
    )


def _also(check: _Checker, raw: Any, services: Mapping[str, str], fault: Fault | None) -> tuple[Fault, ...]:
    """Further faults with the main fault's duration, e.g. every local engine stopped at once."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        check.error("also", "a non-empty list of faults (kind, target, params; the duration is fault's)", raw)
        return ()
    duration = fault.duration_s if fault is not None else 1.0
    faults = [_fault(check, item, services, f"also[{i}]", duration)[0] for i, item in enumerate(raw)]
    return tuple(f for f in faults if f is not None)


def _rollback(check: _Checker, raw: Any, kind: str | None) -> str | None:
    if kind is None:
        return None
    options = ROLLBACKS[kind]
    if raw is None or raw == "auto":
        return options[0]
    if raw not in options:
        check.error("rollback", f"auto or one of {', '.join(options)} for {kind}", raw)
        return None
    return raw


_ALERT_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _alert(check: _Checker, raw: Any, services: Mapping[str, str]) -> AlertExpect | None:
    if raw is None:
        return None
    data = check.mapping(raw, "alert", ("fires", "labels", "detect_within_s", "resolve_within_s"))
    fires = check.string(
        data, "fires", "alert", pattern=_ALERT_NAME_RE, expected="an alert name such as InferenceEngineDown"
    )
    labels: list[tuple[str, str]] = []
    raw_labels = data.get("labels", {})
    if not isinstance(raw_labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw_labels.items()
    ):
        check.error("alert.labels", "a mapping of label names to values", raw_labels)
    else:
        for key, value in sorted(raw_labels.items()):
            resolved = _resolve(check, value, f"alert.labels.{key}", services)
            if resolved is not None:
                labels.append((key, resolved))
    detect = check.number(data, "detect_within_s", "alert", low=0, default=None)
    resolve = check.number(data, "resolve_within_s", "alert", low=0, default=None)
    if fires is None:
        return None
    return AlertExpect(fires, tuple(labels), detect, resolve)


TOP_LEVEL = (
    "name",
    "description",
    "steady_state",
    "load",
    "fault",
    "rollback",
    "expect",
    "timeline",
    "data_check",
    "primary_backend",
    "also",
    "alert",
)


def parse_scenario(raw: Any, source: str, services: Mapping[str, str] | None = None) -> Scenario:
    """Validate one already-parsed scenario document; raise ScenarioError with every problem found."""
    services = DEFAULT_SERVICES if services is None else services
    check = _Checker(source)
    data = check.mapping(raw, "", TOP_LEVEL)
    if not isinstance(raw, dict):
        raise ScenarioError(check.errors)

    def section(key: str) -> Any:
        if key not in data:
            check.error(key, "a mapping")
            return None
        return data[key]

    name = check.string(data, "name", "", pattern=_NAME_RE, expected="a lower-case name (a-z, 0-9, _ -)")
    description = check.string(data, "description", "")
    steady = _steady_state(check, raw_steady) if (raw_steady := section("steady_state")) is not None else None
    load = _load(check, raw_load) if (raw_load := section("load")) is not None else None
    fault, kind = (
        _fault(check, raw_fault, services) if (raw_fault := section("fault")) is not None else (None, None)
    )
    timeline = _timeline(check, raw_timeline) if (raw_timeline := section("timeline")) is not None else None
    also = _also(check, data.get("also"), services, fault)
    rollback = _rollback(check, data.get("rollback"), kind)
    expect = _expect(check, data.get("expect"))
    data_check = _data_check(check, data.get("data_check"), services)
    primary = check.string(data, "primary_backend", "", default=None)
    alert = _alert(check, data.get("alert"), services)
    if expect.data_loss is not None and "data_check" not in data:
        check.errors.append(f"{source}: expect.data_loss: needs a data_check section to be measured")
    if expect.max_noisy_unexpected is not None and load is not None and not load.noisy_clients:
        check.errors.append(
            f"{source}: expect.max_noisy_unexpected: needs load.noisy_clients >= 1 to be measured"
        )
    if expect.self_heal_within_s is not None and fault is not None and fault.kind != "kill_service":
        check.errors.append(f"{source}: expect.self_heal_within_s: measured only for a kill_service fault")
    if fault is not None and fault.kind == "freeze_service" and rollback == "none":
        check.errors.append(f"{source}: rollback: a frozen service never heals by itself")
    if check.errors:
        raise ScenarioError(check.errors)
    assert steady and load and fault and rollback and expect and timeline and name and description
    return Scenario(
        name=name,
        description=description,
        steady_state=steady,
        load=load,
        fault=fault,
        rollback=rollback,
        expect=expect,
        timeline=timeline,
        data_check=data_check,
        primary_backend=primary,
        source=source,
        also=also,
        alert=alert,
    )


def load_scenario(path: Path, services: Mapping[str, str] | None = None) -> Scenario:
    """Read and validate one scenario file."""
    source = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError([f"{source}: cannot read the file ({exc.strerror})"]) from exc
    except yaml.YAMLError as exc:
        raise ScenarioError([f"{source}: not valid YAML ({exc})"]) from exc
    return parse_scenario(raw, source, services)


def load_scenarios(paths: list[Path], services: Mapping[str, str] | None = None) -> list[Scenario]:
    """Validate several files, raising one ScenarioError with the problems of all of them."""
    scenarios, errors = [], []
    for path in paths:
        try:
            scenarios.append(load_scenario(path, services))
        except ScenarioError as exc:
            errors.extend(exc.errors)
    if errors:
        raise ScenarioError(errors)
    return scenarios
