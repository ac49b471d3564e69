"""Code of the aiswarm.swarm collection that runs on the nodes (agent, gateway hooks, tools)."""

__version__ = "0.1.0"
