"""Pre-flight probe and SLO gates (not a locustfile: the leading "_" keeps `-f loadtests/` from
loading it as one; every locustfile imports it).

test_start (standalone or master): probe GET /v1/models with the key; an unreachable target
or a rejected key stops the run at once with exit code 2. Every process samples its own CPU.
quitting (standalone or master): read this run's records, print metrics and gates, and set
the exit code: 0 when every gate passes, 1 when one fails.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from aiswarm_loadtest.cpu import CpuSampler
from aiswarm_loadtest.gates import Thresholds, evaluate, format_report
from aiswarm_loadtest.metrics import summarize
from aiswarm_loadtest.probe import probe_target
from aiswarm_loadtest.runlog import load_run

EXIT_GATE_FAILED = 1
EXIT_BAD_TARGET = 2

log = logging.getLogger("aiswarm")
_cpu = CpuSampler()
_run: dict[str, Any] = {"started": None, "probe_failed": False}


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_kwargs: Any) -> None:
    _cpu.start()
    if isinstance(environment.runner, WorkerRunner):
        return
    _run["started"] = time.time()
    options = environment.parsed_options
    if options is None or getattr(options, "skip_probe", False):
        return
    if not environment.host:
        _abort(environment, "no target: pass --host http://<gateway>:<port> (or set LOCUST_HOST)")
        return
    problem = probe_target(environment.host, options.api_key)
    if problem is not None:
        _abort(environment, problem)


def _abort(environment: Environment, message: str) -> None:
    log.error("aiswarm: %s", message)
    _run["probe_failed"] = True
    environment.process_exit_code = EXIT_BAD_TARGET
    if environment.runner is not None:
        gevent.spawn(environment.runner.quit)


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_kwargs: Any) -> None:
    _cpu.stop()
    warning = _cpu.warning()
    if warning and isinstance(environment.runner, WorkerRunner):
        log.warning("aiswarm: %s", warning)


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_kwargs: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or _run["probe_failed"] or _run["started"] is None:
        return
    options = environment.parsed_options
    records = load_run(Path(options.aiswarm_run_dir), since=_run["started"])
    summary = summarize(records, options.downtime_slow_s)
    results = evaluate(summary, Thresholds.from_options(options))
    warnings = [w for w in (_cpu.warning(),) if w]
    runner = environment.runner
    if runner is not None and (runner.cpu_warning_emitted or runner.worker_cpu_warning_emitted):
        warnings.append("Locust reported CPU above 90% on a generator process during the run")
    if summary.lag.p95 is not None and summary.lag.p95 > 0.010:
        warnings.append(
            f"send lag p95 {summary.lag.p95 * 1000:.1f} ms: the generator sent requests late "
            "(latencies are measured from the intended time, so this lag is included in them)"
        )
    print(format_report(summary, results, warnings), flush=True)
    print(f"aiswarm: records in {options.aiswarm_run_dir}", flush=True)
    environment.process_exit_code = 0 if all(g.passed for g in results) else EXIT_GATE_FAILED
