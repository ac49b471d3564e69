"""Reports: result.json carries the numbers, summary.md the tables and gates, timeline.png is an image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiswarm_loadtest.chaos.analysis import FaultWindow, evaluate_gates, measure, per_second
from aiswarm_loadtest.chaos.report import RunResult, write_report
from aiswarm_loadtest.chaos.scenario import Expect

from .test_analysis import RUN, WINDOW


def result() -> RunResult:
    measurements = measure(RUN, WINDOW)
    return RunResult(
        scenario="kill_primary_engine",
        description="Kill the primary.",
        source="loadtests/scenarios/kill_primary_engine.yaml",
        outcome="failed",
        started_at=90.0,
        faults=[{"fault_id": "kill_service:vllm@n1", "node": "n1", "t_start": 100.0, "t_end": 110.0}],
        windows=[FaultWindow(100.0, 110.0)],
        steady_state={"probe_status": 200, "error_rate": 0.0},
        measurements=measurements,
        gates=evaluate_gates(Expect(failover_within_s=3, max_failed_requests=4), measurements),
        series=per_second(RUN, t0=90.0),
    )


def test_all_three_files_are_written_with_the_numbers(tmp_path: Path) -> None:
    written = write_report(result(), tmp_path / "run")
    assert [p.name for p in written] == ["result.json", "summary.md", "timeline.png"]
    data = json.loads((tmp_path / "run" / "result.json").read_text())
    assert data["outcome"] == "failed" and data["passed"] is False
    assert data["measurements"]["failover_s"] == pytest.approx(3.4)
    assert data["measurements"]["availability"]["downtime_s"] == pytest.approx(6.0)
    assert data["gates"][0] == {
        "name": "failover_within_s", "bound": 3, "measured": pytest.approx(3.4), "passed": False,
        "detail": "3.4s <= 3s",
    }  # fmt: skip
    assert data["windows"] == [{"start": 100.0, "end": 110.0}]
    assert len(data["series"]["seconds"]) == 31
    assert (tmp_path / "run" / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "run" / "timeline.png").stat().st_size > 10_000


def test_summary_has_the_measurements_and_the_gates(tmp_path: Path) -> None:
    write_report(result(), tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    assert "**Outcome: FAILED**" in summary
    assert "| kill_service:vllm@n1 | n1 | 10.000 | 20.000 |" in summary
    assert "| failover to a fallback (s) | 3.400 |" in summary
    assert "| failover_within_s | 3 | 3.400 | FAIL: 3.4s <= 3s |" in summary
    assert "| max_failed_requests | 4 | 4 | PASS: 4 <= 4 |" in summary
    assert "![timeline](timeline.png)" in summary


def test_a_refused_run_writes_no_plot_and_flags_open_faults(tmp_path: Path) -> None:
    refused = RunResult(
        "s", "d", "s.yaml", "refused", 0.0, notes=["steady state not met"], open_faults=["f@n1"]
    )
    written = write_report(refused, tmp_path)
    assert [p.name for p in written] == ["result.json", "summary.md"]
    summary = (tmp_path / "summary.md").read_text()
    assert "STILL OPEN" in summary and "- f@n1" in summary and "- steady state not met" in summary
    assert json.loads((tmp_path / "result.json").read_text())["measurements"] is None
