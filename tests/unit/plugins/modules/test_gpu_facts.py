# SPDX-License-Identifier: GPL-3.0-or-later
"""Whole-module tests for aiswarm.swarm.gpu_facts with a fake NVML layer."""

from __future__ import annotations

from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.aiswarm.swarm.plugins.module_utils import _nvml
from ansible_collections.aiswarm.swarm.plugins.modules import gpu_facts
from ansible_collections.aiswarm.swarm.tests.unit.plugins.fake_nvml import (
    FakeGpu,
    FakeNvml,
    NVMLError_LibraryNotFound,
)
from ansible_collections.aiswarm.swarm.tests.unit.plugins.modules.utils import ExitJson, FailJson

MIB = 1024 * 1024


def fake_gpu(index: int, name: str, total_mib: int, **overrides: Any) -> FakeGpu:
    values = {
        "uuid": f"GPU-{index:04d}",
        "used_mib": 512,
        "temperature": 40 + index,
        "gpu_pct": 5,
        "memory_pct": 2,
        "power_mw": 30000,
        "limit_mw": 320000,
        "capability": (8, 6),
    }
    return FakeGpu(name=name, total_mib=total_mib, **{**values, **overrides})


def run_module(
    monkeypatch: pytest.MonkeyPatch, nvml: Any, args: dict[str, Any] | None = None
) -> dict[str, Any]:
    monkeypatch.setattr(_nvml, "pynvml", nvml)
    with patch_module_args(args or {}), pytest.raises(ExitJson) as result:
        gpu_facts.main()
    return result.value.args[0]


def fail_module(monkeypatch: pytest.MonkeyPatch, nvml: Any, args: dict[str, Any]) -> str:
    monkeypatch.setattr(_nvml, "pynvml", nvml)
    with patch_module_args(args), pytest.raises(FailJson) as result:
        gpu_facts.main()
    return result.value.args[0]["msg"]


def test_two_gpus_become_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml(
        [fake_gpu(0, "NVIDIA GeForce RTX 4090", 24564), fake_gpu(1, "NVIDIA GeForce RTX 3080", 10240)]
    )
    result = run_module(monkeypatch, nvml)
    facts = result["ansible_facts"]

    assert result["changed"] is False
    assert facts["aiswarm_gpu_count"] == 2
    assert facts["aiswarm_gpu_driver_version"] == "550.54.14"
    assert facts["aiswarm_gpu_cuda_version"] == "12.4"
    assert facts["aiswarm_gpu_reason"] is None
    assert [gpu["name"] for gpu in facts["aiswarm_gpus"]] == [
        "NVIDIA GeForce RTX 4090",
        "NVIDIA GeForce RTX 3080",
    ]
    assert facts["aiswarm_gpus"][1] == {
        "index": 1,
        "name": "NVIDIA GeForce RTX 3080",
        "uuid": "GPU-0001",
        "memory_total_mb": 10240,
        "memory_used_mb": 512,
        "memory_free_mb": 9728,
        "temperature_c": 41,
        "utilization_gpu_pct": 5,
        "utilization_memory_pct": 2,
        "power_draw_w": 30.0,
        "power_limit_w": 320.0,
        "compute_capability": "8.6",
        "throttle_reasons": [],
    }
    assert nvml.shutdowns == 1


def test_check_mode_reads_the_same_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml([fake_gpu(0, "NVIDIA GeForce RTX 4090", 24564)])
    normal = run_module(monkeypatch, nvml)
    checked = run_module(monkeypatch, nvml, {"_ansible_check_mode": True})

    assert checked["ansible_facts"] == normal["ansible_facts"]
    assert checked["changed"] is False


def test_no_driver_gives_no_gpus_and_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    facts = run_module(monkeypatch, FakeNvml([], init_error=NVMLError_LibraryNotFound()))["ansible_facts"]

    assert facts["aiswarm_gpus"] == []
    assert facts["aiswarm_gpu_count"] == 0
    assert facts["aiswarm_gpu_driver_version"] is None
    assert facts["aiswarm_gpu_cuda_version"] is None
    assert "NVML Shared Library Not Found" in facts["aiswarm_gpu_reason"]


def test_missing_pynvml_gives_no_gpus_and_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    facts = run_module(monkeypatch, None)["ansible_facts"]

    assert (facts["aiswarm_gpus"], facts["aiswarm_gpu_count"]) == ([], 0)
    assert "nvidia-ml-py" in facts["aiswarm_gpu_reason"]


def test_unsupported_power_query_reports_null(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml([fake_gpu(0, "NVIDIA RTX A2000 Laptop GPU", 4096, unsupported={"power"})])
    facts = run_module(monkeypatch, nvml)["ansible_facts"]
    gpu = facts["aiswarm_gpus"][0]

    assert gpu["power_draw_w"] is None
    assert gpu["power_limit_w"] == 320.0
    assert gpu["memory_total_mb"] == 4096
    assert facts["aiswarm_gpu_reason"] is None


def test_required_without_gpu_fails_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    msg = fail_module(monkeypatch, FakeNvml([], init_error=NVMLError_LibraryNotFound()), {"required": True})

    assert msg.startswith("required=true but no NVIDIA GPU was found: NVML could not be initialised")


def test_required_without_pynvml_fails_with_missing_required_lib(monkeypatch: pytest.MonkeyPatch) -> None:
    msg = fail_module(monkeypatch, None, {"required": True})

    assert "Failed to import the required Python library (pynvml (pip package nvidia-ml-py))" in msg


def test_required_with_a_gpu_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    facts = run_module(monkeypatch, FakeNvml([fake_gpu(0, "Tesla T4", 15360)]), {"required": True})

    assert facts["ansible_facts"]["aiswarm_gpu_count"] == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"required": "maybe"}, "argument 'required' is of type str"),
        ({"gpus": 1}, "Unsupported parameters"),
    ],
)
def test_bad_arguments_fail_naming_the_option(
    monkeypatch: pytest.MonkeyPatch, args: dict[str, Any], expected: str
) -> None:
    assert expected in fail_module(monkeypatch, FakeNvml([]), args)
