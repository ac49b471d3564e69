#!/usr/bin/python
# Copyright: (c) 2026, aiswarm.swarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to aiswarm.swarm
from __future__ import annotations

DOCUMENTATION = r"""
---
module: openai_endpoint
short_description: Wait until an OpenAI-compatible endpoint lists its model and answers a real request
version_added: 0.1.0
description:
  - Polls an OpenAI-compatible API (vLLM, llama.cpp server, the LiteLLM gateway) until
    C(GET /models) lists O(model) (or any model when O(model) is not given) and, unless
    O(probe=none), a tiny real request (C(POST /chat/completions) or C(POST /completions) with
    O(max_tokens) tokens) completes. Retries every O(delay) seconds until O(timeout).
  - A rejected API key (HTTP 401 or 403) fails at once with a message saying so; the key itself
    is never printed. After the timeout the failure names the URL, the number of attempts and the
    last error; when the model is missing it lists the models the endpoint does serve.
  - Read-only, it changes nothing on the endpoint or the host, so it also probes in check mode.
author:
  - aiswarm.swarm maintainers (@aiswarm)
extends_documentation_fragment:
  - aiswarm.swarm.attributes
  - aiswarm.swarm.attributes.READ_ONLY
options:
  base_url:
    description:
      - Base URL of the API including its version prefix, for example C(http://10.0.0.2:8000/v1).
    type: str
    required: true
  api_key:
    description:
      - Bearer token sent in the C(Authorization) header (the engine's C(--api-key) or a gateway key).
    type: str
  model:
    description:
      - Model id that C(GET /models) must list and that the probe request uses.
      - When not given, the first listed model is probed.
    type: str
  probe:
    description:
      - V(chat) sends C(POST /chat/completions), V(completion) sends C(POST /completions),
        V(none) only checks C(GET /models).
    type: str
    choices: [chat, completion, none]
    default: chat
  max_tokens:
    description:
      - Tokens the probe asks for, between 1 and 4, so the probe stays cheap.
    type: int
    default: 1
  timeout:
    description:
      - Seconds to keep retrying before failing. At least one attempt is always made.
    type: int
    default: 300
  delay:
    description:
      - Seconds to wait between attempts.
    type: float
    default: 5
  request_timeout:
    description:
      - Socket timeout in seconds for each HTTP request. A model still loading may take long to
        answer its first completion; raise this rather than O(timeout) for that case.
    type: float
    default: 30
  validate_certs:
    description:
      - Verify the TLS certificate of an C(https) O(base_url).
    type: bool
    default: true
seealso:
  - module: aiswarm.swarm.model_artifact
"""

EXAMPLES = r"""
---
- name: Wait until vLLM serves the model and completes a request
  aiswarm.swarm.openai_endpoint:
    base_url: "http://{{ vllm_listen_address }}:{{ vllm_port }}/v1"
    api_key: "{{ vllm_api_key }}"
    model: "{{ vllm_served_model_name }}"
    timeout: 900  # loading 128K-context weights onto the GPU takes minutes
    delay: 10
  register: __vllm_ready

- name: Report the probe latency
  ansible.builtin.debug:
    msg: "{{ __vllm_ready.model }} answered in {{ __vllm_ready.latency_ms }} ms"

- name: Wait until the gateway routes the chat group
  aiswarm.swarm.openai_endpoint:
    base_url: "http://{{ litellm_listen_address }}:{{ litellm_port }}/v1"
    api_key: "{{ litellm_master_key }}"
    model: swarm-chat
    timeout: 120
    delay: 3

- name: Check that llama.cpp lists a model, without a completion
  aiswarm.swarm.openai_endpoint:
    base_url: http://127.0.0.1:8080/v1
    probe: none
"""

RETURN = r"""
models:
  description: Model ids listed by C(GET /models).
  returned: success
  type: list
  elements: str
  sample: ["swarm-chat"]
model:
  description: The model that answered the probe (the response's C(model) field when present).
  returned: success
  type: str
  sample: swarm-chat
latency_ms:
  description: Latency of the probe request in milliseconds (of C(GET /models) when O(probe=none)).
  returned: success
  type: float
  sample: 41.7
attempts:
  description: Number of attempts until the endpoint was ready.
  returned: success
  type: int
  sample: 3
elapsed_s:
  description: Seconds spent waiting.
  returned: success
  type: float
  sample: 10.12
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.aiswarm.swarm.plugins.module_utils import _openai_endpoint as oe


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "base_url": {"type": "str", "required": True},
            "api_key": {"type": "str", "no_log": True},
            "model": {"type": "str"},
            "probe": {"type": "str", "choices": list(oe.PROBES), "default": "chat"},
            "max_tokens": {"type": "int", "default": 1, "no_log": False},
            "timeout": {"type": "int", "default": 300},
            "delay": {"type": "float", "default": 5},
            "request_timeout": {"type": "float", "default": 30},
            "validate_certs": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not 1 <= p["max_tokens"] <= 4:
        module.fail_json(msg=f"max_tokens must be between 1 and 4, got {p['max_tokens']}")
    if p["timeout"] < 0 or p["delay"] < 0 or p["request_timeout"] <= 0:
        module.fail_json(msg="timeout and delay must be >= 0 and request_timeout > 0 (seconds)")
    try:
        endpoint = oe.Endpoint(p["base_url"], p["api_key"], p["request_timeout"], p["validate_certs"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    try:
        result = oe.wait_ready(endpoint, p["model"], p["probe"], p["max_tokens"], p["timeout"], p["delay"])
    except oe.ModelMissing as exc:
        module.fail_json(msg=str(exc), models=exc.models)
    except oe.EndpointError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(
        changed=False,
        models=result.models,
        model=result.model,
        latency_ms=result.latency_ms,
        attempts=result.attempts,
        elapsed_s=result.elapsed_s,
    )


if __name__ == "__main__":
    main()
