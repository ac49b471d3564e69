"""Fault commands as data, the executors' argv, their allow-list, and the main-PID signal script."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiswarm_loadtest.chaos.faults import (
    AnsibleExecutor,
    DockerExecutor,
    FaultCommandError,
    PlanError,
    Step,
    node_commands,
    subprocess_runner,
    tool,
)
from aiswarm_loadtest.chaos.scenario import Fault, FaultParams, Target

from .fakes import ScriptedRunner

NETWORKS = json.dumps(
    {
        "aiswarm-lab": {
            "IPAddress": "172.30.0.11",
            "EndpointID": "0123456789abcdef",
            "Aliases": ["inference1", "0123456789ab"],
        }
    }
)
LAB = {
    ("docker", "network", "inspect"): (0, json.dumps([{"Subnet": "172.30.0.0/24"}]), ""),
    ("docker", "inspect"): (0, NETWORKS, ""),
}


def fault(kind: str, service: str | None = "vllm", **params: object) -> Fault:
    return Fault(kind, Target(group="inference", service=service), 30.0, FaultParams(**params))


@pytest.mark.parametrize(
    ("kind", "params", "inject", "rollback"),
    [
        ("stop_service", {}, [["systemctl", "stop", "vllm"]], [["systemctl", "start", "vllm"]]),
        ("restart_service", {}, [["systemctl", "restart", "vllm"]], [["systemctl", "start", "vllm"]]),
        (
            "net_latency",
            {"latency_ms": 200, "jitter_ms": 20},
            [["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", "200ms", "20ms"]],
            [["tc", "qdisc", "del", "dev", "eth0", "root"]],
        ),
        (
            "net_loss",
            {"loss_pct": 12.5, "interface": "tailscale0"},
            [["tc", "qdisc", "replace", "dev", "tailscale0", "root", "netem", "loss", "12.5%"]],
            [["tc", "qdisc", "del", "dev", "tailscale0", "root"]],
        ),
    ],
)
def test_node_commands_table(kind: str, params: dict, inject: list, rollback: list) -> None:
    on, off = node_commands(fault(kind, **params), "auto")
    assert [list(c.argv) for c in on] == inject
    assert [list(c.argv) for c in off] == rollback


def test_loss_with_iptables_drops_at_random_both_ways_and_heals_idempotently() -> None:
    (cut,), (heal,) = node_commands(fault("net_loss", loss_pct=12.5, method="iptables"), "auto")
    assert cut.argv[:2] == heal.argv[:2] == ("sh", "-c")
    script = cut.argv[2]
    assert "-m statistic --mode random --probability 0.125000 -j DROP" in script
    assert "iptables -I INPUT 1 -i eth0 -j AISWARM_CHAOS_LOSS" in script
    assert "iptables -I OUTPUT 1 -o eth0 -j AISWARM_CHAOS_LOSS" in script
    # The heal loops until no jump is left and ends true: running it twice is harmless.
    assert heal.argv[2].startswith("while iptables -D INPUT -i eth0 -j AISWARM_CHAOS_LOSS")
    assert heal.argv[2].endswith("; true")


def test_a_kernel_without_netem_is_named_in_the_error() -> None:
    message = "Error: Specified qdisc kind is unknown."
    runner = ScriptedRunner({("docker", "exec", "aiswarm-lab-a", "tc"): (2, "", message)})
    executor = DockerExecutor(runner=runner)
    (inject,) = executor.plan(fault("net_latency", latency_ms=100), "a", "auto").inject
    with pytest.raises(FaultCommandError, match=r"kernel has no netem qdisc, sch_netem"):
        executor.run(inject)
    ansible = AnsibleExecutor(inventory="inv", ansible="ansible", run_id="r1")
    planned = ansible.plan(fault("net_latency", latency_ms=100), "h", "auto").inject
    assert any("sch_netem" in meaning for step in planned for _text, meaning in step.explain)


def test_signal_faults_go_through_the_main_pid_script() -> None:
    (kill,), (start,) = node_commands(fault("kill_service", signal="KILL"), "start_service")
    assert kill.argv[:2] == ("sh", "-c") and kill.argv[-3:] == ("vllm", "KILL", "3")
    assert start.argv == ("systemctl", "start", "vllm")
    (stop,), (cont,) = node_commands(fault("freeze_service"), "continue_service")
    assert stop.argv[-3:] == ("vllm", "STOP", "3")
    assert cont.argv[-3:] == ("vllm", "CONT", "0")  # nothing to continue is fine: idempotent


def test_rollback_none_leaves_healing_to_systemd() -> None:
    assert node_commands(fault("kill_service"), "none")[1] == ()


def test_whole_node_faults_are_not_node_commands() -> None:
    with pytest.raises(PlanError, match="whole-node fault"):
        node_commands(fault("stop_node", service=None), "start_node")


@pytest.fixture
def fake_systemctl(tmp_path: Path):
    """A `systemctl` on PATH whose `show -p MainPID` prints the PID of a real sleeping process."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pid_file = tmp_path / "pid"
    pid_file.write_text(str(sleeper.pid))
    script = tmp_path / "systemctl"
    script.write_text(f'#!/bin/sh\ncat "{pid_file}"\n')
    script.chmod(0o755)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    yield sleeper, pid_file, env
    sleeper.kill()
    sleeper.wait()


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to read process states")
def test_freeze_and_thaw_really_stop_and_continue_the_main_pid(fake_systemctl) -> None:
    sleeper, _pid_file, env = fake_systemctl
    (stop,), (cont,) = node_commands(fault("freeze_service"), "continue_service")
    assert subprocess_runner(stop.argv, 10, env).returncode == 0
    time.sleep(0.1)
    assert _state(sleeper.pid) == "T"
    assert subprocess_runner(cont.argv, 10, env).returncode == 0
    time.sleep(0.1)
    assert _state(sleeper.pid) in ("S", "R")


def test_kill_really_kills_the_main_pid(fake_systemctl) -> None:
    sleeper, _pid_file, env = fake_systemctl
    (kill,), _rollback = node_commands(fault("kill_service", signal="KILL"), "start_service")
    assert subprocess_runner(kill.argv, 10, env).returncode == 0
    assert sleeper.wait(timeout=5) == -signal.SIGKILL


def test_no_main_pid_never_becomes_kill_zero(fake_systemctl) -> None:
    sleeper, pid_file, env = fake_systemctl
    pid_file.write_text("0")
    (kill,), _rollback = node_commands(fault("kill_service", signal="KILL"), "start_service")
    proc = subprocess_runner(kill.argv, 10, env)
    assert proc.returncode == 3 and "vllm: no running main PID" in proc.stderr
    (cont,) = node_commands(fault("freeze_service"), "continue_service")[1]
    assert subprocess_runner(cont.argv, 10, env).returncode == 0
    assert sleeper.poll() is None


def test_docker_plans_service_faults_as_docker_exec() -> None:
    runner = ScriptedRunner(LAB)
    plan = DockerExecutor(runner=runner).plan(fault("stop_service"), "inference1", "start_service")
    assert [s.argv for s in plan.inject] == [
        ("docker", "exec", "aiswarm-lab-inference1", "systemctl", "stop", "vllm")
    ]
    assert [s.argv for s in plan.rollback] == [
        ("docker", "exec", "aiswarm-lab-inference1", "systemctl", "start", "vllm")
    ]
    assert plan.fault_id == "stop_service:vllm@inference1"
    assert runner.calls == []  # planning a service fault reads nothing


def test_docker_partition_reconnects_with_the_same_ip_and_aliases() -> None:
    runner = ScriptedRunner(LAB)
    plan = DockerExecutor(runner=runner).plan(
        fault("partition_node", service=None), "inference1", "reconnect_node"
    )
    assert plan.inject[0].argv == ("docker", "network", "disconnect", "aiswarm-lab", "aiswarm-lab-inference1")
    assert plan.rollback[0].argv == (
        "docker", "network", "connect", "--ip", "172.30.0.11", "--alias", "inference1",
        "aiswarm-lab", "aiswarm-lab-inference1",
    )  # fmt: skip
    assert "already exists" in plan.rollback[0].tolerate


def test_docker_stop_node_and_container_names_from_the_inventory() -> None:
    executor = DockerExecutor(containers={"inference1": "aiswarm-lab-gpu-a"}, runner=ScriptedRunner(LAB))
    plan = executor.plan(fault("stop_node", service=None), "inference1", "start_node")
    assert plan.inject[0].argv == ("docker", "stop", "--time", "10", "aiswarm-lab-gpu-a")
    assert plan.rollback[0].argv == ("docker", "start", "aiswarm-lab-gpu-a")


def test_docker_refuses_containers_outside_the_lab_when_planning() -> None:
    executor = DockerExecutor(containers={"db": "production-db"}, runner=ScriptedRunner(LAB))
    with pytest.raises(PlanError, match="'production-db' is outside the lab"):
        executor.plan(fault("stop_service"), "db", "start_service")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("docker", "exec", "prod-db", "systemctl", "stop", "x"), "container 'prod-db' does not start with"),
        (("docker", "stop", "--time", "10", "web"), "container 'web'"),
        (
            ("docker", "network", "disconnect", "bridge", "aiswarm-lab-x"),
            "network 'bridge' is not the lab network",
        ),
        (
            ("docker", "network", "connect", "--ip", "10.0.0.5", "aiswarm-lab", "aiswarm-lab-x"),
            "10.0.0.5 is outside",
        ),
        (("docker", "rm", "-f", "aiswarm-lab-x"), "docker rm is not an operation"),
        (("sh", "-c", "rm -rf /"), "is not a docker command"),
    ],
)
def test_docker_guard_refuses_anything_outside_the_lab(argv: tuple, message: str) -> None:
    runner = ScriptedRunner(LAB)
    with pytest.raises(PlanError, match=message):
        DockerExecutor(runner=runner).run(Step(argv))
    assert not any(
        call[:2] != ("docker", "network") for call in runner.calls
    )  # nothing but the subnet lookup ran


@pytest.mark.parametrize(
    ("url", "allowed"),
    [("http://127.0.0.1:4000", True), ("http://localhost:4000", True), ("http://172.30.0.2:4000", True),
     ("http://10.1.2.3:4000", False), ("https://api.example.com", False)],
)  # fmt: skip
def test_docker_gateway_must_be_loopback_or_lab(url: str, allowed: bool) -> None:
    assert (DockerExecutor(runner=ScriptedRunner(LAB)).check_gateway(url) is None) is allowed


def test_docker_run_tolerates_already_rolled_back_and_reports_real_failures() -> None:
    runner = ScriptedRunner(
        {
            ("docker", "exec", "aiswarm-lab-a", "tc"): (
                2,
                "",
                "Error: Cannot delete qdisc with handle of zero.",
            )
        }
    )
    executor = DockerExecutor(runner=runner)
    undo = node_commands(fault("net_loss", loss_pct=5), "clear_netem")[1][0]
    result = executor.run(Step(("docker", "exec", "aiswarm-lab-a", *undo.argv), undo.tolerate))
    assert result.tolerated and result.rc == 2
    with pytest.raises(
        FaultCommandError, match=r"^docker exec aiswarm-lab-a tc qdisc replace: exit 2: Error: Cannot delete"
    ):
        executor.run(Step(("docker", "exec", "aiswarm-lab-a", "tc", "qdisc", "replace")))


def test_ansible_plans_ad_hoc_commands_with_a_dead_mans_switch() -> None:
    executor = AnsibleExecutor(
        inventory="inventories/miami", ansible="ansible", run_id="r1", deadman_grace_s=60
    )
    plan = executor.plan(fault("stop_service"), "starlord", "start_service")
    arm, stop = plan.inject
    assert stop.argv == (
        "ansible", "starlord", "-i", "inventories/miami", "-b",
        "-m", "ansible.builtin.systemd_service", "-a", "name=vllm state=stopped",
    )  # fmt: skip
    assert (
        arm.argv[-1] == "systemd-run --unit=aiswarm-chaos-r1-stop-service --on-active=90s "
        "/bin/sh -c 'systemctl start vllm'"
    )
    start, disarm = plan.rollback
    assert start.argv[-1] == "name=vllm state=started"
    assert disarm.argv[-1] == "systemctl stop aiswarm-chaos-r1-stop-service.timer" and disarm.tolerate == (
        "not loaded",
    )
    assert dict(stop.env)["ANSIBLE_STDOUT_CALLBACK"] == "ansible.posix.json"


def test_ansible_partition_keeps_ssh_open_and_stop_node_is_refused() -> None:
    executor = AnsibleExecutor(inventory="inv", ansible="ansible", run_id="r1")
    plan = executor.plan(fault("partition_node", service=None), "starlord", "reconnect_node")
    cut = plan.inject[1].argv[-1]
    assert "--dport 22 -j ACCEPT" in cut and cut.endswith("iptables -I OUTPUT 1 -j AISWARM_CHAOS'")
    with pytest.raises(PlanError, match="cannot power a host back on"):
        executor.plan(fault("stop_node", service=None), "starlord", "start_node")
    with pytest.raises(PlanError, match="not a single inventory host"):
        executor.plan(fault("stop_service"), "all:!gateway", "start_service")


def test_ansible_run_reads_the_json_callback() -> None:
    failed = {
        "plays": [
            {"tasks": [{"hosts": {"h": {"failed": True, "msg": "Unit vllm.service not loaded.", "rc": 5}}}]}
        ]
    }
    ok = {"plays": [{"tasks": [{"hosts": {"h": {"changed": True, "stdout": "42"}}}]}]}
    runner = ScriptedRunner(
        {
            ("ansible", "h", "-i", "inv", "-b", "-m", "ansible.builtin.command", "-a", "fail"): (
                2,
                json.dumps(failed),
                "",
            )
        }
    )
    runner.answers[("ansible",)] = (0, json.dumps(ok), "")
    executor = AnsibleExecutor(inventory="inv", ansible="ansible", runner=runner)
    assert executor.run(executor.node_step("h", ["count"])).stdout == "42"
    with pytest.raises(FaultCommandError, match=r"exit 2: Unit vllm\.service not loaded"):
        executor.run(executor.node_step("h", ["fail"]))


def test_tools_come_from_this_pythons_environment_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ansible").write_text("#!/bin/sh\n", encoding="utf-8")
    (tmp_path / "ansible").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    assert tool("ansible") == str(tmp_path / "ansible")
    assert tool("ansible-inventory") == "ansible-inventory"
    assert AnsibleExecutor(inventory="inv").ansible == str(tmp_path / "ansible")
