"""The journal role's pre-flight refuses https without its certificates, an unknown transport, a bad
port, a missing collector group and limits journalctl cannot read, naming the variable.

Runs the role's preflight.yml (only) on the controller against localhost, which is its own
collector (journal_collector_group: all): nothing is installed or contacted. The key file holds a
marker that must never appear in the output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = """\
- hosts: localhost
  connection: local
  gather_facts: true
  gather_subset: [min]
  tasks:
    - ansible.builtin.include_role:
        name: aiswarm.swarm.journal
        tasks_from: preflight.yml
"""
KEY_MARKER = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC-not-a-real-key"
CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
KEY = f"-----BEGIN PRIVATE KEY-----\n{KEY_MARKER}\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    files = {"ca.pem": CERT, "collector.pem": CERT, "collector.key": KEY}
    for name, content in files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    return {
        "journal_tls_ca_file": str(tmp_path / "ca.pem"),
        "journal_tls_cert_file": str(tmp_path / "collector.pem"),
        "journal_tls_key_file": str(tmp_path / "collector.key"),
    }


def preflight(tmp_path: Path, **extra: Any) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    base = {
        "journal_collector_group": "all",
        "swarm_private_address": "10.20.0.1",
        "ansible_python_interpreter": sys.executable,
    }
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    binary = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run(
        [str(binary), "-i", "localhost,", str(playbook), "-e", json.dumps({**base, **extra})],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def test_https_with_its_certificates_passes(tmp_path: Path, pki: dict[str, str]) -> None:
    proc = preflight(tmp_path, **pki)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert KEY_MARKER not in proc.stdout + proc.stderr


def test_http_needs_no_certificates(tmp_path: Path) -> None:
    proc = preflight(tmp_path, journal_transport="http")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"journal_transport": "tls"}, "journal_transport: expected https or http, got 'tls'"),
        (
            {"journal_remote_port": 70000},
            "journal_remote_port: expected a TCP port within 1-65535, got '70000'",
        ),
        ({"journal_remote_port": "19532/tcp"}, "journal_remote_port: expected a TCP port"),
        ({"journal_collector_group": "gateway"}, "journal_collector_group: the group 'gateway' has no host"),
        ({"journal_collector_address": "https://10.20.0.1:19532"}, "journal_collector_address: expected"),
        ({"journal_remote_listen_address": "0.0.0.0"}, "journal_remote_listen_address: expected"),
        ({"journal_remote_max_use": "4 GB"}, "journal_remote_max_use must be a size"),
        ({"journal_remote_max_retention": "a month"}, "got 'a month'"),
        ({"journal_remote_vacuum_every": "0"}, "journal_remote_vacuum_every must be systemd time spans"),
    ],
    ids=[
        "unknown-transport",
        "port-out-of-range",
        "port-not-a-number",
        "empty-collector-group",
        "address-with-scheme",
        "listen-everywhere",
        "size-with-space",
        "retention-in-words",
        "zero-interval",
    ],
)
def test_bad_settings_are_refused_naming_the_variable(
    tmp_path: Path, pki: dict[str, str], extra: dict, expected: str
) -> None:
    proc = preflight(tmp_path, **{**pki, **extra})
    assert proc.returncode != 0
    assert expected in proc.stdout, proc.stdout
    assert KEY_MARKER not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("missing", "replacement", "expected"),
    [
        ("journal_tls_ca_file", "", "journal_tls_ca_file: journal_transport is https"),
        ("journal_tls_ca_file", "/nonexistent/ca.pem", "got '/nonexistent/ca.pem'"),
        ("journal_tls_cert_file", "", "journal_tls_cert_file: journal_transport is https"),
        ("journal_tls_key_file", "", "journal_tls_key_file: journal_transport is https"),
    ],
    ids=["no-ca", "ca-not-a-file", "no-cert", "no-key"],
)
def test_https_without_its_certificates_is_refused(
    tmp_path: Path, pki: dict[str, str], missing: str, replacement: str, expected: str
) -> None:
    proc = preflight(tmp_path, **{**pki, missing: replacement})
    assert proc.returncode != 0
    assert expected in proc.stdout, proc.stdout


def test_a_key_file_without_a_private_key_is_refused(tmp_path: Path, pki: dict[str, str]) -> None:
    proc = preflight(tmp_path, **{**pki, "journal_tls_key_file": pki["journal_tls_cert_file"]})
    assert proc.returncode != 0
    assert "journal_tls_key_file: journal_transport is https" in proc.stdout, proc.stdout


def test_an_uploader_needs_only_the_ca(tmp_path: Path, pki: dict[str, str]) -> None:
    """localhost is not the collector when the collector group's first host is another one."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    gateway:\n      hosts:\n        oracle: {swarm_private_address: 10.20.0.10}\n"
        "    workers:\n      hosts:\n        localhost: {ansible_connection: local}\n",
        encoding="utf-8",
    )
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(PLAYBOOK.replace("- hosts: localhost", "- hosts: workers"), encoding="utf-8")
    extra = {"journal_tls_ca_file": pki["journal_tls_ca_file"], "ansible_python_interpreter": sys.executable}
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    binary = Path(sys.executable).parent / "ansible-playbook"
    proc = subprocess.run(
        [str(binary), "-i", str(inventory), str(playbook), "-e", json.dumps(extra)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
