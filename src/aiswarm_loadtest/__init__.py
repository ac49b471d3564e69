"""The aiswarm.swarm load and chaos harness: Locust helpers, SLO gates, fault runner, reports."""

__version__ = "0.1.0"
