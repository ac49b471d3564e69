"""Fault injection and rollback as data, and the executors that run them on a node.

`node_commands` is the table of what each fault kind runs *on* a node (argv lists) and what undoes
it. An `Executor` turns those into controller-side `Step`s: `DockerExecutor` for the lab
(`docker exec <container> ...`, plus `docker network`/`docker stop` for whole-node faults) and
`AnsibleExecutor` for real inventories (`ansible <host> -m ...` ad-hoc commands). Every step a
`DockerExecutor` runs is checked against an allow-list first: only containers named with the lab
prefix, only the lab network, only addresses inside the lab network or loopback.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from aiswarm_loadtest.chaos.scenario import Fault

# Signal the main PID of a unit; refuse (exit 3) when the unit has none, so `kill 0` never happens.
_SIGNAL_MAIN_PID = (
    'pid=$(systemctl show -p MainPID --value "$1"); '
    'if [ "${pid:-0}" -gt 0 ] 2>/dev/null; then kill -s "$2" "$pid"; '
    'else echo "$1: no running main PID" >&2; exit "$3"; fi'
)
# POST a JSON state to a stand-in's admin endpoint with the node's own Python (no curl needed);
# exit 1 with the stand-in's answer when it refuses.
_POST_STANDIN = (
    "import sys, urllib.request, urllib.error\n"
    "req = urllib.request.Request(sys.argv[1].rstrip('/') + '/_admin/state', data=sys.argv[2].encode(),"
    " headers={'content-type': 'application/json'})\n"
    "try:\n    print(urllib.request.urlopen(req, timeout=10).read().decode())\n"
    "except urllib.error.HTTPError as exc:\n"
    "    sys.exit(f'stand-in refused: {exc.code} {exc.read().decode()}')\n"
)
# tc's message when the kernel lacks the netem qdisc (sch_netem), and what that means for a fault.
_NO_NETEM = (
    (
        "qdisc kind is unknown",
        "this node's kernel has no netem qdisc, sch_netem: latency faults cannot run here;"
        " loss faults can use fault.params.method: iptables",
    ),
)
# tc's messages when there is no root qdisc left to delete: the rollback already happened.
_NO_QDISC = (
    "No such file or directory",
    "Cannot delete qdisc with handle of zero",
    "Cannot find specified qdisc",
)


def tool(name: str) -> str:
    """A command of this Python's environment (e.g. the virtualenv's `ansible`), else from PATH.

    So `.venv/bin/python -m aiswarm_loadtest.chaos` works without activating the virtualenv.
    """
    sibling = os.path.join(os.path.dirname(sys.executable), name)
    return sibling if os.access(sibling, os.X_OK) else name


class PlanError(ValueError):
    """A fault cannot be planned on this executor (refused before anything runs)."""


class FaultCommandError(RuntimeError):
    """A step exited non-zero without a tolerated message."""


@dataclass(frozen=True)
class NodeCommand:
    """One command run on a node. `unit`/`state` are set for plain systemd state changes."""

    argv: tuple[str, ...]
    tolerate: tuple[str, ...] = ()
    explain: tuple[tuple[str, str], ...] = ()  # (error text, what it means here), added to the error
    unit: str | None = None
    state: str | None = None  # started, stopped, restarted


@dataclass(frozen=True)
class Step:
    """One controller-side command: a complete argv, and the stderr texts that mean 'already done'."""

    argv: tuple[str, ...]
    tolerate: tuple[str, ...] = ()
    timeout_s: float = 120.0
    env: tuple[tuple[str, str], ...] = ()
    explain: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class StepResult:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    tolerated: bool = False


@dataclass(frozen=True)
class FaultPlan:
    """Everything needed to inject one fault on one node and to undo it."""

    fault_id: str
    kind: str
    node: str
    inject: tuple[Step, ...]
    rollback: tuple[Step, ...]

    def to_dict(self) -> dict:
        return {
            "fault_id": self.fault_id,
            "kind": self.kind,
            "node": self.node,
            "inject": [list(s.argv) for s in self.inject],
            "rollback": [list(s.argv) for s in self.rollback],
        }


_NO_RESTART = (
    'mkdir -p "$1" && printf "[Service]\\nRestart=no\\n" > "$1/zz-aiswarm-chaos.conf" '
    "&& systemctl daemon-reload"
)
_RESTART_BACK = 'rm -f "$1/zz-aiswarm-chaos.conf"; systemctl daemon-reload'


def _systemd(unit: str, state: str) -> NodeCommand:
    verb = {"started": "start", "stopped": "stop", "restarted": "restart"}[state]
    return NodeCommand(("systemctl", verb, unit), unit=unit, state=state)


def _signal_main_pid(unit: str, signal: str, *, missing_rc: int) -> NodeCommand:
    return NodeCommand(("sh", "-c", _SIGNAL_MAIN_PID, "sh", unit, signal, str(missing_rc)))


def node_commands(fault: Fault, rollback: str) -> tuple[tuple[NodeCommand, ...], tuple[NodeCommand, ...]]:
    """What a service or network fault runs on its node, and what undoes it.

    Whole-node kinds (partition_node, stop_node) act from outside the node and belong to the
    executor; asking for them here raises PlanError.
    """
    unit, params = fault.target.service, fault.params
    if fault.kind in ("stop_service", "kill_service", "freeze_service", "restart_service") and not unit:
        raise PlanError(f"{fault.kind}: fault.target.service is required")
    if fault.kind == "stop_service":
        inject, undo = (_systemd(unit, "stopped"),), (_systemd(unit, "started"),)
    elif fault.kind == "kill_service" and params.restart_policy == "none":
        # A runtime drop-in (gone at reboot) turns the unit's Restart= off for the fault, so
        # systemd does not bring the service back: only the swarm agent may. The rollback removes
        # it and starts the service if nothing did.
        dropin = f"/run/systemd/system/{unit}.service.d"
        inject = (
            NodeCommand(("sh", "-c", _NO_RESTART, "sh", dropin)),
            _signal_main_pid(unit, params.signal, missing_rc=3),
        )
        undo = (
            NodeCommand(("sh", "-c", _RESTART_BACK, "sh", dropin)),
            _systemd(unit, "started"),
        )
    elif fault.kind == "kill_service":
        inject, undo = (_signal_main_pid(unit, params.signal, missing_rc=3),), (_systemd(unit, "started"),)
    elif fault.kind == "freeze_service":
        # SIGCONT on a unit that is no longer running is a no-op (exit 0): the rollback is idempotent.
        inject = (_signal_main_pid(unit, "STOP", missing_rc=3),)
        undo = (_signal_main_pid(unit, "CONT", missing_rc=0),)
    elif fault.kind == "restart_service":
        inject, undo = (_systemd(unit, "restarted"),), (_systemd(unit, "started"),)
    elif fault.kind == "standin_state":
        inject = (NodeCommand(("python3", "-c", _POST_STANDIN, params.admin_url, params.state)),)
        undo = (NodeCommand(("python3", "-c", _POST_STANDIN, params.admin_url, params.restore)),)
    elif fault.kind == "net_loss" and params.method == "iptables":
        inject, undo = _iptables_loss(params.interface, params.loss_pct)
    elif fault.kind in ("net_latency", "net_loss"):
        if fault.kind == "net_latency":
            netem = ["delay", f"{params.latency_ms}ms"] + (
                [f"{params.jitter_ms}ms"] if params.jitter_ms else []
            )
        else:
            netem = ["loss", f"{params.loss_pct:g}%"]
        dev = params.interface
        inject = (
            NodeCommand(("tc", "qdisc", "replace", "dev", dev, "root", "netem", *netem), explain=_NO_NETEM),
        )
        undo = (NodeCommand(("tc", "qdisc", "del", "dev", dev, "root"), tolerate=_NO_QDISC),)
    else:
        raise PlanError(f"{fault.kind}: a whole-node fault is planned by the executor, not on the node")
    return inject, (() if rollback == "none" else undo)


_LOSS_CHAIN = "AISWARM_CHAOS_LOSS"


def _iptables_loss(dev: str, loss_pct: float) -> tuple[tuple[NodeCommand, ...], tuple[NodeCommand, ...]]:
    """Random loss with iptables' statistic match, both directions of `dev` (no netem needed)."""
    chain = _LOSS_CHAIN
    probability = f"{loss_pct / 100:.6f}"
    cut = (
        f"iptables -N {chain} && "
        f"iptables -A {chain} -m statistic --mode random --probability {probability} -j DROP && "
        f"iptables -I INPUT 1 -i {dev} -j {chain} && iptables -I OUTPUT 1 -o {dev} -j {chain}"
    )
    heal = (
        f"while iptables -D INPUT -i {dev} -j {chain} 2>/dev/null; do :; done; "
        f"while iptables -D OUTPUT -o {dev} -j {chain} 2>/dev/null; do :; done; "
        f"iptables -F {chain} 2>/dev/null; iptables -X {chain} 2>/dev/null; true"
    )
    return (NodeCommand(("sh", "-c", cut)),), (NodeCommand(("sh", "-c", heal)),)


CommandRunner = Callable[[Sequence[str], float, Mapping[str, str]], subprocess.CompletedProcess]


def subprocess_runner(
    argv: Sequence[str], timeout_s: float, env: Mapping[str, str]
) -> subprocess.CompletedProcess:
    """Run a command, capturing its output; a timeout becomes rc 124 instead of an exception."""
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, **env} if env else None,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(argv), 124, "", f"timed out after {timeout_s:g}s")
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: not found ({exc})")


def _finish(step: Step, proc: subprocess.CompletedProcess, message: str) -> StepResult:
    if proc.returncode == 0:
        return StepResult(step.argv, 0, proc.stdout or "", proc.stderr or "")
    if any(text in message for text in step.tolerate):
        return StepResult(step.argv, proc.returncode, proc.stdout or "", proc.stderr or "", tolerated=True)
    tail = message.strip()[-400:] or "(no output)"
    tail += "".join(f" ({meaning})" for text, meaning in step.explain if text in message)
    raise FaultCommandError(f"{shlex.join(step.argv)}: exit {proc.returncode}: {tail}")


class Executor(Protocol):
    """Runs fault steps on the nodes of one kind of environment."""

    name: str

    def plan(self, fault: Fault, node: str, rollback: str) -> FaultPlan: ...

    def node_step(self, node: str, argv: Sequence[str]) -> Step: ...

    def run(self, step: Step) -> StepResult: ...

    def check_gateway(self, url: str) -> str | None: ...


def _fault_id(fault: Fault, node: str) -> str:
    if fault.target.service:
        what = fault.target.service
    elif fault.kind == "standin_state":
        what = urlsplit(fault.params.admin_url).netloc
    elif fault.kind in ("net_latency", "net_loss"):
        what = fault.params.interface
    else:
        what = "node"
    return f"{fault.kind}:{what}@{node}"


class DockerExecutor:
    """The local lab: nodes are systemd containers named `<prefix><host>` on one Docker network."""

    name = "docker"

    def __init__(
        self,
        *,
        prefix: str = "aiswarm-lab-",
        network: str = "aiswarm-lab",
        containers: Mapping[str, str] | None = None,
        docker: str = "docker",
        stop_timeout_s: int = 10,
        runner: CommandRunner = subprocess_runner,
    ) -> None:
        if not prefix:
            raise PlanError("docker executor: the container prefix must not be empty (it is the allow-list)")
        self.prefix, self.network, self.docker = prefix, network, docker
        self.containers = dict(containers or {})
        self.stop_timeout_s = stop_timeout_s
        self._runner = runner
        self._subnets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None = None

    def container(self, node: str) -> str:
        name = self.containers.get(node) or (node if node.startswith(self.prefix) else self.prefix + node)
        if not name.startswith(self.prefix) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise PlanError(
                f"{node}: container {name!r} is outside the lab (names must start with {self.prefix!r})"
            )
        return name

    def _read(self, argv: Sequence[str]) -> str:
        return self.run(Step(tuple(argv), timeout_s=30)).stdout

    def lab_subnets(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        if self._subnets is None:
            raw = self._read(
                (self.docker, "network", "inspect", "--format", "{{json .IPAM.Config}}", self.network)
            )
            configs = json.loads(raw or "null") or []
            self._subnets = [ipaddress.ip_network(c["Subnet"]) for c in configs if c.get("Subnet")]
        return self._subnets

    def address_allowed(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return ip.is_loopback or any(ip in net for net in self.lab_subnets())

    def check_gateway(self, url: str) -> str | None:
        host = urlsplit(url).hostname or ""
        if host == "localhost" or self.address_allowed(host):
            return None
        return f"--gateway {url}: the docker lab only targets loopback or the {self.network} network"

    def node_step(self, node: str, argv: Sequence[str]) -> Step:
        return Step((self.docker, "exec", self.container(node), *argv))

    def plan(self, fault: Fault, node: str, rollback: str) -> FaultPlan:
        name = self.container(node)
        fid = _fault_id(fault, node)
        if fault.kind == "stop_node":
            inject = (Step((self.docker, "stop", "--time", str(self.stop_timeout_s), name)),)
            undo = (Step((self.docker, "start", name)),)
        elif fault.kind == "partition_node":
            ip, aliases = self._endpoint(name)
            alias_args = [arg for alias in aliases for arg in ("--alias", alias)]
            inject = (Step((self.docker, "network", "disconnect", self.network, name)),)
            undo = (
                Step(
                    (self.docker, "network", "connect", "--ip", ip, *alias_args, self.network, name),
                    tolerate=("already exists",),
                ),
            )
        else:
            on_node, off_node = node_commands(fault, rollback)
            inject = tuple(
                Step((self.docker, "exec", name, *c.argv), c.tolerate, explain=c.explain) for c in on_node
            )
            undo = tuple(
                Step((self.docker, "exec", name, *c.argv), c.tolerate, explain=c.explain) for c in off_node
            )
        return FaultPlan(fid, fault.kind, node, inject, undo)

    def _endpoint(self, name: str) -> tuple[str, list[str]]:
        raw = self._read((self.docker, "inspect", "--format", "{{json .NetworkSettings.Networks}}", name))
        endpoint = (json.loads(raw or "null") or {}).get(self.network)
        if not endpoint or not endpoint.get("IPAddress"):
            raise PlanError(f"{name}: not attached to the lab network {self.network!r}, nothing to partition")
        ip = endpoint["IPAddress"]
        if not self.address_allowed(ip):
            raise PlanError(f"{name}: address {ip} is outside the lab network {self.network!r}")
        short_id = (endpoint.get("EndpointID") or "")[:12]
        aliases = [a for a in endpoint.get("Aliases") or [] if a not in (name, short_id) and len(a) != 12]
        return ip, aliases

    def guard(self, argv: Sequence[str]) -> None:
        """Refuse any command outside the lab: other containers, networks or addresses."""
        if len(argv) < 3 or argv[0] != self.docker:
            raise PlanError(f"refused: {shlex.join(argv)} is not a docker command")
        sub, containers, networks, ips = argv[1], [], [], []
        if sub == "exec":
            containers = [argv[2]]
        elif sub in ("stop", "start", "inspect"):
            containers = [argv[-1]]
        elif sub == "network" and argv[2] == "inspect":
            networks = [argv[-1]]
        elif sub == "network" and argv[2] in ("connect", "disconnect") and len(argv) >= 5:
            networks, containers = [argv[-2]], [argv[-1]]
            ips = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--ip"]
        else:
            raise PlanError(f"refused: docker {sub} is not an operation the chaos runner performs")
        for name in containers:
            if not name.startswith(self.prefix):
                raise PlanError(
                    f"refused: container {name!r} does not start with the lab prefix {self.prefix!r}"
                )
        for net in networks:
            if net != self.network:
                raise PlanError(f"refused: network {net!r} is not the lab network {self.network!r}")
        for ip in ips:
            if not self.address_allowed(ip):
                raise PlanError(f"refused: address {ip} is outside loopback and the lab network")

    def run(self, step: Step) -> StepResult:
        self.guard(step.argv)
        proc = self._runner(step.argv, step.timeout_s, dict(step.env))
        return _finish(step, proc, (proc.stderr or "") + (proc.stdout or ""))


class AnsibleExecutor:
    """Real inventories: each step is an ad-hoc `ansible <host>` call with become.

    Every fault also arms a dead man's switch on the node (`systemd-run --on-active=`) that runs
    the rollback by itself if the controller never does (killed runner, lost connection: a
    partition cuts the controller off too). The controller's rollback disarms it.
    """

    name = "ansible"
    _JSON_ENV = (("ANSIBLE_LOAD_CALLBACK_PLUGINS", "1"), ("ANSIBLE_STDOUT_CALLBACK", "ansible.posix.json"))

    def __init__(
        self,
        *,
        inventory: str,
        ansible: str | None = None,
        become: bool = True,
        deadman_grace_s: float = 120.0,
        keep_tcp_ports: Sequence[int] = (22,),
        run_id: str | None = None,
        runner: CommandRunner = subprocess_runner,
    ) -> None:
        self.inventory, self.ansible, self.become = inventory, ansible or tool("ansible"), become
        self.deadman_grace_s = deadman_grace_s
        self.keep_tcp_ports = tuple(keep_tcp_ports)
        self.run_id = run_id or f"{int(time.time())}-{os.getpid()}"
        self._runner = runner

    def _adhoc(
        self,
        host: str,
        module: str,
        args: str,
        tolerate: tuple[str, ...] = (),
        explain: tuple[tuple[str, str], ...] = (),
    ) -> Step:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", host):
            raise PlanError(f"refused: {host!r} is not a single inventory host name (no patterns)")
        become = ("-b",) if self.become else ()
        argv = (self.ansible, host, "-i", self.inventory, *become, "-m", module, "-a", args)
        return Step(argv, tolerate, env=self._JSON_ENV, explain=explain)

    def _step(self, host: str, cmd: NodeCommand) -> Step:
        if cmd.unit and cmd.state:
            return self._adhoc(host, "ansible.builtin.systemd_service", f"name={cmd.unit} state={cmd.state}")
        return self._adhoc(host, "ansible.builtin.command", shlex.join(cmd.argv), cmd.tolerate, cmd.explain)

    def node_step(self, node: str, argv: Sequence[str]) -> Step:
        return self._adhoc(node, "ansible.builtin.command", shlex.join(argv))

    def check_gateway(self, url: str) -> str | None:
        return (
            None if urlsplit(url).scheme in ("http", "https") else f"--gateway {url}: expected an http(s) URL"
        )

    def _partition(self) -> tuple[tuple[NodeCommand, ...], tuple[NodeCommand, ...]]:
        chain = "AISWARM_CHAOS"
        keep = [
            f"iptables -A {chain} -p tcp --{direction} {port} -j ACCEPT"
            for port in self.keep_tcp_ports
            for direction in ("dport", "sport")
        ]
        cut = " && ".join(
            [
                f"iptables -N {chain}",
                f"iptables -A {chain} -i lo -j ACCEPT",
                f"iptables -A {chain} -o lo -j ACCEPT",
                *keep,
                f"iptables -A {chain} -j DROP",
                f"iptables -I INPUT 1 -j {chain}",
                f"iptables -I OUTPUT 1 -j {chain}",
            ]
        )
        heal = (
            f"while iptables -D INPUT -j {chain} 2>/dev/null; do :; done; "
            f"while iptables -D OUTPUT -j {chain} 2>/dev/null; do :; done; "
            f"iptables -F {chain} 2>/dev/null; iptables -X {chain} 2>/dev/null; true"
        )
        return (NodeCommand(("sh", "-c", cut)),), (NodeCommand(("sh", "-c", heal)),)

    def plan(self, fault: Fault, node: str, rollback: str) -> FaultPlan:
        if fault.kind == "stop_node":
            raise PlanError(
                f"stop_node on {node}: the ansible executor cannot power a host back on; "
                "use the docker lab, or stop the node's services one by one"
            )
        on_node, off_node = (
            self._partition() if fault.kind == "partition_node" else node_commands(fault, rollback)
        )
        inject = [self._step(node, c) for c in on_node]
        undo = [self._step(node, c) for c in off_node]
        if off_node:
            unit = f"aiswarm-chaos-{self.run_id}-{fault.kind}".replace("_", "-")
            script = " ; ".join(shlex.join(c.argv) for c in off_node)
            after = int(fault.duration_s + self.deadman_grace_s)
            arm = ("systemd-run", f"--unit={unit}", f"--on-active={after}s", "/bin/sh", "-c", script)
            inject.insert(0, self._adhoc(node, "ansible.builtin.command", shlex.join(arm)))
            disarm = ("systemctl", "stop", f"{unit}.timer")
            undo.append(self._adhoc(node, "ansible.builtin.command", shlex.join(disarm), ("not loaded",)))
        return FaultPlan(_fault_id(fault, node), fault.kind, node, tuple(inject), tuple(undo))

    def run(self, step: Step) -> StepResult:
        proc = self._runner(step.argv, step.timeout_s, dict(step.env))
        stdout, message = proc.stdout or "", proc.stderr or ""
        try:
            hosts = json.loads(stdout)["plays"][0]["tasks"][0]["hosts"]
            result = next(iter(hosts.values()))
            stdout = result.get("stdout", "")
            message = f"{result.get('msg', '')} {result.get('stderr', '')}".strip() or message
        except (ValueError, KeyError, IndexError, StopIteration, TypeError):
            message = message or stdout
        return _finish(
            step, subprocess.CompletedProcess(step.argv, proc.returncode, stdout, message), message
        )
