"""Fakes for the agent's tests: a clock moved by hand, systemd as data, health checks as data, and
the recorded NVML reports (fixtures/*.json, each a run of ``_nvml.read_gpus().as_dict()``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aiswarm.agent.agent import Agent
from aiswarm.agent.config import Config

FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "t0ken-for-the-unit-tests-0123456789"


def readings(name: str) -> list[dict[str, Any]]:
    """The readings of a recorded run: [{"t": seconds, "report": {...}}]."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))["readings"]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Unit:
    active_state: str = "active"
    sub_state: str = "running"
    result: str = "success"
    active_enter_s: float = 0.0


class FakeSystemd:
    """``systemctl show|restart|reset-failed`` over units held as data, acting as systemd does;
    every call is recorded. Units not in `units` are not-found, as systemd says."""

    def __init__(self, clock: FakeClock, units: Sequence[str]) -> None:
        self.clock = clock
        self.units = {name: Unit(active_enter_s=clock() - 60) for name in units}
        self.calls: list[list[str]] = []
        self.fail_show = False

    def __call__(self, argv: Sequence[str]) -> tuple[int, str]:
        argv = list(argv)
        self.calls.append(argv)
        verb, name = argv[0], argv[-1]
        if verb == "show":
            if self.fail_show:
                return 1, "Failed to connect to bus: No such file or directory"
            unit = self.units.get(name)
            if unit is None:
                return 0, "LoadState=not-found\nActiveState=inactive\nSubState=dead\nResult=success\n"
            return 0, (
                f"LoadState=loaded\nActiveState={unit.active_state}\nSubState={unit.sub_state}\n"
                f"Result={unit.result}\nActiveEnterTimestampMonotonic={int(unit.active_enter_s * 1e6)}\n"
            )
        if name not in self.units:
            return 5, f"Failed to {verb} {name}: Unit {name} not found."
        if verb == "restart":
            self.units[name] = Unit(active_enter_s=self.clock())
        elif verb == "reset-failed" and self.units[name].active_state == "failed":
            self.units[name] = Unit("inactive", "dead", "success", self.units[name].active_enter_s)
        return 0, ""

    def kill(self, name: str) -> None:
        """``systemctl kill -s KILL`` of a unit with Restart=no."""
        self.units[name] = Unit("failed", "failed", "signal", self.units[name].active_enter_s)

    def stop(self, name: str) -> None:
        """``systemctl stop``."""
        self.units[name] = Unit("inactive", "dead", "success", self.units[name].active_enter_s)

    def restarts(self) -> list[str]:
        return [call[-1] for call in self.calls if call[0] == "restart"]


class FakeHealth:
    """Health URLs as data: a URL answers 200 unless `down` says otherwise."""

    def __init__(self) -> None:
        self.down: dict[str, str] = {}

    def __call__(self, url: str, timeout_s: float) -> tuple[bool, str]:
        return (False, self.down[url]) if url in self.down else (True, "HTTP 200")


class FakeGpus:
    """The NVML reader: returns `report` (set it from a recorded run)."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report

    def __call__(self) -> dict[str, Any]:
        return self.report


VLLM = {
    "name": "vllm",
    "unit": "vllm.service",
    "health_url": "http://10.0.0.11:8000/health",
    "engine_api_base": "http://10.0.0.11:8000",
}
LITELLM = {
    "name": "litellm",
    "unit": "litellm.service",
    "health_url": "http://10.0.0.10:4000/health/liveliness",
}
REDIS = {"name": "redis", "unit": "redis-server.service"}


@dataclass
class Rig:
    agent: Agent
    clock: FakeClock
    systemd: FakeSystemd
    health: FakeHealth
    gpus: FakeGpus

    def at(self, t: float) -> list:
        """Move the clock to `t` seconds after the start and run one round."""
        self.clock.now = 1000.0 + t
        return self.agent.tick()


@pytest.fixture
def rig(tmp_path: Path) -> Callable[..., Rig]:
    def make(services: list[dict[str, Any]] | None = None, gpus: str = "no_gpu", **settings: Any) -> Rig:
        services = [VLLM, LITELLM, REDIS] if services is None else services
        config = Config.from_mapping(
            {"token": TOKEN, "services": services, "state_dir": str(tmp_path / "state"), **settings}
        )
        clock = FakeClock()
        systemd = FakeSystemd(clock, [s["unit"] for s in services])
        health = FakeHealth()
        reader = FakeGpus(readings(gpus)[0]["report"])
        agent = Agent(
            config, clock=clock, wall=lambda: clock() + 1.7e9, systemctl=systemd, read_gpus=reader,
            check_http=health, host_temperatures=lambda: {"thermal_zone0/x86_pkg_temp": 48.0},
        )  # fmt: skip
        return Rig(agent, clock, systemd, health, reader)

    return make
