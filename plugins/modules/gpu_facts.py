#!/usr/bin/python
# Copyright: (c) 2026, aiswarm.swarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Gather NVIDIA GPU facts through NVML
version_added: "0.1.0"
description:
  - Reads every NVIDIA GPU of the host through NVML (the library behind C(nvidia-smi)) and sets
    them as facts (name, UUID, memory, temperature, utilization, power, compute capability and
    the reasons its clocks are held down now), plus the driver and CUDA driver versions.
  - A host without an NVIDIA driver, without C(libnvidia-ml) or without the Python binding
    C(pynvml) gets an empty GPU list and a human-readable RV(ansible_facts.aiswarm_gpu_reason) fact,
    not a failure, unless O(required=true).
  - A query that a GPU does not support (power draw on many boards) yields V(null) for that field.
author:
  - aiswarm.swarm maintainers (@aiswarm)
extends_documentation_fragment:
  - aiswarm.swarm.attributes
  - aiswarm.swarm.attributes.READ_ONLY
options:
  required:
    description:
      - Fail when no GPU is found, with the reason as the message.
      - Leave V(false) on hosts where a GPU is optional, such as a gateway that may run on a CPU-only machine.
    type: bool
    default: false
requirements:
  - pynvml (pip package C(nvidia-ml-py)) on the managed host, only where GPUs are to be found
  - An NVIDIA driver providing C(libnvidia-ml.so.1), only where GPUs are to be found
notes:
  - Memory figures are in MiB, as C(nvidia-smi) prints them.
"""

EXAMPLES = r"""
---
- name: Gather GPU facts
  aiswarm.swarm.gpu_facts:

- name: Show how many GPUs the host has, or why it has none
  ansible.builtin.debug:
    msg: >-
      {{ ansible_facts['aiswarm_gpu_count'] }} GPU(s);
      {{ ansible_facts['aiswarm_gpu_reason'] | default('', true) }}

- name: Require a GPU on inference hosts
  aiswarm.swarm.gpu_facts:
    required: true
  when: "'inference' in group_names"
"""

RETURN = r"""
ansible_facts:
  description: GPU facts of the host.
  returned: always
  type: dict
  contains:
    aiswarm_gpus:
      description: One entry per GPU, in NVML index order. Fields a GPU cannot report are V(null).
      returned: always
      type: list
      elements: dict
      sample:
        - index: 0
          name: NVIDIA GeForce RTX 4090
          uuid: GPU-5c5f5e1a-0b8e-4f7c-9a43-3c1f2d1b7e10
          memory_total_mb: 24564
          memory_used_mb: 412
          memory_free_mb: 24152
          temperature_c: 41
          utilization_gpu_pct: 3
          utilization_memory_pct: 1
          power_draw_w: 31.2
          power_limit_w: 450.0
          compute_capability: "8.9"
          throttle_reasons: [gpu_idle]
    aiswarm_gpu_count:
      description: Number of GPUs in RV(ansible_facts.aiswarm_gpus).
      returned: always
      type: int
      sample: 1
    aiswarm_gpu_driver_version:
      description: NVIDIA driver version, V(null) without a driver.
      returned: always
      type: str
      sample: "550.54.14"
    aiswarm_gpu_cuda_version:
      description: Highest CUDA version the driver supports, V(null) without a driver.
      returned: always
      type: str
      sample: "12.4"
    aiswarm_gpu_reason:
      description:
        - Why the GPU list is empty or incomplete (no pynvml, no driver, a GPU that could not be read).
        - V(null) when every GPU was read.
      returned: always
      type: str
      sample: >-
        NVML could not be initialised (NVML Shared Library Not Found):
        no NVIDIA driver or libnvidia-ml on this host
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.aiswarm.swarm.plugins.module_utils._nvml import (
    NO_PYNVML_REASON,
    GpuReport,
    read_gpus,
)


def gpu_facts(report: GpuReport) -> dict[str, object]:
    """Map a GPU report to the facts this module sets."""
    return {
        "aiswarm_gpus": [gpu.as_dict() for gpu in report.gpus],
        "aiswarm_gpu_count": report.count,
        "aiswarm_gpu_driver_version": report.driver_version,
        "aiswarm_gpu_cuda_version": report.cuda_version,
        "aiswarm_gpu_reason": report.reason,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={"required": {"type": "bool", "default": False}},
        supports_check_mode=True,
    )
    report = read_gpus()
    if module.params["required"] and report.count == 0:
        if report.reason == NO_PYNVML_REASON:
            module.fail_json(msg=missing_required_lib("pynvml (pip package nvidia-ml-py)"))
        module.fail_json(msg=f"required=true but no NVIDIA GPU was found: {report.reason}")
    module.exit_json(changed=False, ansible_facts=gpu_facts(report))


if __name__ == "__main__":
    main()
