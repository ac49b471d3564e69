"""The agent's settings: one JSON file (the swarm_agent role writes /etc/aiswarm/agent/agent.json),
validated once at start-up; a bad value names its key and what was expected.

Example (every key but ``token`` and ``services`` has the default shown)::

    {"listen_addresses": ["172.30.57.11", "127.0.0.1"], "port": 9110, "token": "...",
     "check_interval_s": 5, "health_timeout_s": 2, "failure_threshold": 3,
     "restart_max_per_hour": 3, "restart_backoff_s": 30, "start_grace_s": 600,
     "gpu_temperature_limit_c": 83, "gpu_resume_temperature_c": 75, "gpu_resume_hold_s": 60,
     "state_dir": "/var/lib/swarm-agent",
     "services": [{"name": "vllm", "unit": "vllm.service", "health_url": "http://172.30.57.11:8000/health",
                   "restart": true, "engine_api_base": "http://172.30.57.11:8000"}]}
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PATH = "/etc/aiswarm/agent/agent.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A systemd unit name: letters, digits and :-_.\@ (systemd.unit(5)), with an optional type suffix.
_UNIT = re.compile(r"^[A-Za-z0-9:_.\\@-]+$")
_SERVICE_KEYS = frozenset(
    {"name", "unit", "health_url", "restart", "engine_api_base", "gpus", "start_grace_s"}
)


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class ServiceSpec:
    """One service the agent watches: its systemd unit and, optionally, an HTTP health URL.

    `restart`: the agent may restart it (else it only reports). `engine_api_base`: the service is
    an inference engine the gateway routes to at that base URL, so it can be drained. `gpus`: the
    GPU indices it runs on (None: every GPU of the host). `start_grace_s`: how long after a start
    a health check that fails does not count yet, unless the service already answered once.
    """

    name: str
    unit: str
    health_url: str | None = None
    restart: bool = True
    engine_api_base: str | None = None
    gpus: tuple[int, ...] | None = None
    start_grace_s: float = 600.0

    @property
    def drainable(self) -> bool:
        return self.engine_api_base is not None


@dataclass(frozen=True)
class Config:
    token: str = field(repr=False)
    services: tuple[ServiceSpec, ...]
    listen_addresses: tuple[str, ...] = ("127.0.0.1",)
    port: int = 9110
    check_interval_s: float = 5.0
    health_timeout_s: float = 2.0
    failure_threshold: int = 3
    restart_max_per_hour: int = 3
    restart_backoff_s: float = 30.0
    gpu_temperature_limit_c: float = 83.0
    gpu_resume_temperature_c: float = 75.0
    gpu_resume_hold_s: float = 60.0
    state_dir: Path = Path("/var/lib/swarm-agent")

    def service(self, name: str) -> ServiceSpec | None:
        return next((s for s in self.services if s.name == name), None)

    @classmethod
    def from_mapping(cls, data: Any, source: str = "agent") -> Config:
        """Validate a settings mapping (see the module docstring)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
        known = {
            "token", "services", "listen_addresses", "port", "check_interval_s", "health_timeout_s",
            "failure_threshold", "restart_max_per_hour", "restart_backoff_s", "start_grace_s",
            "gpu_temperature_limit_c", "gpu_resume_temperature_c", "gpu_resume_hold_s", "state_dir",
        }  # fmt: skip
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown settings {unknown}; known: {sorted(known)}")
        token = data.get("token")
        if not isinstance(token, str) or len(token) < 16 or re.search(r"[\s\x00-\x1f]", token):
            raise ConfigError(f"{source}.token: expected a secret of 16+ characters without whitespace")
        addresses = data.get("listen_addresses", ["127.0.0.1"])
        if not isinstance(addresses, list) or not addresses:
            raise ConfigError(f"{source}.listen_addresses: expected a non-empty list, got {addresses!r}")
        for address in addresses:
            _address(address, f"{source}.listen_addresses")
        port = _number(data.get("port", 9110), f"{source}.port", kind=int)
        if not 1 <= port <= 65535:
            raise ConfigError(f"{source}.port: expected a TCP port (1-65535), got {port}")
        numbers = {
            key: _number(data.get(key, default), f"{source}.{key}", kind=kind, minimum=minimum)
            for key, default, kind, minimum in (
                ("check_interval_s", 5.0, float, 0.01),
                ("health_timeout_s", 2.0, float, 0.01),
                ("failure_threshold", 3, int, 1),
                ("restart_max_per_hour", 3, int, 1),
                ("restart_backoff_s", 30.0, float, 0.0),
                ("gpu_temperature_limit_c", 83.0, float, 1.0),
                ("gpu_resume_temperature_c", 75.0, float, 0.0),
                ("gpu_resume_hold_s", 60.0, float, 0.0),
            )
        }
        if numbers["gpu_resume_temperature_c"] >= numbers["gpu_temperature_limit_c"]:
            raise ConfigError(
                f"{source}.gpu_resume_temperature_c: expected below gpu_temperature_limit_c "
                f"({numbers['gpu_temperature_limit_c']}), got {numbers['gpu_resume_temperature_c']}"
            )
        grace = _number(data.get("start_grace_s", 600.0), f"{source}.start_grace_s", kind=float, minimum=0.0)
        services = data.get("services")
        if not isinstance(services, list):
            raise ConfigError(f"{source}.services: expected a list of services, got {services!r}")
        parsed = tuple(_service(s, f"{source}.services[{i}]", grace) for i, s in enumerate(services))
        names = [s.name for s in parsed]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"{source}.services: names must be unique, repeated: {duplicates}")
        state_dir = data.get("state_dir", "/var/lib/swarm-agent")
        if not isinstance(state_dir, str) or not state_dir.startswith("/"):
            raise ConfigError(f"{source}.state_dir: expected an absolute path, got {state_dir!r}")
        return cls(
            token=token,
            services=parsed,
            listen_addresses=tuple(addresses),
            port=port,
            state_dir=Path(state_dir),
            **numbers,
        )

    @classmethod
    def load(cls, path: str | Path) -> Config:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_mapping(data, str(path))


def _number(value: Any, where: str, kind: type, minimum: float | None = None) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
        raise ConfigError(f"{where}: expected a {'whole ' if kind is int else ''}number, got {value!r}")
    value = kind(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: expected at least {minimum}, got {value}")
    return value


def _address(value: Any, where: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{where}: expected an IP address, got {value!r}") from None
    if address.is_unspecified:
        raise ConfigError(
            f"{where}: expected a concrete address, got {value!r}; the agent never binds every interface"
        )
    return str(value)


def _http_url(value: Any, where: str, *, base_only: bool) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: expected an http(s) URL, got {value!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{where}: expected an http(s) URL with a valid port, got {value!r}") from None
    if base_only and (port is None or parts.path not in ("", "/") or parts.query):
        raise ConfigError(f"{where}: expected http(s)://host:port (the engine's address), got {value!r}")
    return value.rstrip("/") if base_only else value


def _service(data: Any, where: str, grace: float) -> ServiceSpec:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping {{name, unit, ...}}, got {data!r}")
    unknown = sorted(set(data) - _SERVICE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(_SERVICE_KEYS)}")
    name, unit = data.get("name"), data.get("unit")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}.name: expected letters, digits and . _ -, got {name!r}")
    if not isinstance(unit, str) or not _UNIT.match(unit):
        raise ConfigError(f"{where}.unit: expected a systemd unit name (e.g. vllm.service), got {unit!r}")
    restart = data.get("restart", True)
    if not isinstance(restart, bool):
        raise ConfigError(f"{where}.restart: expected true or false, got {restart!r}")
    health = data.get("health_url")
    engine = data.get("engine_api_base")
    gpus = data.get("gpus")
    if gpus is not None and (
        not isinstance(gpus, list)
        or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in gpus)
    ):
        raise ConfigError(f"{where}.gpus: expected a list of GPU indices (0, 1, ...), got {gpus!r}")
    return ServiceSpec(
        name=name,
        unit=unit,
        health_url=None if health is None else _http_url(health, f"{where}.health_url", base_only=False),
        restart=restart,
        engine_api_base=None
        if engine is None
        else _http_url(engine, f"{where}.engine_api_base", base_only=True),
        gpus=None if gpus is None else tuple(gpus),
        start_grace_s=_number(
            data.get("start_grace_s", grace), f"{where}.start_grace_s", kind=float, minimum=0.0
        ),
    )
