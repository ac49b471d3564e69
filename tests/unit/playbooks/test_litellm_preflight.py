"""The litellm role's pre-flight refuses lab-only stand-ins, keys without stand-ins in a lab, and bad budgets.

Runs the role's preflight.yml (only) on the controller against localhost: nothing is installed
or contacted. Each case names the variable it expects in the failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aiswarm.router.spend import SpendConfig

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = """\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: aiswarm.swarm.litellm
        tasks_from: preflight.yml
        public: true
    - name: Write spend.json as configure.yml renders it
      ansible.builtin.copy:
        content: "{{ _litellm_spend | to_nice_json }}"
        dest: "{{ spend_out }}"
        mode: '0600'
      when: spend_out is defined
"""
BASE = {
    "litellm_master_key": "sk-0123456789abcdef",
    "swarm_private_address": "127.0.0.1",
    "litellm_cache_enabled": False,
    "litellm_database_enabled": False,
    "swarm_lab": True,
    "ansible_python_interpreter": sys.executable,
}
STANDINS = {"openrouter": "http://172.30.57.1:18100/api/v1", "gemini": "http://172.30.57.1:18100/v1beta"}


def preflight(tmp_path: Path, **extra: Any) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    binary = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run(
        [str(binary), "-i", "localhost,", str(playbook), "-e", json.dumps({**BASE, **extra})],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def test_stand_ins_with_test_keys_and_budgets_pass_in_a_lab(tmp_path: Path) -> None:
    proc = preflight(
        tmp_path,
        litellm_cloud_standins=STANDINS,
        litellm_gemini_api_keys=["standin-key-0", "standin-key-1"],
        litellm_openrouter_api_keys=["standin-key-2"],
        litellm_spend_budgets_usd={"swarm": 20.0, "premium": "15"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "standin-key-" not in proc.stdout


def test_spend_json_renders_with_numbers_and_the_catalogs_groups(tmp_path: Path) -> None:
    out = tmp_path / "spend.json"
    budgets = {"swarm": 20, "premium": "15"}
    keys = {"litellm_cloud_standins": STANDINS, "litellm_openrouter_api_keys": ["standin-key-2"]}
    proc = preflight(tmp_path, litellm_spend_budgets_usd=budgets, spend_out=str(out), **keys)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = SpendConfig.load(out)
    assert config.budgets == {"swarm": 20.0, "premium": 15.0} and config.overrun_ratio == 1.2
    assert config.groups["hermes-3-405b"].paid and config.groups["hermes-3-405b"].tier == "premium"
    assert not config.groups["deepseek-v3.1-free"].paid
    assert "gemini-flash" not in config.groups  # no Gemini key: not deployed


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"swarm_lab": False, "litellm_cloud_standins": STANDINS}, "refused outside an inventory"),
        ({"litellm_cloud_standins": {"gemini": "172.30.57.1:18100"}}, "http(s) base URL"),
        ({"litellm_gemini_api_keys": ["standin-key-0"]}, "a lab reaches cloud tiers only through stand-ins"),
        (
            {"litellm_spend_budgets_usd": {"premium": 0}},
            "litellm_spend_budgets_usd.premium: expected a positive",
        ),
        (
            {"litellm_spend_budgets_usd": {"swarm": "twenty"}},
            "litellm_spend_budgets_usd.swarm: expected a positive",
        ),
        ({"litellm_spend_overrun_ratio": 0.5}, "litellm_spend_overrun_ratio: expected a number >= 1"),
    ],
    ids=[
        "standins-outside-lab",
        "standin-not-url",
        "lab-key-without-standin",
        "zero-budget",
        "text-budget",
        "ratio-below-1",
    ],
)
def test_bad_settings_are_refused_naming_the_variable(tmp_path: Path, extra: dict, expected: str) -> None:
    proc = preflight(tmp_path, **extra)
    assert proc.returncode != 0
    assert expected in proc.stdout, proc.stdout
    assert "standin-key-0" not in proc.stdout
