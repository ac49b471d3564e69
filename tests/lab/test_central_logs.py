"""Central logs (roles/journal): a line logged on the worker reaches the gateway's central journal
within 30 s, from that host, and no lab secret is anywhere in what the nodes shipped.

The commands run in the nodes through `docker exec aiswarm-lab-<host>`. Secret values are read
from inventories/lab/.secrets on the controller and never printed: a failure names the file
whose value was found, not the value.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ROOT / "inventories" / "lab" / ".secrets"
COLLECTOR = "oracle"
WORKER = "thanos"
STORE = "/var/log/journal/remote"
TAG = "aiswarm-journal-test"


def on_node(host: str, *argv: str, timeout: float = 60) -> bytes:
    """Run a command in a lab node and return its standard output."""
    return subprocess.run(
        ["docker", "exec", f"aiswarm-lab-{host}", *argv], check=True, capture_output=True, timeout=timeout
    ).stdout


def central(*argv: str, timeout: float = 60) -> bytes:
    """journalctl over the collector's central store."""
    return on_node(COLLECTOR, "journalctl", f"--directory={STORE}", "--no-pager", *argv, timeout=timeout)


def test_a_line_logged_on_the_worker_reaches_the_gateways_central_journal(hostvars):
    token = f"{TAG} {secrets.token_hex(12)}"
    on_node(WORKER, "logger", "--tag", TAG, "--", token)
    started = time.monotonic()
    while not (found := central("--output=json", f"MESSAGE={token}").strip()):
        if time.monotonic() - started > 30:
            pytest.fail(f"a line logged on {WORKER} was not in {COLLECTOR}:{STORE} within 30 s")
        time.sleep(1)
    print(f"the worker's line was in the central journal after {time.monotonic() - started:.1f} s")
    entry = json.loads(found.splitlines()[0])
    assert (entry["_HOSTNAME"], entry["SYSLOG_IDENTIFIER"]) == (WORKER, TAG)

    # The receiver keeps each sender's entries in its own files, named after its address.
    address = re.escape(hostvars[WORKER]["swarm_private_address"])
    names = on_node(COLLECTOR, "ls", STORE).decode().split()
    holding = [
        name
        for name in names
        if token.encode()
        in on_node(COLLECTOR, "journalctl", f"--file={STORE}/{name}", "--output=cat", f"MESSAGE={token}")
    ]
    assert holding, f"no file of {STORE} holds the line; files: {names}"
    assert all(re.fullmatch(rf"remote-{address}(@.+)?\.journal", name) for name in holding), holding


def _lab_secrets() -> dict[str, str]:
    """Each generated lab secret, keyed by where it comes from."""
    files = sorted(p for p in SECRETS.iterdir() if p.is_file()) if SECRETS.is_dir() else []
    if not files:
        pytest.fail(f"{SECRETS} holds no secret: the lab was not provisioned (make lab)")
    values = {f"{SECRETS.name}/{p.name}": p.read_text().split(" salt=")[0].strip() for p in files}
    master = values.get(f"{SECRETS.name}/litellm_master_key")
    if master is None:
        pytest.fail(f"{SECRETS}/litellm_master_key is missing: the lab was not provisioned (make lab)")
    values["the gateway key, sk- + .secrets/litellm_master_key"] = f"sk-{master}"
    return values


def _search_central_journal() -> tuple[list[str], list[str], set[str], set[str]]:
    """Which secrets appear in the central store, and what the store holds, without returning a value.

    `--output=export` writes every field of every entry: the message (all that `--output=cat`
    prints) and the rest, such as _CMDLINE, where a secret passed as an argument would show.
    Returns (sources of the secrets found, sources of secrets too short to search for, the hosts
    and the units with entries in the store).
    """
    values = _lab_secrets()
    shipped = central("--output=export", timeout=300)
    short = sorted(source for source, value in values.items() if len(value) < 12)
    found = sorted(source for source, value in values.items() if value.encode() in shipped)
    hosts = {m.decode() for m in re.findall(rb"^_HOSTNAME=(\S+)$", shipped, flags=re.MULTILINE)}
    units = {m.decode() for m in re.findall(rb"^_SYSTEMD_UNIT=(\S+)$", shipped, flags=re.MULTILINE)}
    return found, short, hosts, units


def test_no_lab_secret_is_in_the_central_journal(hostvars):
    found, short, hosts, units = _search_central_journal()
    # The search means something only over a store that holds every node and the services that
    # use the secrets.
    assert not short, f"secrets too short to search for: {short}"
    assert set(hostvars) <= hosts, f"the central store has entries from {sorted(hosts)} only"
    expected_units = {"litellm.service", "redis-server.service", "vllm.service", "llamacpp.service"}
    assert expected_units <= units, f"missing units: {sorted(expected_units - units)}"
    assert not found, f"secret values found in the central journal, from: {', '.join(found)}"
