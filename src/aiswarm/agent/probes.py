"""What the agent reads: systemd's view of a unit, an HTTP health check, the host's temperature
sensors and the GPUs. Each reader is a plain function the agent receives, so tests pass fakes."""

from __future__ import annotations

import http.client
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiswarm.agent.decide import UnitState

try:  # the copy the swarm_agent role installs beside this file (see roles/swarm_agent/README.md)
    from aiswarm.agent import _nvml
except ImportError:  # a checkout of the collection: the collection's own reader, the same file
    from ansible_collections.aiswarm.swarm.plugins.module_utils import _nvml  # type: ignore[no-redef]

THROTTLE_REASONS = tuple(name for _bit, name in _nvml.THROTTLE_REASONS)
SYSTEMCTL_TIMEOUT_S = 10.0
UNIT_PROPERTIES = ("LoadState", "ActiveState", "SubState", "Result", "ActiveEnterTimestampMonotonic")

# (argv after "systemctl") -> (exit status, stdout, or stderr when it failed)
Runner = Callable[[Sequence[str]], tuple[int, str]]


class ProbeError(RuntimeError):
    """A reading that could not be taken (not a verdict about the service)."""


def systemctl(args: Sequence[str]) -> tuple[int, str]:
    """Run ``systemctl <args>``; the exit status and its output (stderr when it failed)."""
    try:
        done = subprocess.run(
            ["systemctl", *args], capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, f"{type(exc).__name__}: {exc}"
    return done.returncode, (done.stdout if done.returncode == 0 else done.stderr or done.stdout).strip()


def parse_show(text: str) -> UnitState:
    """A `UnitState` from ``systemctl show --property=...`` output (``Key=value`` lines)."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    entered = values.get("ActiveEnterTimestampMonotonic", "0")
    entered_us = int(entered) if entered.isdigit() else 0
    return UnitState(
        load_state=values.get("LoadState", ""),
        active_state=values.get("ActiveState", ""),
        sub_state=values.get("SubState", ""),
        result=values.get("Result", "success") or "success",
        active_enter_s=entered_us / 1e6 if entered_us else None,
    )


def unit_state(run: Runner, unit: str) -> UnitState:
    """systemd's view of `unit` (a unit systemd does not know has LoadState not-found)."""
    rc, out = run(["show", f"--property={','.join(UNIT_PROPERTIES)}", "--", unit])
    if rc != 0:
        raise ProbeError(f"systemctl show {unit}: {out or f'exit status {rc}'}")
    state = parse_show(out)
    if not state.load_state or not state.active_state:
        raise ProbeError(f"systemctl show {unit}: unexpected output {out[:200]!r}")
    return state


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check_http(url: str, timeout_s: float) -> tuple[bool, str]:
    """GET `url` directly (never through a proxy): (answered 2xx within `timeout_s`, what happened)."""
    try:
        with _NO_PROXY.open(urllib.request.Request(url, method="GET"), timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        return False, f"no answer: {exc.reason}"
    except (OSError, http.client.HTTPException) as exc:
        return False, f"no answer: {type(exc).__name__}: {exc}"
    return 200 <= status < 300, f"HTTP {status}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:  # a sensor that cannot be read now (EIO, ENODATA, gone)
        return None


def _celsius(path: Path) -> float | None:
    text = _read(path)
    try:
        return None if text is None else int(text) / 1000.0
    except ValueError:
        return None


def host_temperatures(sys_class: Path = Path("/sys/class")) -> dict[str, float]:
    """Every temperature the kernel exposes, in °C, by sensor name.

    hwmon (``hwmon<N>/temp<K>_input``, named ``hwmon<N>/<chip>/<label or temp<K>>``) and thermal
    zones (``thermal_zone<N>/temp``, named ``thermal_zone<N>/<type>``); a host (or container)
    without them gives {}. Values are millidegrees in sysfs.
    """
    readings: dict[str, float] = {}
    for chip in sorted((sys_class / "hwmon").glob("hwmon*")):
        chip_name = _read(chip / "name") or "unknown"
        for sensor in sorted(chip.glob("temp*_input")):
            index = sensor.name.removesuffix("_input")
            value = _celsius(sensor)
            if value is not None:
                readings[f"{chip.name}/{chip_name}/{_read(chip / f'{index}_label') or index}"] = value
    for zone in sorted((sys_class / "thermal").glob("thermal_zone*")):
        value = _celsius(zone / "temp")
        if value is not None:
            readings[f"{zone.name}/{_read(zone / 'type') or 'unknown'}"] = value
    return readings


def read_gpu_report() -> dict[str, Any]:
    """The NVML reader's report (``_nvml.read_gpus().as_dict()``); never raises for a host without GPUs."""
    return _nvml.read_gpus().as_dict()
