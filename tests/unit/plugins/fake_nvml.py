# SPDX-License-Identifier: GPL-3.0-or-later
"""A fake pynvml for the NVML reader's and gpu_facts' tests: GPUs as data, errors on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

MIB = 1024 * 1024


class NVMLError(Exception):
    """Stands in for pynvml.NVMLError."""


class NVMLError_NotSupported(NVMLError):
    def __str__(self) -> str:
        return "Not Supported"


class NVMLError_LibraryNotFound(NVMLError):
    def __str__(self) -> str:
        return "NVML Shared Library Not Found"


class NVMLError_GpuIsLost(NVMLError):
    def __str__(self) -> str:
        return "GPU is lost"


@dataclass
class FakeGpu:
    name: str | bytes = "NVIDIA GeForce RTX 4090"
    uuid: str | bytes = "GPU-0000"
    total_mib: int = 24564
    used_mib: int = 412
    temperature: int = 41
    gpu_pct: int = 3
    memory_pct: int = 1
    power_mw: int = 31234
    limit_mw: int = 450000
    capability: tuple[int, int] = (8, 9)
    throttle_mask: int = 0
    unsupported: set[str] = field(default_factory=set)


class FakeNvml:
    """The part of pynvml's API that the reader uses; records init and shutdown."""

    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, gpus: list[FakeGpu], init_error: Exception | None = None, lost: int | None = None):
        self.gpus = gpus
        self.init_error = init_error
        self.lost = lost
        self.inits = 0
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.14"

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return 12040

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12020

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        if index == self.lost:
            raise NVMLError_GpuIsLost()
        return self.gpus[index]

    @staticmethod
    def _check(gpu: FakeGpu, query: str) -> FakeGpu:
        if query in gpu.unsupported:
            raise NVMLError_NotSupported()
        return gpu

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str | bytes:
        return self._check(gpu, "name").name

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str | bytes:
        return self._check(gpu, "uuid").uuid

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> SimpleNamespace:
        gpu = self._check(gpu, "memory")
        total, used = gpu.total_mib * MIB, gpu.used_mib * MIB
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetTemperature(self, gpu: FakeGpu, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._check(gpu, "temperature").temperature

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> SimpleNamespace:
        gpu = self._check(gpu, "utilization")
        return SimpleNamespace(gpu=gpu.gpu_pct, memory=gpu.memory_pct)

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        return self._check(gpu, "power").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, gpu: FakeGpu) -> int:
        return self._check(gpu, "power_limit").limit_mw

    def nvmlDeviceGetCudaComputeCapability(self, gpu: FakeGpu) -> tuple[int, int]:
        return self._check(gpu, "capability").capability

    def nvmlDeviceGetCurrentClocksEventReasons(self, gpu: FakeGpu) -> int:
        return self._check(gpu, "throttle").throttle_mask
