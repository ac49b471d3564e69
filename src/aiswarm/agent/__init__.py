"""The swarm agent: one per node; watches the node's GPUs, temperatures and services, acts within a budget.

- reads every GPU through the collection's NVML reader (``aiswarm.agent._nvml``, a copy of
  ``plugins/module_utils/_nvml.py`` the swarm_agent role installs), the host's hwmon and thermal
  sensors, and each configured service's systemd unit and HTTP health URL (`aiswarm.agent.probes`);
- decides (`aiswarm.agent.decide`, pure): restart a service that failed its checks N times in a
  row, with an exponential back-off and a cap per hour, never one stopped on purpose; drain an
  engine whose GPU runs above its limit, and restore it after the GPU stayed below the resume
  temperature for the hold time;
- acts and tells (`aiswarm.agent.agent`): ``systemctl restart``, one JSON line per action in the
  journal, and an HTTP API (`aiswarm.agent.api`) with /metrics, /health and /v1/drain, which the
  gateway's engine guard reads to take a draining engine out of rotation.

Run: ``python -m aiswarm.agent --config /etc/aiswarm/agent/agent.json`` (see ``__main__``).
"""
