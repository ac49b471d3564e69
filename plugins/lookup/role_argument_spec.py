# Copyright: (c) 2026, aiswarm.swarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: role_argument_spec
short_description: The argument spec of one of this collection's roles
description:
  - Returns the C(options) of a role entry point from the role's C(meta/argument_specs.yml),
    for M(ansible.builtin.validate_argument_spec). C(playbooks/validate.yml) uses it to check
    every role's inputs for every host before site.yml changes anything.
options:
  _terms:
    description: Role names of this collection (without the C(aiswarm.swarm.) prefix).
    required: true
    type: list
    elements: str
  entry_point:
    description: The entry point whose options to return.
    type: str
    default: main
"""

EXAMPLES = r"""
---
- name: Validate the redis role's inputs for this host
  ansible.builtin.validate_argument_spec:
    argument_spec: "{{ lookup('aiswarm.swarm.role_argument_spec', 'redis') }}"
"""

RETURN = r"""
_raw:
  description: One dict of options per role named.
  type: list
  elements: dict
"""

from pathlib import Path

import yaml
from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

_ROLES = Path(__file__).resolve().parents[2] / "roles"


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        entry_point = self.get_option("entry_point")
        specs = []
        for role in terms:
            path = _ROLES / str(role) / "meta" / "argument_specs.yml"
            if not path.is_file():
                known = sorted(p.parents[1].name for p in _ROLES.glob("*/meta/argument_specs.yml"))
                raise AnsibleLookupError(
                    f"role '{role}' has no argument spec; roles with one: {', '.join(known)}"
                )
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            try:
                specs.append(data["argument_specs"][entry_point].get("options", {}))
            except KeyError as exc:
                raise AnsibleLookupError(f"{path}: no entry point '{entry_point}'") from exc
        return specs
