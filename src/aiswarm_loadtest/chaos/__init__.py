"""Chaos experiments on the swarm: scenarios as data, fault injection with guaranteed rollback,
failover measurements and reports. Command line: `python -m aiswarm_loadtest.chaos --help`.
"""

from aiswarm_loadtest.chaos.scenario import Scenario, ScenarioError, load_scenario, load_scenarios

__all__ = ["Scenario", "ScenarioError", "load_scenario", "load_scenarios"]
