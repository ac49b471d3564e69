"""Fixtures for the lab stage: the lab's inventory and its generated secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventories" / "lab" / "hosts.yml"
SECRETS = ROOT / "inventories" / "lab" / ".secrets"


@pytest.fixture(scope="session")
def inventory() -> dict:
    """`ansible-inventory --list` of the lab: groups (hosts, children) and `_meta.hostvars`."""
    ansible_inventory = Path(sys.executable).parent / "ansible-inventory"
    out = subprocess.run(
        [str(ansible_inventory), "-i", str(INVENTORY), "--list"], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


@pytest.fixture(scope="session")
def hostvars(inventory: dict) -> dict:
    return inventory["_meta"]["hostvars"]


@pytest.fixture(scope="session")
def groups(inventory: dict) -> dict[str, list[str]]:
    """Every group's hosts, children's hosts included (as Ansible's `groups`)."""

    def hosts(group: str) -> list[str]:
        entry = inventory.get(group, {})
        found = list(entry.get("hosts", []))
        for child in entry.get("children", []):
            found += hosts(child)
        return sorted(set(found))

    return {group: hosts(group) for group in inventory if group != "_meta"}


@pytest.fixture(scope="session")
def gateway_address(hostvars: dict) -> str:
    return hostvars["oracle"]["swarm_private_address"]


@pytest.fixture(scope="session")
def secret():
    def read(name: str) -> str:
        path = SECRETS / name
        if not path.is_file():
            pytest.fail(f"{path} is missing: the lab was not provisioned (make lab)")
        return path.read_text().split(" salt=")[0].strip()

    return read
