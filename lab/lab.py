"""Start, provision, inspect and remove the local lab: systemd containers named after the
hosts of inventories/lab, on a private Docker network, provisioned by site.yml.

    lab/lab.py up [--no-provision]   build the node image if needed, start the nodes, run site.yml
    lab/lab.py status                show the nodes and their systemd state
    lab/lab.py down [--image]        remove the nodes and the network (and the image)

Stand-in cloud providers: for each entry of the inventory's `lab_standins` ({name: {port,
keys}}), `up` runs the reference backend (`aiswarm_loadtest.refbackend`, a test instrument) on
this machine's address on the lab network (`lab_host_address`), with keys generated into
inventories/lab/.secrets/standin_<name>_key<i> (the files the inventory's password lookups
read); the gateway's cloud tiers point at them (`litellm_cloud_standins`). No request ever
leaves for a real provider. `down` stops them.

The inventory is the single source of truth: node names, addresses, the network and the
published ports come from it (`ansible-inventory --list`), so adding a host to a group and
running `up` again adds a node.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets as secrets_module
import shutil
import signal
import string
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = ROOT / "inventories" / "lab" / "hosts.yml"
LABEL = "io.aiswarm.lab=1"
# Every capability but SYS_RESOURCE, which this kind of host does not have in its bounding
# set: --privileged and --cap-add ALL fail here (docs/lab.md).
CAPABILITIES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
]


class LabError(Exception):
    """A problem the operator can fix; the message says how."""


@dataclass(frozen=True)
class Node:
    host: str
    container: str
    address: str
    ports: tuple[int, ...]
    image: str


@dataclass(frozen=True)
class Standin:
    name: str
    address: str
    port: int
    keys: int


@dataclass(frozen=True)
class Lab:
    network: str
    subnet: str
    image: str
    nodes: tuple[Node, ...]
    standins: tuple[Standin, ...] = ()
    # (address, port) of the lab's Alertmanager receiver (aiswarm_loadtest.alertsink), or None.
    alert_sink: tuple[str, int] | None = None


def _bin(name: str) -> str:
    """Prefer the project's virtualenv for Ansible's commands."""
    venv = Path(os.environ.get("AISWARM_VENV", ROOT / ".venv")) / "bin" / name
    return str(venv) if venv.exists() else name


def run(argv: list[str], *, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(argv, text=True, capture_output=capture, check=False)
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]} is not installed: run lab/bootstrap.sh first") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip()
        raise LabError(f"`{' '.join(argv)}` failed ({proc.returncode}): {detail}")
    return proc


def _require(hostvars: dict, host: str, key: str, kind: type) -> object:
    value = hostvars.get(host, {}).get(key)
    if not isinstance(value, kind):
        expected = {str: "a string", list: "a list", int: "a number"}[kind]
        raise LabError(f"inventories/lab: {key} of host {host}: expected {expected}, got {value!r}")
    return value


def load_lab(inventory: Path = INVENTORY) -> Lab:
    """Read the lab's nodes from the inventory and check every value the lab needs."""
    data = json.loads(run([_bin("ansible-inventory"), "-i", str(inventory), "--list"]).stdout)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    hosts = sorted(_group_hosts(data, "swarm"))
    if not hosts:
        raise LabError(f"{inventory}: the group 'swarm' has no hosts")
    first = hosts[0]
    network = str(_require(hostvars, first, "lab_network_name", str))
    subnet = str(_require(hostvars, first, "lab_network_subnet", str))
    image = str(_require(hostvars, first, "lab_node_image", str))
    prefix = str(_require(hostvars, first, "lab_container_prefix", str))
    nodes = []
    seen: dict[str, str] = {}
    for host in hosts:
        address = str(_require(hostvars, host, "swarm_private_address", str))
        if address in seen:
            raise LabError(
                f"inventories/lab: swarm_private_address {address} is used by {seen[address]} and {host}"
            )
        seen[address] = host
        container = hostvars[host].get("ansible_host", f"{prefix}{host}")
        if container != f"{prefix}{host}":
            raise LabError(
                f"inventories/lab: ansible_host of host {host}: expected its container {prefix}{host}, "
                f"got {container!r}"
            )
        ports = hostvars[host].get("lab_published_ports", [])
        if not isinstance(ports, list) or not all(isinstance(p, int) and 0 < p < 65536 for p in ports):
            raise LabError(
                f"inventories/lab: lab_published_ports of host {host}: expected a list of port numbers"
            )
        nodes.append(Node(host, f"{prefix}{host}", address, tuple(ports), image))
    first_vars = hostvars.get(first, {})
    return Lab(network, subnet, image, tuple(nodes), _standins(first_vars), _alert_sink(first_vars))


def _alert_sink(hostvars: dict) -> tuple[str, int] | None:
    """`lab_alert_sink` ({port}) on `lab_host_address`, checked; None when the lab has none."""
    entry = hostvars.get("lab_alert_sink")
    if not entry:
        return None
    address = hostvars.get("lab_host_address")
    if not isinstance(address, str) or not address:
        raise LabError(
            "inventories/lab: lab_host_address: expected this machine's address on the lab network"
        )
    port = entry.get("port") if isinstance(entry, dict) else None
    if not isinstance(port, int) or not 1024 < port < 65536:
        raise LabError(f"inventories/lab: lab_alert_sink.port: expected a port above 1024, got {port!r}")
    return address, port


def _standins(hostvars: dict) -> tuple[Standin, ...]:
    """`lab_standins` ({name: {port, keys}}) on `lab_host_address`, checked."""
    entries = hostvars.get("lab_standins") or {}
    if not entries:
        return ()
    address = hostvars.get("lab_host_address")
    if not isinstance(address, str) or not address:
        raise LabError(
            "inventories/lab: lab_host_address: expected this machine's address on the lab network"
        )
    if not isinstance(entries, dict):
        raise LabError(f"inventories/lab: lab_standins: expected {{name: {{port, keys}}}}, got {entries!r}")
    standins = []
    for name, spec in sorted(entries.items()):
        port, keys = (spec or {}).get("port"), (spec or {}).get("keys", 1)
        if not isinstance(port, int) or not 1024 < port < 65536:
            raise LabError(
                f"inventories/lab: lab_standins.{name}.port: expected a port above 1024, got {port!r}"
            )
        if not isinstance(keys, int) or not 1 <= keys <= 8:
            raise LabError(f"inventories/lab: lab_standins.{name}.keys: expected 1 to 8 keys, got {keys!r}")
        standins.append(Standin(str(name), address, port, keys))
    return tuple(standins)


def _group_hosts(data: dict, group: str) -> set[str]:
    entry = data.get(group, {})
    hosts = set(entry.get("hosts", []))
    for child in entry.get("children", []):
        hosts |= _group_hosts(data, child)
    return hosts


def check_engine() -> None:
    if shutil.which("docker") is None:
        raise LabError("the docker client is missing: run lab/bootstrap.sh (as root on Debian) first")
    if run(["docker", "info"], check=False).returncode != 0:
        raise LabError("no Docker engine answers: run lab/bootstrap.sh (as root) to install and start one")


def ensure_image(lab: Lab) -> None:
    if run(["docker", "image", "inspect", lab.image], check=False).returncode == 0:
        return
    if os.geteuid() != 0:
        raise LabError(f"the node image {lab.image} is missing and building it needs root: run as root")
    env = dict(os.environ, AISWARM_NODE_IMAGE=lab.image)
    subprocess.run(["bash", str(ROOT / "lab" / "build-image.sh")], check=True, env=env)


def ensure_network(lab: Lab) -> None:
    proc = run(["docker", "network", "inspect", lab.network], check=False)
    if proc.returncode == 0:
        subnets = [c.get("Subnet") for c in json.loads(proc.stdout)[0]["IPAM"]["Config"] or []]
        if lab.subnet not in subnets:
            raise LabError(
                f"network {lab.network} exists with subnet(s) {subnets}, inventory wants {lab.subnet}: "
                "run `lab/lab.py down` first"
            )
        return
    run(["docker", "network", "create", "--subnet", lab.subnet, "--label", LABEL, lab.network])
    print(f"lab: created network {lab.network} ({lab.subnet})")


def _container_state(name: str) -> dict | None:
    proc = run(["docker", "container", "inspect", name], check=False)
    return json.loads(proc.stdout)[0] if proc.returncode == 0 else None


def cache_dir() -> Path:
    return Path(os.environ.get("AISWARM_CACHE_DIR", "/var/cache/aiswarm"))


def ensure_node(lab: Lab, node: Node) -> None:
    state = _container_state(node.container)
    if state is not None:
        address = state["NetworkSettings"]["Networks"].get(lab.network, {}).get("IPAddress")
        if address != node.address:
            raise LabError(
                f"node {node.container} has address {address}, inventory wants {node.address}: "
                "run `lab/lab.py down` and `up` again"
            )
        if not state["State"]["Running"]:
            run(["docker", "start", node.container])
            print(f"lab: started {node.container}")
        return
    cache_dir().mkdir(parents=True, exist_ok=True)
    argv = [
        "docker", "run", "--detach", "--name", node.container, "--hostname", node.host,
        "--label", LABEL, "--network", lab.network, "--ip", node.address,
        "--cgroupns=host", "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--volume", f"{cache_dir()}:/var/cache/aiswarm:rw",
        "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        "--stop-signal", "SIGRTMIN+3",
        # vLLM's engine queues need more shared memory than Docker's default 64 MiB.
        "--shm-size", "1g",
    ]  # fmt: skip
    for cap in CAPABILITIES:
        argv += ["--cap-add", cap]
    for port in node.ports:
        argv += ["--publish", f"127.0.0.1:{port}:{port}"]
    argv += [node.image, "/lib/systemd/systemd"]
    run(argv)
    print(
        f"lab: created {node.container} at {node.address}"
        + (f", ports {list(node.ports)}" if node.ports else "")
    )


def wait_booted(node: Node, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    status = "unknown"
    while time.monotonic() < deadline:
        proc = run(["docker", "exec", node.container, "systemctl", "is-system-running"], check=False)
        status = proc.stdout.strip() or "unknown"
        if status in ("running", "degraded"):
            return status
        time.sleep(1)
    raise LabError(f"{node.container}: systemd did not finish booting in {timeout:.0f} s (state: {status})")


def provision(extra: list[str]) -> int:
    argv = [_bin("ansible-playbook"), "-i", str(INVENTORY), str(ROOT / "site.yml"), *extra]
    print("lab: " + " ".join(argv), flush=True)
    started = time.monotonic()
    code = subprocess.run(argv, cwd=ROOT, check=False).returncode
    print(f"lab: site.yml finished with {code} in {time.monotonic() - started:.0f} s")
    return code


SECRETS = INVENTORY.parent / ".secrets"
STATE = ROOT / "lab" / ".state"


def standin_keys(standin: Standin, secrets: Path = SECRETS) -> list[str]:
    """The stand-in's test keys, generated once (32 letters and digits, as the inventory's
    password lookups make them) and reused."""
    keys = []
    secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
    for index in range(standin.keys):
        path = secrets / f"standin_{standin.name}_key{index}"
        if not path.exists():
            alphabet = string.ascii_letters + string.digits
            path.write_text("".join(secrets_module.choice(alphabet) for _char in range(32)) + "\n")
            path.chmod(0o600)
        keys.append(path.read_text().split()[0])
    return keys


def _answers(address: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a helper on the lab host answers 200 on /health."""
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/health", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


def _start_helper(name: str, argv: list[str], address: str, port: int, what: str, state: Path) -> None:
    """Run one of the project's own modules in the background (a session of its own) unless it
    already answers on address:port; its log and pid go to state/standin-<name>.{log,pid}."""
    if _answers(address, port):
        return
    log_file = state / f"standin-{name}.log"
    with log_file.open("ab") as log:
        proc = subprocess.Popen(  # the project's own module, fixed arguments
            argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    (state / f"standin-{name}.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 15
    while not _answers(address, port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"{what} did not answer on {address}:{port}; see {log_file}")
        time.sleep(0.2)
    print(f"lab: {what} on {address}:{port}")


def start_standins(lab: Lab, state: Path = STATE) -> None:
    """Run each stand-in provider (the reference backend) unless it already answers."""
    state.mkdir(parents=True, exist_ok=True)
    for standin in lab.standins:
        if _answers(standin.address, standin.port):
            continue
        keys_file = state / f"standin-{standin.name}.keys"
        keys_file.write_text("\n".join(standin_keys(standin)) + "\n")
        keys_file.chmod(0o600)
        argv = [
            sys.executable, "-m", "aiswarm_loadtest.refbackend", "--host", standin.address,
            "--port", str(standin.port), "--name", f"standin-{standin.name}", "--model", standin.name,
            "--keys-file", str(keys_file),
        ]  # fmt: skip
        what = f"stand-in {standin.name} (reference backend)"
        _start_helper(standin.name, argv, standin.address, standin.port, what, state)


def start_alert_sink(lab: Lab, state: Path = STATE) -> None:
    """Run the lab's Alertmanager receiver (aiswarm_loadtest.alertsink) unless it already answers."""
    if lab.alert_sink is None:
        return
    address, port = lab.alert_sink
    state.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "aiswarm_loadtest.alertsink", "--host", address, "--port", str(port),
        "--log", str(state / "alerts.jsonl"),
    ]  # fmt: skip
    _start_helper("alertsink", argv, address, port, "alert receiver (aiswarm_loadtest.alertsink)", state)


def stop_standins(state: Path = STATE) -> None:
    for pid_file in sorted(state.glob("standin-*.pid")):
        try:
            os.killpg(int(pid_file.read_text().strip()), signal.SIGTERM)
            print(f"lab: stopped {pid_file.stem}")
        except (ProcessLookupError, ValueError):
            pass
        pid_file.unlink()


def cmd_up(args: argparse.Namespace) -> int:
    check_engine()
    lab = load_lab()
    started = time.monotonic()
    ensure_image(lab)
    ensure_network(lab)
    for node in lab.nodes:
        ensure_node(lab, node)
    for node in lab.nodes:
        print(f"lab: {node.host} systemd {wait_booted(node)}")
    print(f"lab: {len(lab.nodes)} nodes up in {time.monotonic() - started:.0f} s")
    start_standins(lab)
    start_alert_sink(lab)
    if args.no_provision:
        return 0
    return provision(args.ansible_args)


def cmd_status(args: argparse.Namespace) -> int:
    check_engine()
    lab = load_lab()
    for node in lab.nodes:
        state = _container_state(node.container)
        if state is None:
            print(f"{node.host:12} {node.container:24} absent")
            continue
        running = state["State"]["Running"]
        systemd = "-"
        if running:
            proc = run(["docker", "exec", node.container, "systemctl", "is-system-running"], check=False)
            systemd = proc.stdout.strip()
        state_word = "running" if running else "stopped"
        print(f"{node.host:12} {node.container:24} {node.address:15} {state_word} {systemd}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    check_engine()
    stop_standins()
    names = run(["docker", "ps", "-aq", "--filter", f"label={LABEL}"]).stdout.split()
    if names:
        run(["docker", "rm", "--force", "--volumes", *names])
        print(f"lab: removed {len(names)} node(s)")
    for net in run(["docker", "network", "ls", "-q", "--filter", f"label={LABEL}"]).stdout.split():
        run(["docker", "network", "rm", net])
        print("lab: removed the lab network")
    # Facts cached by ansible.cfg (fact_caching) describe the removed nodes.
    shutil.rmtree(ROOT / ".ansible" / "facts", ignore_errors=True)
    if args.image:
        image = load_lab().image
        if run(["docker", "image", "rm", image], check=False).returncode == 0:
            print(f"lab: removed image {image}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab/lab.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the nodes and run site.yml")
    up.add_argument("--no-provision", action="store_true", help="start the nodes only")
    up.add_argument(
        "ansible_args", nargs=argparse.REMAINDER, help="extra ansible-playbook arguments after --"
    )
    up.set_defaults(func=cmd_up)
    sub.add_parser("status", help="show the nodes").set_defaults(func=cmd_status)
    down = sub.add_parser("down", help="remove the nodes and the network")
    down.add_argument("--image", action="store_true", help="remove the node image too")
    down.set_defaults(func=cmd_down)
    args = parser.parse_args(argv)
    if getattr(args, "ansible_args", None) and args.ansible_args[0] == "--":
        args.ansible_args = args.ansible_args[1:]
    try:
        return args.func(args)
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
