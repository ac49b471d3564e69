"""The agent's Prometheus metrics, built at each scrape from the last check round (a custom
collector: a scrape never sees a round half-written). Names are a contract: alerts and
dashboards use them.

=================================================  =================================================
metric                                             meaning
=================================================  =================================================
aiswarm_agent_up                                   1 (the agent answers)
aiswarm_agent_gpus                                 GPUs NVML reports (0 without a GPU or driver)
aiswarm_agent_gpu_temperature_celsius{gpu,name}    core temperature
aiswarm_agent_gpu_power_watts{gpu,name}            power draw
aiswarm_agent_gpu_utilization_ratio{gpu,name}      busy share of the last sample period, 0..1
aiswarm_agent_gpu_memory_used_bytes{gpu,name}      memory in use
aiswarm_agent_gpu_memory_total_bytes{gpu,name}     memory in all
aiswarm_agent_gpu_throttled{gpu,name,reason}       1 while that clocks event reason holds, else 0
aiswarm_agent_host_temperature_celsius{sensor}     hwmon and thermal zone sensors
aiswarm_agent_service_up{service}                  1 while the unit is active and its check passes
aiswarm_agent_service_consecutive_failures{...}    failed checks in a row
aiswarm_agent_actions_total{service,action,reason} restart, drain, undrain, budget_exhausted
aiswarm_agent_restart_budget_exhausted{service}    1 while the service's restart budget is spent
aiswarm_agent_draining{service}                    1 while the engine is drained
=================================================  =================================================

A GPU figure NVML cannot give (power on many boards) is left out rather than reported as 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aiswarm.agent.agent import Agent
from aiswarm.agent.probes import THROTTLE_REASONS

MIB = 1024 * 1024
GPU_LABELS = ["gpu", "name"]


class AgentCollector(Collector):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        snapshot, actions, draining = self.agent.metrics_view()
        report: dict[str, Any] = snapshot.gpu_report if snapshot else {}
        gpus = report.get("gpus") or []
        yield GaugeMetricFamily("aiswarm_agent_up", "1 while the swarm agent answers", value=1)
        yield GaugeMetricFamily("aiswarm_agent_gpus", "GPUs NVML reports on this node", value=len(gpus))
        yield from _gpu_families(gpus)

        host = GaugeMetricFamily(
            "aiswarm_agent_host_temperature_celsius", "Host temperature sensors (hwmon, thermal zones)",
            labels=["sensor"],
        )  # fmt: skip
        for sensor, value in sorted((snapshot.host_temperatures if snapshot else {}).items()):
            host.add_metric([sensor], value)
        yield host

        views = snapshot.services if snapshot else {}
        families = {
            "up": GaugeMetricFamily(
                "aiswarm_agent_service_up", "1 while its unit is active and its health check passes",
                labels=["service"],
            ),
            "failures": GaugeMetricFamily(
                "aiswarm_agent_service_consecutive_failures", "Failed checks of the service in a row",
                labels=["service"],
            ),
            "exhausted": GaugeMetricFamily(
                "aiswarm_agent_restart_budget_exhausted",
                "1 while the service needs a restart and its restart budget is spent", labels=["service"],
            ),
            "draining": GaugeMetricFamily(
                "aiswarm_agent_draining", "1 while the engine is drained (the gateway sends it nothing new)",
                labels=["service"],
            ),
        }  # fmt: skip
        for spec in self.agent.config.services:
            view = views.get(spec.name)
            families["up"].add_metric([spec.name], 1 if view is not None and view.up else 0)
            families["failures"].add_metric([spec.name], view.failures if view else 0)
            families["exhausted"].add_metric([spec.name], 1 if view is not None and view.exhausted else 0)
            families["draining"].add_metric([spec.name], 1 if draining.get(spec.name) else 0)
        yield from families.values()

        counted = CounterMetricFamily(
            "aiswarm_agent_actions", "Actions the swarm agent took, by service, action and reason",
            labels=["service", "action", "reason"],
        )  # fmt: skip
        for labels, count in sorted(actions.items()):
            counted.add_metric(list(labels), count)
        yield counted


def _gpu_families(gpus: list[dict[str, Any]]) -> Iterator[Metric]:
    def family(name: str, text: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, text, labels=GPU_LABELS + list(extra))

    temperature = family("aiswarm_agent_gpu_temperature_celsius", "GPU core temperature")
    power = family("aiswarm_agent_gpu_power_watts", "GPU power draw")
    utilization = family(
        "aiswarm_agent_gpu_utilization_ratio", "GPU busy share of the last sample period (0..1)"
    )
    used = family("aiswarm_agent_gpu_memory_used_bytes", "GPU memory in use")
    total = family("aiswarm_agent_gpu_memory_total_bytes", "GPU memory in all")
    throttled = family(
        "aiswarm_agent_gpu_throttled", "1 while this clocks event (throttle) reason holds the clocks down",
        ("reason",),
    )  # fmt: skip
    for gpu in gpus:
        labels = [str(gpu["index"]), gpu.get("name") or ""]
        for target, value in (
            (temperature, gpu.get("temperature_c")),
            (power, gpu.get("power_draw_w")),
            (
                utilization,
                None if gpu.get("utilization_gpu_pct") is None else gpu["utilization_gpu_pct"] / 100.0,
            ),
            (used, None if gpu.get("memory_used_mb") is None else gpu["memory_used_mb"] * MIB),
            (total, None if gpu.get("memory_total_mb") is None else gpu["memory_total_mb"] * MIB),
        ):
            if value is not None:
                target.add_metric(labels, value)
        active = gpu.get("throttle_reasons")
        if active is not None:
            for reason in THROTTLE_REASONS:
                throttled.add_metric([*labels, reason], 1 if reason in active else 0)
    yield from (temperature, power, utilization, used, total, throttled)
