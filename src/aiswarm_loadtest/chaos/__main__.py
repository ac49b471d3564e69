"""Command line: `python -m aiswarm_loadtest.chaos validate|run ...`.

Exit codes: 0 every gate passed; 1 a gate failed; 2 invalid scenario, arguments or plan (nothing
touched); 3 steady state not met (no fault injected); 4 aborted by an error (faults rolled back);
130 interrupted (faults rolled back).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from aiswarm_loadtest.chaos.faults import AnsibleExecutor, DockerExecutor, Executor, PlanError
from aiswarm_loadtest.chaos.runner import ChaosRunner, Inventory, LocustLauncher, RunnerOptions
from aiswarm_loadtest.chaos.scenario import DEFAULT_SERVICES, ScenarioError, load_scenarios
from aiswarm_loadtest.metrics import SLOW_ANSWER_S

EXIT_PASSED, EXIT_FAILED, EXIT_INVALID, EXIT_REFUSED, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


def _services(args: argparse.Namespace) -> dict[str, str]:
    services = dict(DEFAULT_SERVICES)
    if args.services:
        try:
            data = yaml.safe_load(Path(args.services).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ScenarioError([f"--services {args.services}: cannot read a YAML mapping ({exc})"]) from exc
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ScenarioError([f"--services {args.services}: expected a mapping of names to unit names"])
        services.update(data)
    for item in args.service:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ScenarioError([f"--service {item!r}: expected NAME=UNIT, e.g. inference_engine=vllm"])
        services[key] = value
    return services


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aiswarm_loadtest.chaos", description=__doc__.split("\n", maxsplit=1)[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--services", help="YAML mapping of service variables to unit names")
    common.add_argument("--service", action="append", default=[], metavar="NAME=UNIT", help="override one")
    validate = sub.add_parser("validate", parents=[common], help="check scenario files, report every error")
    validate.add_argument("scenarios", nargs="+", type=Path)
    run = sub.add_parser("run", parents=[common], help="run one scenario against the gateway")
    run.add_argument("scenario", type=Path)
    run.add_argument("--executor", choices=("docker", "ansible"), default="docker")
    run.add_argument("--inventory", default="inventories/lab", help="Ansible inventory for targets")
    run.add_argument("--gateway", default="http://127.0.0.1:4000")
    run.add_argument("--api-key-env", default="AISWARM_API_KEY", help="environment variable holding the key")
    run.add_argument("--out", type=Path, required=True, help="run directory for records and reports")
    run.add_argument("--lab-prefix", default="aiswarm-lab-", help="docker: only containers with this prefix")
    run.add_argument("--lab-network", default="aiswarm-lab", help="docker: the lab network")
    run.add_argument("--locustfile", default="loadtests/chat_stream.py")
    run.add_argument("--locust-arg", action="append", default=[], help="extra locust argument (repeatable)")
    run.add_argument("--primary-backend", help="backend identity of the primary (default: inferred)")
    run.add_argument(
        "--alert-sink",
        default=os.environ.get("AISWARM_ALERT_SINK") or None,
        help="URL of the lab's Alertmanager receiver, for the scenario's alert gates "
        "(default $AISWARM_ALERT_SINK; without one the alert is not checked, and the report says so)",
    )
    run.add_argument(
        "--downtime-slow-s",
        type=float,
        default=SLOW_ANSWER_S,
        help="an answer that begins later than this counts as downtime, like a failure (default %(default)s)",
    )
    return parser


def _executor(args: argparse.Namespace, inventory: Inventory) -> Executor:
    if args.executor == "ansible":
        return AnsibleExecutor(inventory=args.inventory)
    return DockerExecutor(
        prefix=args.lab_prefix, network=args.lab_network, containers=inventory.docker_containers()
    )


def _run(args: argparse.Namespace, services: dict[str, str]) -> int:
    scenario = load_scenarios([args.scenario], services)[0]
    api_key = os.environ.get(args.api_key_env, "")
    if not api_key:
        print(f"--api-key-env {args.api_key_env}: the variable is not set or empty", file=sys.stderr)
        return EXIT_INVALID
    inventory = Inventory.from_ansible(args.inventory)
    runner = ChaosRunner(
        scenario,
        _executor(args, inventory),
        inventory,
        LocustLauncher(locustfile=args.locustfile, extra_args=tuple(args.locust_arg)),
        RunnerOptions(
            gateway=args.gateway,
            api_key=api_key,
            out_dir=args.out,
            primary_backend=args.primary_backend,
            slow_s=args.downtime_slow_s,
            alert_sink=args.alert_sink,
        ),
    )
    try:
        result = runner.run()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except PlanError:
        raise
    except Exception as exc:
        print(f"aborted (faults rolled back): {exc}; report in {args.out}", file=sys.stderr)
        return EXIT_ABORTED
    for gate in result.gates:
        print(f"gate {gate.name}: {gate.detail}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"{result.outcome}: report in {args.out / 'summary.md'}")
    codes = {"passed": EXIT_PASSED, "failed": EXIT_FAILED, "refused": EXIT_REFUSED}
    return codes.get(result.outcome, EXIT_ABORTED)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        services = _services(args)
        if args.command == "validate":
            scenarios = load_scenarios(args.scenarios, services)
            for scenario in scenarios:
                print(f"ok: {scenario.source} ({scenario.fault.requested_kind})")
            return EXIT_PASSED
        return _run(args, services)
    except (ScenarioError, PlanError) as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
