# Copyright: (c) 2026, aiswarm.swarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read NVIDIA GPU facts through NVML.

This file imports nothing from Ansible: the node-side monitoring agent reuses it as is.
Only the standard library and, when installed, ``pynvml`` (PyPI package ``nvidia-ml-py``).

``read_gpus()`` never raises for a missing driver, library or Python binding: it returns an
empty report whose ``reason`` says what is missing. A query a GPU does not support (power on
many laptop and consumer boards, for example) yields ``None`` for that field.

The swarm agent (``src/aiswarm/agent``) runs this file as ``aiswarm.agent._nvml``: the
swarm_agent role copies it into the package it installs on each node, so keep it free of
Ansible imports and within the standard library (plus the optional ``pynvml``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

try:
    import pynvml
except ImportError:
    pynvml = None

_MIB = 1024 * 1024
_T = TypeVar("_T")

# Why a GPU's clocks are held down: NVML's clocks event (formerly "throttle") reason bits, by
# the names nvidia-smi prints them under ("Clocks Event Reasons"), in bit order.
THROTTLE_REASONS = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)

NO_PYNVML_REASON = (
    "the Python library pynvml (pip package nvidia-ml-py) is not installed for this interpreter, "
    "so NVIDIA GPUs cannot be read"
)


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as NVML reports it. Memory in MiB (as nvidia-smi prints it), power in watts."""

    index: int
    name: str | None
    uuid: str | None
    memory_total_mb: int | None
    memory_used_mb: int | None
    memory_free_mb: int | None
    temperature_c: int | None
    utilization_gpu_pct: int | None
    utilization_memory_pct: int | None
    power_draw_w: float | None
    power_limit_w: float | None
    compute_capability: str | None
    # Names from THROTTLE_REASONS active now ([] when none); None when the GPU cannot say.
    throttle_reasons: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GpuReport:
    """Every GPU of the host plus driver facts; ``reason`` says why the list is empty or short."""

    gpus: list[GpuInfo] = field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None
    reason: str | None = None

    @property
    def count(self) -> int:
        return len(self.gpus)

    def as_dict(self) -> dict[str, Any]:
        return {
            "gpus": [gpu.as_dict() for gpu in self.gpus],
            "count": self.count,
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "reason": self.reason,
        }


def cuda_version_string(version: int) -> str:
    """Turn NVML's CUDA driver version integer (12040) into ``"12.4"``."""
    return f"{version // 1000}.{(version % 1000) // 10}"


def _text(value: str | bytes) -> str:
    """Old pynvml releases return bytes, new ones str."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _optional(nvml: Any, query: Callable[[], _T]) -> _T | None:
    """Run one NVML query; an NVML error (NotSupported, NoPermission, ...) gives None."""
    try:
        return query()
    except nvml.NVMLError:
        return None


def _cuda_version(nvml: Any) -> str | None:
    getter = getattr(nvml, "nvmlSystemGetCudaDriverVersion_v2", None) or nvml.nvmlSystemGetCudaDriverVersion
    version = _optional(nvml, getter)
    return None if version is None else cuda_version_string(int(version))


def throttle_reason_names(mask: int) -> list[str]:
    """The names of the reason bits set in an NVML clocks event reason mask, in bit order."""
    return [name for bit, name in THROTTLE_REASONS if mask & bit]


def _throttle_reasons(nvml: Any, handle: Any) -> list[str] | None:
    # NVML 12.x renamed ...ClocksThrottleReasons to ...ClocksEventReasons; older bindings lack the new name.
    getter = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
    )
    if getter is None:
        return None
    mask = _optional(nvml, lambda: getter(handle))
    return None if mask is None else throttle_reason_names(int(mask))


def _watts(milliwatts: int | None) -> float | None:
    return None if milliwatts is None else round(milliwatts / 1000.0, 1)


def _read_gpu(nvml: Any, index: int, handle: Any) -> GpuInfo:
    memory = _optional(nvml, lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
    rates = _optional(nvml, lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
    capability = _optional(nvml, lambda: nvml.nvmlDeviceGetCudaComputeCapability(handle))
    name = _optional(nvml, lambda: nvml.nvmlDeviceGetName(handle))
    uuid = _optional(nvml, lambda: nvml.nvmlDeviceGetUUID(handle))
    return GpuInfo(
        index=index,
        name=None if name is None else _text(name),
        uuid=None if uuid is None else _text(uuid),
        memory_total_mb=None if memory is None else int(memory.total) // _MIB,
        memory_used_mb=None if memory is None else int(memory.used) // _MIB,
        memory_free_mb=None if memory is None else int(memory.free) // _MIB,
        temperature_c=_optional(
            nvml, lambda: int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        ),
        utilization_gpu_pct=None if rates is None else int(rates.gpu),
        utilization_memory_pct=None if rates is None else int(rates.memory),
        power_draw_w=_watts(_optional(nvml, lambda: nvml.nvmlDeviceGetPowerUsage(handle))),
        power_limit_w=_watts(_optional(nvml, lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))),
        compute_capability=None if capability is None else f"{capability[0]}.{capability[1]}",
        throttle_reasons=_throttle_reasons(nvml, handle),
    )


def _read_initialised(nvml: Any) -> GpuReport:
    driver = _optional(nvml, nvml.nvmlSystemGetDriverVersion)
    driver_version = None if driver is None else _text(driver)
    cuda_version = _cuda_version(nvml)
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except nvml.NVMLError as exc:
        return GpuReport([], driver_version, cuda_version, f"NVML could not count the GPUs: {exc}")
    gpus: list[GpuInfo] = []
    unreadable: list[str] = []
    for index in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except nvml.NVMLError as exc:
            unreadable.append(f"GPU {index}: {exc}")
            continue
        gpus.append(_read_gpu(nvml, index, handle))
    if count == 0:
        reason: str | None = "the NVIDIA driver is loaded but reports no GPU"
    elif unreadable:
        reason = f"{len(unreadable)} of {count} GPUs could not be read: " + "; ".join(unreadable)
    else:
        reason = None
    return GpuReport(gpus, driver_version, cuda_version, reason)


def read_gpus(nvml: Any = None) -> GpuReport:
    """Read every GPU through NVML; never raises for a host without NVIDIA hardware.

    ``nvml`` is an object with pynvml's API surface (``nvmlInit``, ``nvmlDeviceGet*``,
    ``NVMLError``, ``NVML_TEMPERATURE_GPU``); tests pass a fake. By default the installed
    ``pynvml`` is used; without it the report is empty and ``reason`` names the package.
    NVML is always shut down again after a successful ``nvmlInit``.
    """
    if nvml is None:
        nvml = pynvml
    if nvml is None:
        return GpuReport(reason=NO_PYNVML_REASON)
    try:
        nvml.nvmlInit()
    except (nvml.NVMLError, OSError) as exc:
        return GpuReport(
            reason=f"NVML could not be initialised ({exc}): no NVIDIA driver or libnvidia-ml on this host"
        )
    try:
        return _read_initialised(nvml)
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
