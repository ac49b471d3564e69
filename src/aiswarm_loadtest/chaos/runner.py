"""The fault runner: steady state first, then load, fault, rollback, analysis and report.

Order of a run, each step refusing to go on when the previous one failed:
1. plan every fault (targets resolved through the inventory, the executor's allow-list checked);
2. probe the gateway and run a short load: the steady-state hypothesis must hold, else no fault;
3. start the load, inject at `timeline.fault_at_s`, roll back after `fault.duration_s`, let the
   load finish; the `RollbackLedger` undoes open faults on any exit, Ctrl-C included;
4. read the records, measure, gate against `expect`, write the report.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aiswarm_loadtest.chaos.alerts import AlertSink, AlertSinkError, AlertTimes, alert_gates, wait_for_alert
from aiswarm_loadtest.chaos.analysis import (
    FaultWindow,
    Gate,
    error_rate,
    evaluate_gates,
    measure,
    per_second,
    ttft_p95_ms,
)
from aiswarm_loadtest.chaos.faults import (
    CommandRunner,
    Executor,
    FaultCommandError,
    FaultPlan,
    PlanError,
    Step,
    subprocess_runner,
    tool,
)
from aiswarm_loadtest.chaos.ledger import RollbackLedger
from aiswarm_loadtest.chaos.report import RunResult, write_report
from aiswarm_loadtest.chaos.scenario import ROLLBACKS, DataCheck, Scenario, Target
from aiswarm_loadtest.metrics import SLOW_ANSWER_S
from aiswarm_loadtest.noisy import read_log as read_noisy_log
from aiswarm_loadtest.records import RequestRecord, read_records


def _stderr(message: str) -> None:
    print(f"chaos: {message}", file=sys.stderr, flush=True)


def _short(output: str | None) -> str:
    """A data check's output for the report: quoted, one line, at most 60 characters."""
    if output is None:
        return "not read"
    line = " ".join(output.split())
    return repr(line if len(line) <= 60 else line[:57] + "...")


class Inventory:
    """Groups and host variables, as `ansible-inventory --list` reports them."""

    def __init__(self, groups: dict[str, dict], hostvars: dict[str, dict] | None = None) -> None:
        self.groups = groups
        self.hostvars = hostvars or {}

    @classmethod
    def from_listing(cls, listing: dict) -> Inventory:
        meta = listing.get("_meta", {})
        groups = {name: data for name, data in listing.items() if name != "_meta" and isinstance(data, dict)}
        return cls(groups, meta.get("hostvars", {}))

    @classmethod
    def from_ansible(cls, path: str, runner: CommandRunner = subprocess_runner) -> Inventory:
        proc = runner((tool("ansible-inventory"), "-i", path, "--list"), 120, {})
        if proc.returncode != 0:
            raise PlanError(
                f"--inventory {path}: ansible-inventory failed: {(proc.stderr or '').strip()[-300:]}"
            )
        return cls.from_listing(json.loads(proc.stdout))

    def hosts(self, group: str) -> list[str]:
        if group not in self.groups:
            raise PlanError(
                f"group {group!r} is not in the inventory (groups: {', '.join(sorted(self.groups))})"
            )
        seen: list[str] = []
        for host in self.groups[group].get("hosts", []):
            if host not in seen:
                seen.append(host)
        for child in self.groups[group].get("children", []):
            seen.extend(h for h in self.hosts(child) if h not in seen)
        return seen

    def all_hosts(self) -> set[str]:
        return {h for g in self.groups for h in self.groups[g].get("hosts", [])} | set(self.hostvars)

    def resolve(self, target: Target, where: str) -> list[str]:
        """The nodes a target names; PlanError naming the scenario field when there are none."""
        if target.host is not None:
            if target.host not in self.all_hosts():
                raise PlanError(f"{where}.host: {target.host!r} is not in the inventory")
            return [target.host]
        try:
            hosts = self.hosts(target.group or "")
        except PlanError as exc:
            raise PlanError(f"{where}.group: {exc}") from exc
        if not hosts:
            raise PlanError(f"{where}.group: group {target.group!r} has no hosts")
        return hosts if target.pick == "all" else hosts[:1]

    def docker_containers(self) -> dict[str, str]:
        """Host -> container name for hosts reached through a docker connection plugin.

        `ansible-inventory --list` does not template, so the lab's
        `ansible_host: "aiswarm-lab-{{ inventory_hostname }}"` arrives as written: the one
        template it uses is filled in here; any other template leaves the host out (the
        executor's own prefix + host name applies).
        """
        containers = {}
        for host, hv in self.hostvars.items():
            if not str(hv.get("ansible_connection", "")).endswith("docker") or not hv.get("ansible_host"):
                continue
            name = _INVENTORY_HOSTNAME.sub(host, str(hv["ansible_host"]))
            if "{{" not in name:
                containers[host] = name
        return containers


_INVENTORY_HOSTNAME = re.compile(r"\{\{\s*inventory_hostname\s*\}\}")


@dataclass(frozen=True)
class LoadSpec:
    host: str
    users: int
    spawn_rate: float
    run_time_s: int
    run_dir: Path
    user_class: str | None = None
    tags: tuple[str, ...] = ()
    api_key: str = field(default="", repr=False)  # handed over in the environment, never on argv
    noisy_clients: int = 0
    model: str | None = None


class LoadHandle(Protocol):
    def poll(self) -> int | None: ...

    def wait(self, timeout_s: float) -> int: ...

    def stop(self) -> None: ...


class LoadLauncher(Protocol):
    def start(self, spec: LoadSpec) -> LoadHandle: ...


class _PopenHandle:
    def __init__(self, proc: subprocess.Popen) -> None:
        self._proc = proc

    def poll(self) -> int | None:
        return self._proc.poll()

    def wait(self, timeout_s: float) -> int:
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            return self._proc.wait()

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()


class _LoadWithNoise:
    """The load's process and its noisy clients: the load decides when the run is over."""

    def __init__(self, load: _PopenHandle, noisy: Sequence[_PopenHandle]) -> None:
        self._load, self._noisy = load, list(noisy)

    def poll(self) -> int | None:
        return self._load.poll()

    def wait(self, timeout_s: float) -> int:
        try:
            return self._load.wait(timeout_s)
        finally:
            for handle in self._noisy:
                handle.stop()

    def stop(self) -> None:
        for handle in [self._load, *self._noisy]:
            handle.stop()


@dataclass
class LocustLauncher:
    """Starts `locust --headless` as a subprocess; its output goes to `<run_dir>/locust.log`.

    The API key reaches Locust as the `api_key_env` environment variable, never as an argument.
    """

    locustfile: str = "loadtests/chat_stream.py"
    locust: Sequence[str] = (sys.executable, "-m", "locust")
    run_dir_option: str = "--aiswarm-run-dir"
    extra_args: Sequence[str] = ()
    api_key_env: str = "AISWARM_API_KEY"

    def argv(self, spec: LoadSpec) -> list[str]:
        argv = [
            *self.locust,
            "-f",
            self.locustfile,
            "--headless",
            "-u",
            str(spec.users),
            "-r",
            f"{spec.spawn_rate:g}",
        ]
        argv += ["-t", f"{spec.run_time_s}s", "--host", spec.host, self.run_dir_option, str(spec.run_dir)]
        if spec.tags:
            argv += ["--tags", *spec.tags]
        argv += list(self.extra_args)
        if spec.model:  # after extra_args: the scenario's model wins over --locust-arg=--model
            argv += ["--model", spec.model]
        if spec.user_class:
            argv.append(spec.user_class)
        return argv

    def noisy_argv(self, spec: LoadSpec, index: int) -> list[str]:
        """A noisy client (aiswarm_loadtest.noisy) for the load's whole run, logging to noisy-<i>.jsonl."""
        out = spec.run_dir / f"noisy-{index}.jsonl"
        return [sys.executable, "-m", "aiswarm_loadtest.noisy", "--gateway", spec.host, "--out", str(out),
                "--duration", str(spec.run_time_s), "--api-key-env", self.api_key_env]  # fmt: skip

    def start(self, spec: LoadSpec) -> LoadHandle:
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, self.api_key_env: spec.api_key} if spec.api_key else None
        with (spec.run_dir / "locust.log").open("w", encoding="utf-8") as log:
            proc = subprocess.Popen(self.argv(spec), stdout=log, stderr=subprocess.STDOUT, env=env)
        if not spec.noisy_clients:
            return _PopenHandle(proc)
        noisy = []
        for index in range(spec.noisy_clients):
            with (spec.run_dir / f"noisy-{index}.log").open("w", encoding="utf-8") as log:
                noisy.append(
                    _PopenHandle(
                        subprocess.Popen(
                            self.noisy_argv(spec, index), stdout=log, stderr=subprocess.STDOUT, env=env
                        )
                    )
                )
        return _LoadWithNoise(_PopenHandle(proc), noisy)


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


Probe = Callable[[str, str, float], int]


def http_probe(url: str, api_key: str, timeout_s: float) -> int:
    """GET url with the API key; the HTTP status, or 0 when nothing answered."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def read_noisy_logs(run_dir: Path) -> list[dict]:
    """Every noisy client's log lines of a run (``noisy-<i>.jsonl``), in time order."""
    lines = [line for path in sorted(run_dir.glob("noisy-*.jsonl")) for line in read_noisy_log(path)]
    return sorted(lines, key=lambda line: line.get("t", 0.0))


def read_run_records(run_dir: Path) -> list[RequestRecord]:
    """Every record under run_dir (requests*.jsonl, workers' files included), sorted by t_start."""
    records: list[RequestRecord] = []
    for path in sorted(run_dir.rglob("requests*.jsonl")):
        records.extend(read_records(path))
    return sorted(records, key=lambda r: r.t_start)


@dataclass
class RunnerOptions:
    gateway: str
    api_key: str
    out_dir: Path
    primary_backend: str | None = None
    load_grace_s: float = 60.0
    probe_timeout_s: float = 10.0
    slow_s: float = SLOW_ANSWER_S  # an answer that began later than this counts as downtime
    alert_sink: str | None = None  # URL of the lab's Alertmanager receiver (aiswarm_loadtest.alertsink)
    alert_grace_s: float = 15.0  # extra wait for the alert to resolve, beyond the scenario's bound


@dataclass
class _Run:
    plans: list[FaultPlan] = field(default_factory=list)
    window: FaultWindow | None = None
    t_in: dict[str, float] = field(default_factory=dict)
    t_out: dict[str, float] = field(default_factory=dict)
    alert_times: AlertTimes | None = None
    healed_at: dict[str, float] = field(default_factory=dict)  # node -> when its killed unit was active
    alert_problem: str | None = None


def self_heal_gate(bound: float, run: _Run) -> Gate:
    """Every faulted node's killed unit active again within `bound` s of the fault's start."""
    start = run.window.start if run.window else 0.0
    missing = [plan.node for plan in run.plans if plan.node not in run.healed_at]
    if missing or not run.plans:
        return Gate(
            "self_heal_within_s", bound, None, False,
            f"not back before the rollback on {', '.join(missing) or 'any node'}",
        )  # fmt: skip
    worst = round(max(run.healed_at.values()) - start, 2)
    nodes = ", ".join(f"{node} {t - start:.1f} s" for node, t in sorted(run.healed_at.items()))
    return Gate("self_heal_within_s", bound, worst, worst <= bound, f"active again after the kill: {nodes}")


class ChaosRunner:
    def __init__(
        self,
        scenario: Scenario,
        executor: Executor,
        inventory: Inventory,
        launcher: LoadLauncher,
        options: RunnerOptions,
        *,
        clock: Clock | None = None,
        probe: Probe = http_probe,
        log: Callable[[str], None] = _stderr,
        sink: AlertSink | None = None,
    ) -> None:
        self.scenario, self.executor, self.inventory = scenario, executor, inventory
        self.launcher, self.options = launcher, options
        self.clock = clock or RealClock()
        self.probe, self.log = probe, log
        self.ledger = RollbackLedger(executor, log=log, clock=self.clock.now)
        self.sink = sink or (AlertSink(options.alert_sink) if options.alert_sink else None)

    def plan(self) -> list[FaultPlan]:
        """Every fault plan, or one PlanError listing every problem; nothing runs on a node."""
        errors: list[str] = []
        plans: list[FaultPlan] = []
        src = self.scenario.source
        problem = self.executor.check_gateway(self.options.gateway)
        if problem:
            errors.append(problem)
        if self.scenario.alert is not None and self.sink is not None:
            problem = self.sink.check()
            if problem:
                errors.append(problem)
        faults = [("fault", self.scenario.fault, self.scenario.rollback)]
        faults += [(f"also[{i}]", f, "auto") for i, f in enumerate(self.scenario.also)]
        for where, fault, rollback in faults:
            try:
                nodes = self.inventory.resolve(fault.target, f"{where}.target")
            except PlanError as exc:
                errors.append(f"{src}: {exc}")
                nodes = []
            rollback = ROLLBACKS[fault.kind][0] if rollback == "auto" else rollback
            for node in nodes:
                try:
                    plans.append(self.executor.plan(fault, node, rollback))
                except PlanError as exc:
                    errors.append(f"{src}: {where}: {exc}")
        if self.scenario.data_check is not None:
            try:
                self._data_step(self.scenario.data_check)
                if self.scenario.data_check.seed:
                    self._data_step(self.scenario.data_check, seed=True)
            except PlanError as exc:
                errors.append(f"{src}: {exc}")
        if errors:
            raise PlanError("\n".join(errors))
        return plans

    def _data_step(self, check: DataCheck, *, seed: bool = False) -> Step:
        node = self.inventory.resolve(check.target, "data_check.target")[0]
        return self.executor.node_step(node, check.seed if seed else check.argv)

    def _read_data(self, *, seed_first: bool = False) -> str | None:
        check = self.scenario.data_check
        if check is None:
            return None
        if seed_first and check.seed:
            self.executor.run(self._data_step(check, seed=True))
        return self.executor.run(self._data_step(check)).stdout.strip()

    def _data_lost(self, before: str | None, after: str | None) -> bool | None:
        check = self.scenario.data_check
        if check is None or before is None or after is None:
            return None
        if check.compare == "not_less":
            try:
                return float(after) < float(before)
            except ValueError:
                return True
        return after != before

    def _spec(self, run_dir: Path, run_time_s: float) -> LoadSpec:
        load = self.scenario.load
        return LoadSpec(
            host=self.options.gateway,
            users=load.users,
            spawn_rate=load.spawn_rate,
            run_time_s=max(1, round(run_time_s)),
            run_dir=run_dir,
            user_class=load.user_class,
            tags=load.tags,
            api_key=self.options.api_key,
            noisy_clients=load.noisy_clients,
            model=load.model,
        )

    def check_steady_state(self) -> tuple[bool, dict, list[str]]:
        """Probe the gateway, then run a short load and compare it with the hypothesis."""
        steady = self.scenario.steady_state
        url = self.options.gateway.rstrip("/") + steady.probe.path
        status = self.probe(url, self.options.api_key, self.options.probe_timeout_s)
        details: dict = {"probe": steady.probe.path, "probe_status": status}
        if status != steady.probe.expect_status:
            return (
                False,
                details,
                [f"probe {steady.probe.path}: HTTP {status}, expected {steady.probe.expect_status}"],
            )
        run_dir = self.options.out_dir / "steady"
        handle = self.launcher.start(self._spec(run_dir, steady.window_s))
        handle.wait(steady.window_s + self.options.load_grace_s)
        records = read_run_records(run_dir)
        rate, p95 = error_rate(records), ttft_p95_ms(records)
        details.update(requests=len(records), error_rate=rate, ttft_p95_ms=p95)
        reasons = []
        if not records:
            reasons.append("the steady-state load produced no request records")
        if rate is not None and rate > steady.max_error_rate:
            reasons.append(f"error rate {rate:.3f} > max_error_rate {steady.max_error_rate:g}")
        if steady.max_ttft_p95_ms is not None and (p95 is None or p95 > steady.max_ttft_p95_ms):
            reasons.append(
                f"TTFT p95 {'n/a' if p95 is None else f'{p95:.1f}'} ms"
                f" > max_ttft_p95_ms {steady.max_ttft_p95_ms:g}"
            )
        return not reasons, details, reasons

    def _wait_until(self, deadline: float, handle: LoadHandle) -> None:
        while (left := deadline - self.clock.now()) > 0:
            if handle.poll() is not None:
                raise RuntimeError("the load generator exited before the fault schedule finished")
            self.clock.sleep(min(1.0, left))

    def _fault_phase(self, run: _Run, handle: LoadHandle, t_load: float) -> None:
        timeline, fault = self.scenario.timeline, self.scenario.fault
        self._wait_until(t_load + timeline.fault_at_s, handle)
        for plan in run.plans:
            run.t_in[plan.fault_id] = self.ledger.inject(plan)
        start = min(run.t_in.values())
        run.window = FaultWindow(start, start + fault.duration_s)  # provisional until rolled back
        if self.scenario.expect.self_heal_within_s is not None:
            self._watch_self_heal(run, handle, start + fault.duration_s)
        self._wait_until(start + fault.duration_s, handle)
        for plan in run.plans:
            run.t_out[plan.fault_id] = self.clock.now()
            errors = self.ledger.rollback(plan.fault_id)
            if errors:
                raise RuntimeError(f"rollback of {plan.fault_id} failed: {'; '.join(errors)}")
        run.window = FaultWindow(start, max(run.t_out.values()))

    def run(self) -> RunResult:
        """One complete chaos run; exceptions (Ctrl-C included) propagate after rollback and report."""
        scenario, out = self.scenario, self.options.out_dir
        out.mkdir(parents=True, exist_ok=True)
        plans = self.plan()
        # Records are appended: a run directory used before would mix the old run into this one.
        for stale in (out / "steady", out / "load"):
            shutil.rmtree(stale, ignore_errors=True)
        result = RunResult(scenario.name, scenario.description, scenario.source, "refused", self.clock.now())
        ok, result.steady_state, reasons = self.check_steady_state()
        if not ok:
            result.notes = ["steady state not met, no fault injected: " + "; ".join(reasons)]
            write_report(result, out)
            return result
        data_before = self._read_data(seed_first=True)
        run = _Run(plans=plans)
        result.outcome = "aborted"
        handle: LoadHandle | None = None
        try:
            with self.ledger.armed():
                t_load = self.clock.now()
                result.started_at = t_load
                handle = self.launcher.start(
                    self._spec(out / "load", scenario.timeline.total_s(scenario.fault.duration_s))
                )
                self._fault_phase(run, handle, t_load)
            left = t_load + scenario.timeline.total_s(scenario.fault.duration_s) - self.clock.now()
            handle.wait(max(0.0, left) + self.options.load_grace_s)
            self._watch_alert(run)
        except BaseException as exc:
            if handle is not None:
                handle.stop()
            if run.window is not None and not run.t_out:
                run.window = FaultWindow(run.window.start, self.clock.now())
            result.notes.append(f"aborted: {type(exc).__name__}: {exc}")
            self._finish(result, run, data_before=data_before, data_after=None)
            raise
        result.outcome = "completed"
        self._finish(result, run, data_before=data_before, data_after=self._read_data())
        return result

    def _watch_self_heal(self, run: _Run, handle: LoadHandle, deadline: float) -> None:
        """Until the rollback is due, ask each faulted node once a second whether the killed unit
        is active again (brought back by the node itself: the fault turned systemd's restart off)."""
        unit = self.scenario.fault.target.service
        argv = ("systemctl", "show", "-p", "ActiveState", "--value", unit)
        steps = {plan.node: self.executor.node_step(plan.node, argv) for plan in run.plans}
        while (left := deadline - self.clock.now()) > 0 and len(run.healed_at) < len(steps):
            if handle.poll() is not None:
                raise RuntimeError("the load generator exited before the fault schedule finished")
            for node, step in steps.items():
                if node in run.healed_at:
                    continue
                try:
                    state = self.executor.run(step).stdout.strip()
                except FaultCommandError:
                    state = "unknown"
                if state == "active":
                    run.healed_at[node] = self.clock.now()
            self.clock.sleep(min(1.0, max(0.0, left)))

    def _watch_alert(self, run: _Run) -> None:
        """Wait (after the load) until the scenario's alert fired and resolved at the receiver."""
        expect = self.scenario.alert
        if expect is None or run.window is None:
            return
        if self.sink is None:
            run.alert_problem = "no alert sink given (--alert-sink or AISWARM_ALERT_SINK)"
            return
        resolve_bound = expect.resolve_within_s if expect.resolve_within_s is not None else 0.0
        deadline = max(self.clock.now(), run.window.end + resolve_bound + self.options.alert_grace_s)
        try:
            run.alert_times = wait_for_alert(
                self.sink,
                expect,
                run.window.start,
                run.window.end,
                deadline,
                self.clock.now,
                self.clock.sleep,
            )
        except AlertSinkError as exc:
            run.alert_problem = str(exc)

    def _finish(
        self, result: RunResult, run: _Run, *, data_before: str | None, data_after: str | None
    ) -> None:
        result.ledger = list(self.ledger.events)
        result.open_faults = self.ledger.open_faults
        result.faults = [
            {**plan.to_dict(), "t_start": run.t_in.get(plan.fault_id), "t_end": run.t_out.get(plan.fault_id)}
            for plan in run.plans
        ]
        records = read_run_records(self.options.out_dir / "load")
        noisy = read_noisy_logs(self.options.out_dir / "load") if self.scenario.load.noisy_clients else None
        if run.window is not None:
            result.windows = [run.window]
            result.measurements = measure(
                records,
                run.window,
                self.options.primary_backend or self.scenario.primary_backend,
                self.options.slow_s,
                noisy,
            )
            result.series = per_second(records, t0=result.started_at)
            data_lost = self._data_lost(data_before, data_after)
            if self.scenario.data_check is not None:
                result.notes.append(
                    f"data check ({self.scenario.data_check.compare}): before {_short(data_before)}, "
                    f"after {_short(data_after)}"
                )
            result.gates = evaluate_gates(self.scenario.expect, result.measurements, data_lost)
            heal_bound = self.scenario.expect.self_heal_within_s
            if heal_bound is not None:
                result.gates.append(self_heal_gate(heal_bound, run))
            expect_alert = self.scenario.alert
            if expect_alert is not None and result.outcome == "completed":
                if run.alert_times is None and self.sink is None:
                    result.notes.append(f"alert {expect_alert.fires} not checked: {run.alert_problem}")
                else:
                    result.gates += alert_gates(expect_alert, run.alert_times, run.alert_problem)
                    result.alert = {"fires": expect_alert.fires, "labels": dict(expect_alert.labels)}
                    if run.alert_times is not None:
                        result.alert.update(run.alert_times.to_dict())
            if result.outcome == "completed":
                result.outcome = "passed" if all(g.passed for g in result.gates) else "failed"
        if result.open_faults:
            result.outcome = "aborted"
        write_report(result, self.options.out_dir)
