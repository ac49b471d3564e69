# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for the NVML reader, against a fake pynvml and, where present, the real one."""

from __future__ import annotations

import re
from typing import Any

import pytest
from ansible_collections.aiswarm.swarm.plugins.module_utils import _nvml
from ansible_collections.aiswarm.swarm.tests.unit.plugins.fake_nvml import (
    FakeGpu,
    FakeNvml,
    NVMLError,
    NVMLError_LibraryNotFound,
)


def two_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(),
        FakeGpu(
            name="NVIDIA GeForce RTX 3080",
            uuid="GPU-0001",
            total_mib=10240,
            used_mib=1024,
            temperature=55,
            gpu_pct=87,
            memory_pct=40,
            power_mw=250500,
            limit_mw=320000,
            capability=(8, 6),
        ),
    ]


def test_two_gpus_are_read_with_every_field() -> None:
    nvml = FakeNvml(two_gpus())
    report = _nvml.read_gpus(nvml)

    assert report.reason is None
    assert report.count == 2
    assert (report.driver_version, report.cuda_version) == ("550.54.14", "12.4")
    assert report.gpus[0].as_dict() == {
        "index": 0,
        "name": "NVIDIA GeForce RTX 4090",
        "uuid": "GPU-0000",
        "memory_total_mb": 24564,
        "memory_used_mb": 412,
        "memory_free_mb": 24152,
        "temperature_c": 41,
        "utilization_gpu_pct": 3,
        "utilization_memory_pct": 1,
        "power_draw_w": 31.2,
        "power_limit_w": 450.0,
        "compute_capability": "8.9",
        "throttle_reasons": [],
    }
    second = report.gpus[1]
    assert (second.index, second.name, second.compute_capability) == (1, "NVIDIA GeForce RTX 3080", "8.6")
    assert (second.memory_free_mb, second.power_draw_w) == (9216, 250.5)
    assert (nvml.inits, nvml.shutdowns) == (1, 1)


def test_report_as_dict_carries_count_and_driver_facts() -> None:
    report = _nvml.read_gpus(FakeNvml(two_gpus())).as_dict()

    assert report["count"] == 2
    assert [gpu["uuid"] for gpu in report["gpus"]] == ["GPU-0000", "GPU-0001"]
    assert (report["driver_version"], report["cuda_version"], report["reason"]) == ("550.54.14", "12.4", None)


def test_bytes_from_old_pynvml_are_decoded() -> None:
    report = _nvml.read_gpus(FakeNvml([FakeGpu(name=b"Tesla T4", uuid=b"GPU-abc")]))

    assert (report.gpus[0].name, report.gpus[0].uuid) == ("Tesla T4", "GPU-abc")


@pytest.mark.parametrize(
    ("unsupported", "none_fields"),
    [
        ({"power"}, {"power_draw_w"}),
        ({"power", "power_limit"}, {"power_draw_w", "power_limit_w"}),
        ({"temperature"}, {"temperature_c"}),
        ({"utilization"}, {"utilization_gpu_pct", "utilization_memory_pct"}),
        ({"memory"}, {"memory_total_mb", "memory_used_mb", "memory_free_mb"}),
        ({"capability", "uuid"}, {"compute_capability", "uuid"}),
        ({"throttle"}, {"throttle_reasons"}),
    ],
)
def test_an_unsupported_query_gives_none_for_its_fields_only(
    unsupported: set[str], none_fields: set[str]
) -> None:
    nvml = FakeNvml([FakeGpu(unsupported=unsupported)])
    gpu = _nvml.read_gpus(nvml).gpus[0].as_dict()

    assert {key for key, value in gpu.items() if value is None} == none_fields
    assert nvml.shutdowns == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NVMLError_LibraryNotFound(), "NVML Shared Library Not Found"),
        (NVMLError("Driver Not Loaded"), "Driver Not Loaded"),
        (OSError("libnvidia-ml.so.1: cannot open shared object file"), "cannot open shared object"),
    ],
)
def test_no_driver_gives_an_empty_report_with_a_reason(error: Exception, expected: str) -> None:
    nvml = FakeNvml(two_gpus(), init_error=error)
    report = _nvml.read_gpus(nvml)

    assert report.gpus == []
    assert report.reason is not None
    assert expected in report.reason
    assert "no NVIDIA driver" in report.reason
    assert (report.driver_version, report.cuda_version) == (None, None)
    assert nvml.shutdowns == 0, "nvmlShutdown must not follow a failed nvmlInit"


def test_missing_pynvml_gives_an_empty_report_naming_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_nvml, "pynvml", None)
    report = _nvml.read_gpus()

    assert report.count == 0
    assert report.reason == _nvml.NO_PYNVML_REASON
    assert "nvidia-ml-py" in report.reason


def test_default_layer_is_the_module_level_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml(two_gpus())
    monkeypatch.setattr(_nvml, "pynvml", nvml)

    assert _nvml.read_gpus().count == 2
    assert nvml.shutdowns == 1


def test_driver_without_gpus_says_so() -> None:
    report = _nvml.read_gpus(FakeNvml([]))

    assert report.gpus == []
    assert report.reason == "the NVIDIA driver is loaded but reports no GPU"
    assert report.driver_version == "550.54.14"


def test_a_lost_gpu_is_skipped_and_named_in_the_reason() -> None:
    report = _nvml.read_gpus(FakeNvml(two_gpus(), lost=0))

    assert [gpu.index for gpu in report.gpus] == [1]
    assert report.reason == "1 of 2 GPUs could not be read: GPU 0: GPU is lost"


def test_failed_count_is_reported_and_nvml_shut_down() -> None:
    nvml = FakeNvml(two_gpus())

    def failing_count() -> int:
        raise NVMLError("Unknown Error")

    nvml.nvmlDeviceGetCount = failing_count  # type: ignore[method-assign]
    report = _nvml.read_gpus(nvml)

    assert (report.gpus, report.reason) == ([], "NVML could not count the GPUs: Unknown Error")
    assert nvml.shutdowns == 1


def test_nvml_is_shut_down_even_when_reading_raises_unexpectedly() -> None:
    nvml = FakeNvml(two_gpus())

    def broken_name(gpu: FakeGpu) -> str:
        raise RuntimeError("a bug, not an NVML error")

    nvml.nvmlDeviceGetName = broken_name  # type: ignore[method-assign]

    with pytest.raises(RuntimeError, match="a bug"):
        _nvml.read_gpus(nvml)
    assert nvml.shutdowns == 1


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (0x0, []),
        (0x1, ["gpu_idle"]),
        (0x24, ["sw_power_cap", "sw_thermal_slowdown"]),
        (0x40 | 0x08, ["hw_slowdown", "hw_thermal_slowdown"]),
        (0x800, []),  # a bit newer than this reader: not named, not guessed
    ],
)
def test_throttle_reasons_are_named_from_the_mask(mask: int, expected: list[str]) -> None:
    report = _nvml.read_gpus(FakeNvml([FakeGpu(throttle_mask=mask)]))

    assert report.gpus[0].throttle_reasons == expected


def test_throttle_reasons_fall_back_to_the_old_call_and_to_none() -> None:
    nvml = FakeNvml([FakeGpu(throttle_mask=0x20)])
    nvml.nvmlDeviceGetCurrentClocksEventReasons = None  # type: ignore[method-assign,assignment]
    nvml.nvmlDeviceGetCurrentClocksThrottleReasons = lambda gpu: gpu.throttle_mask  # type: ignore[attr-defined]
    assert _nvml.read_gpus(nvml).gpus[0].throttle_reasons == ["sw_thermal_slowdown"]

    del nvml.nvmlDeviceGetCurrentClocksThrottleReasons  # a binding with neither call
    assert _nvml.read_gpus(nvml).gpus[0].throttle_reasons is None


def test_cuda_version_falls_back_to_the_old_call() -> None:
    nvml = FakeNvml(two_gpus())
    nvml.nvmlSystemGetCudaDriverVersion_v2 = None  # type: ignore[method-assign,assignment]

    assert _nvml.read_gpus(nvml).cuda_version == "12.2"


@pytest.mark.parametrize(
    ("version", "expected"),
    [(12040, "12.4"), (11080, "11.8"), (12060, "12.6"), (13000, "13.0"), (10010, "10.1")],
)
def test_cuda_version_string(version: int, expected: str) -> None:
    assert _nvml.cuda_version_string(version) == expected


def test_real_nvml_when_a_gpu_is_present() -> None:
    report = _nvml.read_gpus()

    if report.count == 0:
        assert isinstance(report.reason, str)
        assert report.reason
        pytest.skip(f"no NVIDIA GPU on this machine: real NVML path not exercised ({report.reason})")
    assert report.driver_version
    assert report.cuda_version is not None
    assert re.fullmatch(r"\d+\.\d+", report.cuda_version)
    for gpu in report.gpus:
        info: dict[str, Any] = gpu.as_dict()
        assert info["name"]
        assert info["memory_total_mb"] > 0
        assert 0 <= info["memory_used_mb"] <= info["memory_total_mb"]
        assert info["compute_capability"] is None or re.fullmatch(r"\d+\.\d+", info["compute_capability"])
